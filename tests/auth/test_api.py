"""Accounts and tokens over HTTP (SPEC §4), on both engines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authgate.audit.models import AuditEvent
from authgate.config import Settings
from authgate.main import create_app
from authgate.outbox.models import OutboxMessage
from authgate.security.opaque import hash_token
from authgate.sessions.models import RefreshToken
from authgate.users.models import User
from tests.factories import PASSWORD, assert_problem, bearer, login, register, signed_in, unique_email


async def test_register_returns_user_with_user_role(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "  New.Person@Example.COM ",
            "password": PASSWORD,
            "username": "New_Person",
            "full_name": "N P",
        },
    )
    assert response.status_code == 201
    user = response.json()
    assert user["email"] == "New.Person@example.com"
    assert user["username"] == "new_person"
    assert user["roles"] == ["user"]
    assert user["email_verified"] is False and user["mfa_enabled"] is False
    assert set(user) == {
        "id",
        "email",
        "email_verified",
        "username",
        "full_name",
        "phone",
        "phone_verified",
        "is_active",
        "roles",
        "mfa_enabled",
        "created_at",
        "updated_at",
        "last_login_at",
    }
    assert "password" not in response.text and "hash" not in response.text


async def test_register_duplicate_email_any_case_is_409(client: AsyncClient, db: AsyncSession) -> None:
    await register(client, email="dup@example.com")
    response = await client.post(
        "/api/v1/auth/register", json={"email": "DUP@example.com", "password": PASSWORD}
    )
    assert_problem(response, 409, "email_taken")
    assert (
        await db.scalar(
            select(func.count()).select_from(User).where(User.email_normalized == "dup@example.com")
        )
        == 1
    )


async def test_register_duplicate_username_other_case_is_409(client: AsyncClient, db: AsyncSession) -> None:
    await register(client, username="bob_1")
    email = unique_email()
    events_before = await db.scalar(select(func.count()).select_from(AuditEvent))
    response = await client.post(
        "/api/v1/auth/register", json={"email": email, "password": PASSWORD, "username": "BOB_1"}
    )
    assert_problem(response, 409, "username_taken")
    assert await db.scalar(select(func.count()).select_from(User).where(User.email_normalized == email)) == 0
    assert (
        await db.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.recipient == email)
        )
        == 0
    )
    assert await db.scalar(select(func.count()).select_from(AuditEvent)) == events_before


@pytest.mark.parametrize(
    ("password", "error_type"),
    [("short1!", "too_short"), ("password", "password_weak"), ("x" * 129, "too_long")],
)
async def test_register_rejects_weak_passwords(client: AsyncClient, password: str, error_type: str) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": unique_email(), "password": password}
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["type"] == error_type


@pytest.mark.parametrize(
    ("registered", "signs_in_with"),
    [
        ("cafe\u0301abc@example.com", "cafe\u0301abc@example.com"),  # decomposed é, as registered
        ("cafe\u0301abd@example.com", "CAF\u00c9ABD@example.com"),  # composed, another case
        ("x1@\uff45xample.com", "X1@EXAMPLE.COM"),  # a full-width letter in the domain
        ("x2@xn--bcher-kva.de", "x2@bu\u0308cher.de"),  # IDNA and Unicode forms of one domain
    ],
)
async def test_sign_in_compares_addresses_as_registration_stores_them(
    client: AsyncClient, registered: str, signs_in_with: str
) -> None:
    response = await client.post("/api/v1/auth/register", json={"email": registered, "password": PASSWORD})
    assert response.status_code == 201, response.text
    assert (await login(client, signs_in_with))["access_token"]
    token = await client.post(
        "/api/v1/auth/token", data={"grant_type": "password", "username": signs_in_with, "password": PASSWORD}
    )
    assert token.status_code == 200, token.text


async def test_a_username_signs_in_with_spaces_around_it(client: AsyncClient) -> None:
    await register(client, username="spaced_user")
    response = await client.post(
        "/api/v1/auth/login", json={"username": "  Spaced_User ", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text


async def test_register_takes_a_long_password_and_it_signs_in(client: AsyncClient) -> None:
    password = ("Vx9-lantern-harbor-quiet-" * 6)[:128]
    response = await client.post(
        "/api/v1/auth/register", json={"email": "long@example.com", "password": password}
    )
    assert response.status_code == 201, response.text
    assert (await login(client, "long@example.com", password))["access_token"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/auth/register", "password"),
        ("/api/v1/auth/login", "password"),
        ("/api/v1/auth/password/reset", "token"),
        ("/api/v1/auth/password/reset", "new_password"),
    ],
)
async def test_a_lone_surrogate_in_a_secret_is_422(
    client: AsyncClient, db: AsyncSession, path: str, field: str
) -> None:
    """Valid JSON, not text: refused before anything is hashed or stored."""
    body = {
        "email": "surrogate@example.com",
        "password": PASSWORD,
        "token": "t" * 20,
        "new_password": PASSWORD,
    }
    body = {k: v for k, v in body.items() if k in _FIELDS[path]}
    body[field] = "Abc\ud800-lantern-harbor-9"
    raw = json.dumps(body)  # ensure_ascii: the surrogate travels as the escape `\\ud800`
    response = await client.post(path, content=raw, headers={"content-type": "application/json"})
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", field]
    assert (
        await db.scalar(select(func.count()).select_from(User).where(User.email == "surrogate@example.com"))
        == 0
    )


_FIELDS = {
    "/api/v1/auth/register": {"email", "password"},
    "/api/v1/auth/login": {"email", "password"},
    "/api/v1/auth/password/reset": {"token", "new_password"},
}


async def test_register_rejects_password_containing_email(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": "zebracorn@example.com", "password": "my zebracorn secret 99"}
    )
    assert assert_problem(response, 422, "validation_error")["errors"][0]["type"] == "password_personal"


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-email", "password": PASSWORD},
        {"email": "a@example.com", "password": PASSWORD, "username": "ab"},
        {"email": "a@example.com", "password": PASSWORD, "username": "-bad"},
        {"email": "a@example.com", "password": PASSWORD, "phone": "12"},
        {"email": "a@example.com", "password": PASSWORD, "full_name": "x" * 201},
        {"email": "a@example.com", "password": PASSWORD, "is_admin": True},
        {"email": "a@example.com", "password": 12345678901},
        {"password": PASSWORD},
    ],
)
async def test_register_bad_input_is_422_and_creates_nothing(
    client: AsyncClient, db: AsyncSession, body: dict[str, object]
) -> None:
    before = await db.scalar(select(func.count()).select_from(User))
    assert_problem(await client.post("/api/v1/auth/register", json=body), 422, "validation_error")
    assert await db.scalar(select(func.count()).select_from(User)) == before


async def test_register_normalises_phone_to_e164(client: AsyncClient) -> None:
    user = await register(client, phone="+1 415-555-0132")
    assert user["phone"] == "+14155550132" and user["phone_verified"] is False


async def test_a_sign_in_stamps_last_login_but_is_not_an_edit(client: AsyncClient) -> None:
    user = await register(client)
    first = (await login(client, user["email"]))["user"]
    second = (await login(client, user["email"]))["user"]
    assert first["updated_at"] == second["updated_at"] == user["updated_at"]
    assert user["last_login_at"] is None
    assert first["last_login_at"] is not None and second["last_login_at"] > first["last_login_at"]
    third = await login(client, user["email"])
    me = (await client.get("/api/v1/users/me", headers=bearer(third["access_token"]))).json()
    assert me["last_login_at"] == third["user"]["last_login_at"] > second["last_login_at"]
    assert me["updated_at"] == user["updated_at"]


async def test_login_by_email_and_by_username(client: AsyncClient) -> None:
    user = await register(client, username="carol")
    by_email = await login(client, user["email"].upper())
    assert by_email["token_type"] == "bearer"
    assert by_email["expires_in"] == 1800
    assert by_email["user"]["id"] == user["id"]
    assert by_email["user"]["last_login_at"] is not None
    response = await client.post("/api/v1/auth/login", json={"username": "CAROL", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["refresh_token"] != by_email["refresh_token"]


async def test_login_wrong_password_and_unknown_email_answer_alike(client: AsyncClient) -> None:
    user = await register(client)
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": "wrong password!"}
    )
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "ghost@example.com", "password": PASSWORD}
    )
    a, b = (
        assert_problem(wrong, 401, "invalid_credentials"),
        assert_problem(unknown, 401, "invalid_credentials"),
    )
    assert a["detail"] == b["detail"]
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"


async def test_failed_login_is_audited_in_its_own_transaction(client: AsyncClient, db: AsyncSession) -> None:
    user = await register(client)
    await client.post("/api/v1/auth/login", json={"email": user["email"], "password": "wrong password!"})
    event = await db.scalar(
        select(AuditEvent).where(AuditEvent.action == "auth.login.failed", AuditEvent.target_id == user["id"])
    )
    assert event is not None
    assert event.data == {"reason": "wrong_password"}
    assert event.ip == "203.0.113.7"
    assert "wrong password" not in str(event.data)


@pytest.mark.parametrize(
    "body",
    [
        {"password": PASSWORD},
        {"email": "a@example.com", "username": "abc", "password": PASSWORD},
        {"email": "a@example.com"},
        {"email": "a@example.com", "password": PASSWORD, "remember": True},
    ],
)
async def test_login_bad_bodies_are_422(client: AsyncClient, body: dict[str, object]) -> None:
    assert_problem(await client.post("/api/v1/auth/login", json=body), 422, "validation_error")


async def test_login_on_deactivated_account(client: AsyncClient, db: AsyncSession) -> None:
    user = await register(client)
    account = await db.scalar(select(User).where(User.email == user["email"]))
    assert account is not None
    account.is_active = False
    await db.commit()
    right = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(right, 403, "account_disabled")
    wrong = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": "not the one!"})
    assert_problem(wrong, 401, "invalid_credentials")


async def test_me_and_users_me_agree(client: AsyncClient) -> None:
    user, headers = await signed_in(client)
    me = await client.get("/api/v1/auth/me", headers=headers)
    users_me = await client.get("/api/v1/users/me", headers=headers)
    assert me.status_code == users_me.status_code == 200
    assert me.json()["id"] == users_me.json()["id"] == user["id"]
    assert me.headers["cache-control"] == "no-store"


async def test_me_without_credentials_is_401(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/me")
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_refresh_rotates_and_old_token_is_reused_after_grace(
    client: AsyncClient, app: object, settings: object
) -> None:
    user = await register(client)
    first = await login(client, user["email"])
    client.cookies.clear()
    second = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    third = await client.post("/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert third.status_code == 200
    # `first` is now two generations old: not the immediate parent, so this is theft.
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reused, 401, "refresh_reused")
    # ... and the whole session is gone: the newest tokens stop working too.
    newest = third.json()
    assert_problem(
        await client.get("/api/v1/users/me", headers=bearer(newest["access_token"])), 401, "session_revoked"
    )
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": newest["refresh_token"]})
    assert_problem(after, 401, "session_revoked")


async def test_refresh_after_logout_is_session_revoked(client: AsyncClient) -> None:
    """The same code as the access token of that session gets, whichever token is presented."""
    user = await register(client)
    tokens = await login(client, user["email"])
    client.cookies.clear()
    logout = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert logout.status_code == 204
    refused = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(refused, 401, "session_revoked")
    assert_problem(
        await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"])), 401, "session_revoked"
    )
    grant = await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert grant.status_code == 400
    assert grant.json()["error"] == "invalid_grant"


async def test_refresh_parent_within_grace_keeps_session(client: AsyncClient) -> None:
    """Two tabs refresh with the same token at once: both get working pairs for one session."""
    user = await register(client)
    first = await login(client, user["email"])
    client.cookies.clear()
    tab_a = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    tab_b = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert tab_a.status_code == tab_b.status_code == 200
    for pair in (tab_a.json(), tab_b.json()):
        assert (await client.get("/api/v1/users/me", headers=bearer(pair["access_token"]))).status_code == 200
    again = await client.post("/api/v1/auth/refresh", json={"refresh_token": tab_b.json()["refresh_token"]})
    assert again.status_code == 200


async def test_refresh_reuse_after_grace_window_revokes(
    client: AsyncClient, app: object, db: AsyncSession
) -> None:
    app.state.settings.refresh_reuse_grace = timedelta(0)  # type: ignore[attr-defined]
    user = await register(client)
    first = await login(client, user["email"])
    client.cookies.clear()
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).status_code == 200
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(reused, 401, "refresh_reused")
    session_id = jwt.decode(first["access_token"], options={"verify_signature": False})["sid"]
    events = list(
        (
            await db.scalars(
                select(AuditEvent).where(
                    AuditEvent.action == "auth.refresh.reused", AuditEvent.actor_id == user["id"]
                )
            )
        ).all()
    )
    assert len(events) == 1
    assert (events[0].target_type, events[0].target_id) == ("session", session_id)
    assert events[0].request_id == reused.headers["x-request-id"]
    assert_problem(
        await client.get("/api/v1/users/me", headers=bearer(first["access_token"])), 401, "session_revoked"
    )


@pytest.mark.parametrize(
    ("token", "status", "code"),
    [
        ("", 401, "token_invalid"),
        ("garbage", 401, "token_invalid"),
        ("x" * 257, 422, "validation_error"),  # over the field's 256 characters
    ],
)
async def test_refresh_with_bad_token(client: AsyncClient, token: str, status: int, code: str) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refresh_token": token})
    assert_problem(response, status, code)


async def test_refresh_with_an_expired_token_is_token_invalid(client: AsyncClient, db: AsyncSession) -> None:
    """An unknown or expired refresh token is 401 `token_invalid` (docs/spec-notes.md), not a reuse."""
    user = await register(client)
    tokens = await login(client, user["email"])
    client.cookies.clear()
    row = await db.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == hash_token(tokens["refresh_token"]))
    )
    assert row is not None and row.used_at is None
    await db.execute(
        update(RefreshToken)
        .where(RefreshToken.id == row.id)
        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    )
    await db.commit()
    refused = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(refused, 401, "token_invalid")
    grant = await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert grant.status_code == 400 and grant.json()["error"] == "invalid_grant"
    # Not taken for theft: the session and its access token live on.
    assert (await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))).status_code == 200
    reused = await db.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.action == "auth.refresh.reused")
        .where(AuditEvent.actor_id == user["id"])
    )
    assert reused == 0


async def test_refresh_without_any_token_is_401(client: AsyncClient) -> None:
    assert_problem(await client.post("/api/v1/auth/refresh", json={}), 401, "not_authenticated")


async def test_logout_stops_access_token_at_once(client: AsyncClient) -> None:
    user = await register(client)
    tokens = await login(client, user["email"])
    client.cookies.clear()
    headers = bearer(tokens["access_token"])
    response = await client.post("/api/v1/auth/logout", headers=headers)
    assert response.status_code == 204
    assert_problem(await client.get("/api/v1/users/me", headers=headers), 401, "session_revoked")
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


async def test_logout_all_revokes_every_session(client: AsyncClient) -> None:
    user = await register(client)
    one, two = await login(client, user["email"]), await login(client, user["email"])
    client.cookies.clear()
    assert (
        await client.post("/api/v1/auth/logout-all", headers=bearer(one["access_token"]))
    ).status_code == 204
    for tokens in (one, two):
        assert (
            await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
        ).status_code == 401


async def test_sessions_list_marks_current_and_delete(client: AsyncClient) -> None:
    user = await register(client)
    other = await login(client, user["email"])
    mine = await login(client, user["email"])
    client.cookies.clear()
    headers = bearer(mine["access_token"])
    listed = await client.get("/api/v1/auth/sessions", headers=headers)
    assert listed.status_code == 200
    page = listed.json()
    assert page["next_cursor"] is None
    assert len(page["items"]) == 2
    current = [s for s in page["items"] if s["current"]]
    assert len(current) == 1
    assert set(current[0]) == {"id", "created_at", "last_used_at", "ip", "user_agent", "current"}
    assert current[0]["ip"] == "203.0.113.7"
    other_id = next(s["id"] for s in page["items"] if not s["current"])
    assert (await client.delete(f"/api/v1/auth/sessions/{other_id}", headers=headers)).status_code == 204
    assert (await client.get("/api/v1/users/me", headers=bearer(other["access_token"]))).status_code == 401
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200


async def test_sessions_list_pages_with_limit_and_cursor(client: AsyncClient) -> None:
    user = await register(client)
    tokens = [await login(client, user["email"]) for _ in range(3)]
    client.cookies.clear()
    headers = bearer(tokens[-1]["access_token"])
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/auth/sessions", params=params, headers=headers)).json()
        assert len(page["items"]) <= 2
        seen += [s["id"] for s in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 3
    assert seen == sorted(seen, reverse=True)  # newest first
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "!!"}):
        response = await client.get("/api/v1/auth/sessions", params=params, headers=headers)
        assert_problem(response, 422, "validation_error")


async def test_cannot_delete_another_users_session(client: AsyncClient) -> None:
    _, alice = await signed_in(client)
    _, bob = await signed_in(client)
    bob_sessions = (await client.get("/api/v1/auth/sessions", headers=bob)).json()["items"]
    response = await client.delete(f"/api/v1/auth/sessions/{bob_sessions[0]['id']}", headers=alice)
    assert_problem(response, 404, "not_found")
    assert (await client.get("/api/v1/users/me", headers=bob)).status_code == 200
    assert_problem(
        await client.delete("/api/v1/auth/sessions/not-a-uuid", headers=alice), 422, "validation_error"
    )


async def test_cookie_mode_with_csrf_double_submit(client: AsyncClient) -> None:
    user = await register(client)
    response = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    cookies = {c.name: c for c in client.cookies.jar}
    assert {"authgate_access", "authgate_refresh", "authgate_csrf"} <= set(cookies)
    set_cookie = response.headers.get_list("set-cookie")
    access = next(h for h in set_cookie if h.startswith("authgate_access="))
    refresh = next(h for h in set_cookie if h.startswith("authgate_refresh="))
    csrf = next(h for h in set_cookie if h.startswith("authgate_csrf="))
    assert "HttpOnly" in access and "HttpOnly" in refresh and "HttpOnly" not in csrf
    assert "Path=/api/v1/auth" in refresh
    assert all("SameSite=Lax" in header for header in (access, refresh, csrf))  # as SPEC §4 spells it
    # Safe requests need no CSRF header; the cookie authenticates.
    assert (await client.get("/api/v1/users/me")).status_code == 200
    # Unsafe ones do.
    assert_problem(await client.patch("/api/v1/users/me", json={"full_name": "X"}), 403, "csrf_failed")
    wrong = await client.patch("/api/v1/users/me", json={"full_name": "X"}, headers={"X-CSRF-Token": "nope"})
    assert_problem(wrong, 403, "csrf_failed")
    token = cookies["authgate_csrf"].value
    ok = await client.patch("/api/v1/users/me", json={"full_name": "X"}, headers={"X-CSRF-Token": token})
    assert ok.status_code == 200 and ok.json()["full_name"] == "X"


async def test_cookie_refresh_needs_csrf_and_rotates(client: AsyncClient) -> None:
    user = await register(client)
    await login(client, user["email"])
    assert_problem(await client.post("/api/v1/auth/refresh"), 403, "csrf_failed")
    csrf = client.cookies["authgate_csrf"]
    response = await client.post("/api/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert client.cookies["authgate_csrf"] != csrf  # a new pair, a new CSRF value


async def test_logout_clears_cookies(client: AsyncClient) -> None:
    user = await register(client)
    await login(client, user["email"])
    csrf = client.cookies["authgate_csrf"]
    response = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 204
    cleared = response.headers.get_list("set-cookie")
    assert any(h.startswith("authgate_access=") and "Max-Age=0" in h for h in cleared)
    assert (await client.get("/api/v1/users/me")).status_code == 401


class TestOAuth2TokenEndpoint:
    async def test_password_grant_with_email_or_username(self, client: AsyncClient) -> None:
        user = await register(client, username="dora")
        for name in (user["email"], "dora"):
            response = await client.post(
                "/api/v1/auth/token", data={"grant_type": "password", "username": name, "password": PASSWORD}
            )
            assert response.status_code == 200
            body = response.json()
            assert body["token_type"] == "bearer" and body["access_token"] and body["refresh_token"]
            assert response.headers["cache-control"] == "no-store"  # RFC 6749 §5.1: both headers
            assert response.headers["pragma"] == "no-cache"
            claims = jwt.decode(body["access_token"], options={"verify_signature": False})
            assert body["scope"] == claims["scope"] == ""  # permissions, and a plain user holds none

    async def test_refresh_grant(self, client: AsyncClient) -> None:
        user = await register(client)
        tokens = await login(client, user["email"])
        response = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert response.status_code == 200
        assert response.json()["refresh_token"] != tokens["refresh_token"]

    @pytest.mark.parametrize(
        ("data", "error"),
        [
            ({"grant_type": "password", "username": "nobody@example.com", "password": "x"}, "invalid_grant"),
            ({"grant_type": "refresh_token", "refresh_token": "nope"}, "invalid_grant"),
            ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
            ({"grant_type": "password", "username": "a@example.com"}, "invalid_request"),
            ({"grant_type": "refresh_token"}, "invalid_request"),
            ({}, "invalid_request"),
        ],
    )
    async def test_errors_follow_rfc6749(self, client: AsyncClient, data: dict[str, str], error: str) -> None:
        response = await client.post("/api/v1/auth/token", data=data)
        assert response.status_code == 400
        assert response.json()["error"] == error

    @pytest.mark.parametrize(
        ("content", "content_type", "error"),
        [
            ("grant_type=" + "p" * 65, "application/x-www-form-urlencoded", "invalid_request"),
            ("grant_type=password&username=" + "u" * 321 + "&password=x", None, "invalid_request"),
            ("grant_type=password&username=a&password=" + "x" * 1025, None, "invalid_request"),
            ("grant_type=refresh_token&refresh_token=" + "r" * 1025, None, "invalid_request"),
            ("grant_type=refresh_token&refresh_token=" + "r" * 700, None, "invalid_grant"),  # a JWT's size
            ("grant_type=password&grant_type=refresh_token&refresh_token=x", None, "invalid_request"),
            ("grant_type=password&username=a&username=b&password=x", None, "invalid_request"),
            ("grant_type=password&username=a%00&password=x", None, "invalid_request"),
            ('{"grant_type": "password"}', "text/plain", "invalid_request"),
            ('{"grant_type": "password"}', "application/xml", "invalid_request"),
        ],
    )
    async def test_every_refusal_is_rfc6749(
        self, client: AsyncClient, content: str, content_type: str | None, error: str
    ) -> None:
        """Over-long or repeated parameters (RFC 6749 §3.2), NUL characters and wrong content types."""
        headers = {"content-type": content_type or "application/x-www-form-urlencoded"}
        response = await client.post("/api/v1/auth/token", content=content, headers=headers)
        assert response.status_code == 400, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"] == "no-store"
        assert set(response.json()) == {"error", "error_description"}
        assert response.json()["error"] == error

    async def test_an_access_token_as_refresh_token_is_invalid_grant(self, client: AsyncClient) -> None:
        user = await register(client)
        tokens = await login(client, user["email"])
        response = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["access_token"]},
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_grant"
        refreshed = await client.post(
            "/api/v1/auth/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        )
        assert refreshed.status_code == 200  # the refused request used up nothing

    async def test_a_query_with_nul_is_rfc6749(self, client: AsyncClient) -> None:
        response = await client.post("/api/v1/auth/token?x=%00", data={"grant_type": "password"})
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"


async def test_self_registration_can_be_turned_off(client: AsyncClient, app: object) -> None:
    app.state.settings.features.self_registration = False  # type: ignore[attr-defined]
    response = await client.post(
        "/api/v1/auth/register", json={"email": unique_email(), "password": PASSWORD}
    )
    assert_problem(response, 403, "permission_denied")


@pytest.mark.parametrize(("env", "secure"), [("test", True), ("production", True), ("development", False)])
async def test_cookies_are_secure_unless_development(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    env: str,
    secure: bool,
) -> None:
    """SPEC §4: SameSite=Lax, Secure unless development (when COOKIE_SECURE is not set)."""
    # No in-process courier: it would share the test's connection with the requests.
    outbox = settings.outbox.model_copy(update={"in_process": False})
    configured = settings.model_copy(update={"env": env, "cookie_secure": None, "outbox": outbox})
    assert configured.secure_cookies is secure
    app = create_app(configured, sessionmaker=sessionmaker, engine=engine)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="https://test") as client,
    ):
        user = await register(client)
        response = await client.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        set_cookie = response.headers.get_list("set-cookie")
        for name in ("authgate_access", "authgate_refresh", "authgate_csrf"):
            header = next(h for h in set_cookie if h.startswith(f"{name}="))
            attributes = {part.strip().split("=", 1)[0].lower() for part in header.split(";")[1:]}
            assert ("secure" in attributes) is secure, header
            assert "SameSite=Lax" in header
        # Signing out expires them with the same attribute.
        logout = await client.post("/api/v1/auth/logout", headers=bearer(response.json()["access_token"]))
        assert logout.status_code == 204
        expired = [h for h in logout.headers.get_list("set-cookie") if h.startswith("authgate_access=")]
        assert expired and all(("secure" in h.lower()) is secure for h in expired)
