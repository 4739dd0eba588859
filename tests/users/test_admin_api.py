"""User administration and self-service delete (SPEC §6), on both engines."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.outbox.models import OutboxMessage
from authgate.pagination import encode_cursor
from authgate.users.models import User
from tests.factories import PASSWORD, assert_problem, bearer, login, register, signed_in, unique_email
from tests.rbac import account, admin, grant, issue_key, signed_in_with


async def _events(db: AsyncSession, action: str, target: str) -> list[AuditEvent]:
    """The events in the order they were written (the chain's sequence), oldest first."""
    stmt = (
        select(AuditEvent)
        .where(AuditEvent.action == action, AuditEvent.target_id == target)
        .order_by(AuditEvent.seq)
    )
    return list((await db.scalars(stmt)).all())


# --- list -----------------------------------------------------------------------------------------


async def test_list_needs_users_read(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    assert_problem(await client.get("/api/v1/users"), 401, "not_authenticated")
    assert_problem(await client.get("/api/v1/users", headers=headers), 403, "permission_denied")
    _, reader = await signed_in_with(client, db, "users:read")
    response = await client.get("/api/v1/users", headers=reader)
    assert response.status_code == 200
    assert set(response.json()) == {"items", "next_cursor"}


async def test_list_pages_newest_first(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    total = await db.scalar(select(func.count()).select_from(User).where(User.deleted_at.is_(None)))
    seen: list[str] = []
    cursor = None
    while True:
        url = "/api/v1/users?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(url, headers=headers)).json()
        seen += [u["id"] for u in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == total
    assert seen == sorted(seen, key=lambda i: uuid.UUID(i).bytes, reverse=True)


async def test_list_filters(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    zed = await register(client, email=unique_email("zedfilter"), username="zed_filter", full_name="Zora Ed")
    other = await register(client, email=unique_email("yfilter"), full_name="Yannick")
    await grant(db, other["id"], "admin")
    target = await account(db, other["id"])
    target.is_active = False
    await db.commit()

    async def ids(query: str) -> set[str]:
        response = await client.get(f"/api/v1/users?limit=200&{query}", headers=headers)
        assert response.status_code == 200, response.text
        return {u["id"] for u in response.json()["items"]}

    assert await ids("q=ZEDFILTER") == {zed["id"]}  # email prefix, any case
    assert await ids("q=zed_f") == {zed["id"]}  # username prefix
    assert await ids("q=zora") == {zed["id"]}  # name prefix
    strasse = await register(client, full_name="Straße Zed")
    assert await ids("q=STRA%C3%9FE") == {strasse["id"]}  # "STRAßE"
    assert await ids("q=strasse") == {strasse["id"]}  # case-folded: ß meets ss
    emile = await register(client, full_name="Émile Zola")
    assert await ids("q=%C3%A9mile") == {emile["id"]}  # "émile": a non-ASCII capital, on both engines
    assert await ids("q=%EF%BC%BA%EF%BC%AF%EF%BC%B2%EF%BC%A1") == {zed["id"]}  # "ＺＯＲＡ" (NFKC)
    renamed = await client.patch(
        f"/api/v1/users/{zed['id']}", json={"full_name": "Ørjan Ed"}, headers=headers
    )
    assert renamed.status_code == 200, renamed.text
    assert await ids("q=%C3%B8rjan") == {zed["id"]}  # the folded name follows a change
    assert await ids("q=zora") == set()
    assert await ids("q=ilter") == set()  # a prefix, not a substring
    assert await ids("q=%25") == set()  # LIKE wildcards are literal
    assert await ids("q=_") == set()
    assert await ids("is_active=false") == {other["id"]}
    assert other["id"] not in await ids("is_active=true")
    assert other["id"] in await ids("role=admin")
    assert zed["id"] not in await ids("role=admin")
    assert await ids("role=no-such-role") == set()
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert await ids(f"created_after={future}") == set()
    assert zed["id"] in await ids(f"created_before={future}")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()  # no offset: UTC
    assert await ids(f"created_after={tomorrow}") == set()
    assert zed["id"] in await ids(f"created_before={tomorrow}")
    assert zed["id"] in await ids(f"created_before={future.removesuffix('Z')}")
    assert await ids("created_before=2000-01-01") == set()
    for before_1970 in ("1969-12-31", "0001-01-01", "1970-01-01T00:00:00%2B01:00"):
        assert zed["id"] in await ids(f"created_after={before_1970}")
        assert await ids(f"created_before={before_1970}") == set()
    assert_problem(
        await client.get("/api/v1/users?created_after=yesterday", headers=headers), 422, "validation_error"
    )
    for beyond_utc in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"):
        for name in ("created_after", "created_before"):
            out_of_range = await client.get("/api/v1/users", params={name: beyond_utc}, headers=headers)
            assert_problem(out_of_range, 422, "validation_error")
    assert_problem(await client.get("/api/v1/users?cursor=!!", headers=headers), 422, "validation_error")


# --- create ---------------------------------------------------------------------------------------


async def test_create_without_password_sends_an_invitation(client: AsyncClient, db: AsyncSession) -> None:
    inviter, headers = await signed_in_with(client, db, "users:write", full_name="Ada Admin")
    email = unique_email("invited")
    response = await client.post(
        "/api/v1/users", json={"email": email, "full_name": "New One"}, headers=headers
    )
    assert response.status_code == 201
    user = response.json()
    assert user["roles"] == ["user"]
    assert user["email"] == email
    message = await db.scalar(select(OutboxMessage).where(OutboxMessage.recipient == email))
    assert message is not None
    assert message.template == "user_invite"
    assert message.context["inviter"] == "Ada Admin"
    assert message.context["link"].startswith("http://test/")
    created = await _events(db, "user.registered", user["id"])
    assert created
    assert created[0].actor_id == inviter["id"]
    bad = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(bad, 401, "invalid_credentials")  # no password yet


async def test_create_with_password_can_sign_in(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in_with(client, db, "users:write")
    email = unique_email()
    body = {"email": email, "password": PASSWORD, "username": "made_by_admin", "email_verified": True}
    response = await client.post("/api/v1/users", json=body, headers=headers)
    assert response.status_code == 201
    assert response.json()["email_verified"] is True
    assert (await login(client, email))["user"]["id"] == response.json()["id"]
    assert await db.scalar(select(OutboxMessage).where(OutboxMessage.recipient == email)) is None


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"email": "dup-admin@example.com"}, 409, "email_taken"),
        ({"email": "not-an-email"}, 422, "validation_error"),
        ({"email": "ok@example.com", "password": "short"}, 422, "validation_error"),
        ({"email": "ok@example.com", "password": "password"}, 422, "validation_error"),
        ({"email": "ok@example.com", "roles": ["admin"]}, 422, "validation_error"),
    ],
)
async def test_create_bad_input(
    client: AsyncClient, db: AsyncSession, body: dict[str, object], status: int, code: str
) -> None:
    await register(client, email="dup-admin@example.com")
    _, headers = await signed_in_with(client, db, "users:write")
    before = await db.scalar(select(func.count()).select_from(User))
    mail_before = await _outbox_count(db, str(body["email"]))
    assert_problem(await client.post("/api/v1/users", json=body, headers=headers), status, code)
    assert await db.scalar(select(func.count()).select_from(User)) == before
    assert await _outbox_count(db, str(body["email"])) == mail_before


async def _outbox_count(db: AsyncSession, address: str) -> int:
    stmt = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.recipient == address)
    return int(await db.scalar(stmt) or 0)


async def test_create_needs_users_write(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in_with(client, db, "users:read")
    response = await client.post("/api/v1/users", json={"email": unique_email()}, headers=headers)
    assert_problem(response, 403, "permission_denied")


# --- read -----------------------------------------------------------------------------------------


async def test_read_self_other_and_unknown(client: AsyncClient, db: AsyncSession) -> None:
    me, headers = await signed_in(client)
    other = await register(client)
    _, reader = await signed_in_with(client, db, "users:read")
    assert (await client.get(f"/api/v1/users/{me['id']}", headers=headers)).json()["id"] == me["id"]
    assert_problem(
        await client.get(f"/api/v1/users/{other['id']}", headers=headers), 403, "permission_denied"
    )
    # Without the permission an unknown id is 403 too, so existence is not revealed.
    assert_problem(
        await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=headers), 403, "permission_denied"
    )
    assert (await client.get(f"/api/v1/users/{other['id']}", headers=reader)).json()["id"] == other["id"]
    assert_problem(await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=reader), 404, "not_found")
    assert (await client.get("/api/v1/users/not-a-uuid", headers=reader)).status_code == 422


# --- update ---------------------------------------------------------------------------------------


async def test_admin_update_fields(client: AsyncClient, db: AsyncSession) -> None:
    actor, headers = await signed_in_with(client, db, "users:write")
    target = await register(client, phone="+14155550100")
    body = {"username": "Renamed_1", "full_name": "Re Named", "phone": "+14155550101", "email_verified": True}
    response = await client.patch(f"/api/v1/users/{target['id']}", json=body, headers=headers)
    assert response.status_code == 200
    user = response.json()
    assert user["username"] == "renamed_1"
    assert user["full_name"] == "Re Named"
    assert user["phone"] == "+14155550101"
    assert user["phone_verified"] is False
    assert user["email_verified"] is True
    events = await _events(db, "user.updated", target["id"])
    assert events[-1].actor_id == actor["id"]
    assert events[-1].data["fields"] == ["email_verified", "full_name", "phone", "username"]


@pytest.mark.parametrize(
    "body",
    [
        {"email": "new@example.com"},  # SPEC §12's fields only: the address has its own operation
        {"is_active": "maybe"},
        {"is_active": "false"},
        {"is_active": 0},
        {"is_active": None},
        {"email_verified": None},
        {"username": None, "full_name": "Changed"},
        {"username": "x"},
        {"roles": ["admin"]},
    ],
)
async def test_admin_update_bad_input_changes_nothing(
    client: AsyncClient, db: AsyncSession, body: dict[str, object]
) -> None:
    _, headers = await signed_in_with(client, db, "users:write")
    target = await register(client)
    response = await client.patch(f"/api/v1/users/{target['id']}", json=body, headers=headers)
    assert_problem(response, 422, "validation_error")
    row = await account(db, target["id"])
    assert row.email == target["email"]
    assert row.is_active is True
    assert row.username is None
    assert row.full_name is None


async def test_admin_update_username_taken_and_unknown_user(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in_with(client, db, "users:write")
    await register(client, username="taken_name")
    target = await register(client)
    body = {"username": "TAKEN_NAME", "full_name": "Renamed", "is_active": False, "email_verified": True}
    response = await client.patch(f"/api/v1/users/{target['id']}", json=body, headers=headers)
    assert_problem(response, 409, "username_taken")
    row = await account(db, target["id"])
    assert (row.username, row.full_name, row.is_active, row.email_verified) == (None, None, True, False)
    assert await _events(db, "user.updated", target["id"]) == []
    assert_problem(
        await client.patch(f"/api/v1/users/{uuid.uuid4()}", json={}, headers=headers), 404, "not_found"
    )


async def _outbox_to(db: AsyncSession, address: str, template: str) -> list[OutboxMessage]:
    stmt = select(OutboxMessage).where(OutboxMessage.recipient == address, OutboxMessage.template == template)
    return list((await db.scalars(stmt)).all())


async def test_admin_changes_the_email_the_new_one_unverified_the_old_one_told(
    client: AsyncClient, db: AsyncSession
) -> None:
    actor, headers = await signed_in_with(client, db, "users:write")
    old = unique_email("before")
    target = await register(client, email=old)
    await db.execute(update(User).where(User.id == uuid.UUID(target["id"])).values(email_verified=True))
    await db.commit()
    new = unique_email("after")
    response = await client.put(
        f"/api/v1/users/{target['id']}/email", json={"email": f"  {new.upper()} "}, headers=headers
    )
    assert response.status_code == 200, response.text
    shouted = new.upper().replace("EXAMPLE.COM", "example.com")  # stored trimmed, the domain normalised
    assert response.json()["email"] == shouted
    assert response.json()["email_verified"] is False
    events = await _events(db, "user.updated", target["id"])
    assert events[-1].actor_id == actor["id"]
    assert events[-1].data == {"fields": ["email", "email_verified"], "by_admin": True}
    [alert] = await _outbox_to(db, old, "email_changed")
    assert alert.context["new_email"] == shouted and alert.context["old_email"] == old
    # Signing in takes the new address, in any case; the old one is no account any more.
    assert (
        await client.post("/api/v1/auth/login", json={"email": new, "password": PASSWORD})
    ).status_code == 200
    assert_problem(
        await client.post("/api/v1/auth/login", json={"email": old, "password": PASSWORD}),
        401,
        "invalid_credentials",
    )


async def signed_in_as(client: AsyncClient, email: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await login(client, email))['access_token']}"}


async def test_admin_email_change_can_keep_verified_and_a_case_change_is_no_new_address(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await signed_in_with(client, db, "users:write")
    target = await register(client)
    new = unique_email("vouched")
    body = {"email": new, "email_verified": True}
    response = await client.put(f"/api/v1/users/{target['id']}/email", json=body, headers=headers)
    assert response.json()["email_verified"] is True
    # The old address was never verified (a typo, maybe someone else's): it is not told the new one.
    assert await _outbox_to(db, target["email"], "email_changed") == []
    response = await client.put(
        f"/api/v1/users/{target['id']}/email", json={"email": new.upper()}, headers=headers
    )
    assert response.status_code == 200
    assert response.json()["email"] == new.upper().replace("EXAMPLE.COM", "example.com")
    assert response.json()["email_verified"] is True  # the same address, written otherwise
    assert await _outbox_to(db, new, "email_changed") == []
    recorded = len(await _events(db, "user.updated", target["id"]))
    stored = response.json()["email"]
    same = await client.put(f"/api/v1/users/{target['id']}/email", json={"email": stored}, headers=headers)
    assert same.status_code == 200
    assert (
        len(await _events(db, "user.updated", target["id"])) == recorded
    )  # nothing changed, nothing recorded


async def test_admin_email_change_to_a_taken_address_is_409_and_changes_nothing(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await signed_in_with(client, db, "users:write")
    other = await register(client)
    deleted = await register(client)
    await client.request(
        "DELETE",
        "/api/v1/users/me",
        json={"password": PASSWORD},
        headers=await signed_in_as(client, deleted["email"]),
    )
    target = await register(client)
    for taken in (other["email"].upper(), deleted["email"]):  # a deleted account keeps its address
        response = await client.put(
            f"/api/v1/users/{target['id']}/email", json={"email": taken}, headers=headers
        )
        assert_problem(response, 409, "email_taken")
    row = await account(db, target["id"])
    assert row.email == target["email"]
    assert await _events(db, "user.updated", target["id"]) == []
    assert await _outbox_to(db, target["email"], "email_changed") == []


@pytest.mark.parametrize(
    "body",
    [
        {"email": "not-an-address"},
        {"email": None},
        {"email": "x" * 310 + "@example.com"},
        {},
        {"email": "fine@example.com", "email_verified": None},
        {"email": "fine@example.com", "username": "sneaky"},
    ],
)
async def test_email_change_bad_input_changes_nothing(
    client: AsyncClient, db: AsyncSession, body: dict[str, object]
) -> None:
    _, headers = await signed_in_with(client, db, "users:write")
    target = await register(client)
    response = await client.put(f"/api/v1/users/{target['id']}/email", json=body, headers=headers)
    assert_problem(response, 422, "validation_error")
    assert (await account(db, target["id"])).email == target["email"]


async def test_email_change_needs_users_write_and_what_the_user_holds(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, plain = await signed_in(client)
    _, writer = await signed_in_with(client, db, "users:write")
    boss, _ = await admin(client, db)
    target = await register(client)
    body = {"email": unique_email("elsewhere")}
    assert_problem(
        await client.put(f"/api/v1/users/{target['id']}/email", json=body), 401, "not_authenticated"
    )
    assert_problem(
        await client.put(f"/api/v1/users/{target['id']}/email", json=body, headers=plain),
        403,
        "permission_denied",
    )
    assert_problem(
        await client.put(f"/api/v1/users/{boss['id']}/email", json=body, headers=writer),
        403,
        "permission_denied",
    )
    assert_problem(
        await client.put(f"/api/v1/users/{uuid.uuid4()}/email", json=body, headers=writer), 404, "not_found"
    )
    assert (await account(db, boss["id"])).email == boss["email"]


async def test_a_verification_link_sent_to_the_old_address_stops_working(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await signed_in_with(client, db, "users:write")
    target = await register(client)
    [message] = await _outbox_to(db, target["email"], "email_verification")
    token = message.context["link"].rsplit("token=", 1)[1]
    moved = await client.put(
        f"/api/v1/users/{target['id']}/email", json={"email": unique_email("moved")}, headers=headers
    )
    assert moved.status_code == 200
    assert_problem(
        await client.post("/api/v1/auth/verify-email/confirm", json={"token": token}), 400, "token_invalid"
    )
    assert (await account(db, target["id"])).email_verified is False


async def test_deactivation_cuts_access_at_once(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    target, target_headers = await signed_in(client)
    raw = (await issue_key(client, target_headers))["key"]
    assert (await client.get("/api/v1/users/me", headers=target_headers)).status_code == 200
    response = await client.patch(f"/api/v1/users/{target['id']}", json={"is_active": False}, headers=headers)
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert_problem(await client.get("/api/v1/users/me", headers=target_headers), 403, "account_disabled")
    assert_problem(await client.get("/api/v1/users/me", headers={"X-API-Key": raw}), 401, "token_invalid")
    await client.patch(f"/api/v1/users/{target['id']}", json={"is_active": True}, headers=headers)
    assert (await client.get("/api/v1/users/me", headers=target_headers)).status_code == 200


async def test_a_weaker_admin_cannot_manage_a_stronger_one(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in_with(client, db, "users:write", "users:delete")
    boss, boss_headers = await admin(client, db)
    patch = await client.patch(f"/api/v1/users/{boss['id']}", json={"is_active": False}, headers=headers)
    assert_problem(patch, 403, "permission_denied")
    assert_problem(
        await client.delete(f"/api/v1/users/{boss['id']}", headers=headers), 403, "permission_denied"
    )
    row = await account(db, boss["id"])
    assert row.is_active is True
    assert row.deleted_at is None
    assert (await client.get("/api/v1/users/me", headers=boss_headers)).status_code == 200


# --- delete and restore ---------------------------------------------------------------------------


async def test_admin_soft_delete_and_restore(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    target, target_headers = await signed_in(client)
    raw = (await issue_key(client, target_headers))["key"]
    assert (await client.delete(f"/api/v1/users/{target['id']}", headers=headers)).status_code == 204
    assert_problem(await client.get("/api/v1/users/me", headers=target_headers), 401, "token_invalid")
    assert_problem(await client.get("/api/v1/users/me", headers={"X-API-Key": raw}), 401, "token_invalid")
    assert_problem(await client.get(f"/api/v1/users/{target['id']}", headers=headers), 404, "not_found")
    assert_problem(await client.delete(f"/api/v1/users/{target['id']}", headers=headers), 404, "not_found")
    listed = (await client.get("/api/v1/users?deleted=true&limit=200", headers=headers)).json()
    assert target["id"] in {u["id"] for u in listed["items"]}
    by_address = await client.get(
        "/api/v1/users", params={"deleted": "true", "q": target["email"][:8].upper()}, headers=headers
    )
    assert [u["id"] for u in by_address.json()["items"]] == [target["id"]]
    assert await _events(db, "user.deleted", target["id"])

    restored = await client.post(f"/api/v1/users/{target['id']}/restore", headers=headers)
    assert restored.status_code == 200
    assert restored.json()["email"] == target["email"]
    assert await _events(db, "user.restored", target["id"])
    # Sessions and keys stay ended; the user signs in again.
    assert_problem(await client.get("/api/v1/users/me", headers={"X-API-Key": raw}), 401, "token_invalid")
    assert (await login(client, target["email"]))["user"]["id"] == target["id"]


async def test_delete_needs_users_delete_and_restore_needs_users_write(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, writer = await signed_in_with(client, db, "users:write")
    target = await register(client)
    assert_problem(
        await client.delete(f"/api/v1/users/{target['id']}", headers=writer), 403, "permission_denied"
    )
    _, deleter = await signed_in_with(client, db, "users:delete")
    assert (await client.delete(f"/api/v1/users/{target['id']}", headers=deleter)).status_code == 204
    restore = await client.post(f"/api/v1/users/{target['id']}/restore", headers=deleter)
    assert_problem(restore, 403, "permission_denied")
    assert (await client.post(f"/api/v1/users/{target['id']}/restore", headers=writer)).status_code == 200
    assert_problem(
        await client.post(f"/api/v1/users/{uuid.uuid4()}/restore", headers=writer), 404, "not_found"
    )


@pytest.mark.parametrize("taken_meanwhile", [False, True])
async def test_restore_gives_an_account_deleted_by_an_earlier_release_its_address_back(
    client: AsyncClient, db: AsyncSession, taken_meanwhile: bool
) -> None:
    """Earlier releases replaced a deleted account's normalised address with a placeholder."""
    _, headers = await admin(client, db)
    target = await register(client)
    assert (await client.delete(f"/api/v1/users/{target['id']}", headers=headers)).status_code == 204
    placeholder = f"deleted+{uuid.UUID(target['id']).hex}@deleted.invalid"
    await db.execute(
        update(User).where(User.id == uuid.UUID(target["id"])).values(email_normalized=placeholder)
    )
    await db.commit()
    if taken_meanwhile:
        await register(client, email=target["email"])
        restored = await client.post(f"/api/v1/users/{target['id']}/restore", headers=headers)
        assert_problem(restored, 409, "email_taken")
        assert (await account(db, target["id"])).deleted_at is not None
        return
    assert (await client.post(f"/api/v1/users/{target['id']}/restore", headers=headers)).status_code == 200
    assert (await login(client, target["email"]))["user"]["id"] == target["id"]


async def test_a_deleted_account_keeps_its_address_and_username_until_the_purge(
    client: AsyncClient, db: AsyncSession
) -> None:
    """SPEC §6: the email is freed after the retention period, not at the delete."""
    _, headers = await admin(client, db)
    target = await register(client, username=f"kept{uuid.uuid4().hex[:8]}")
    assert (await client.delete(f"/api/v1/users/{target['id']}", headers=headers)).status_code == 204
    users_before = await db.scalar(select(func.count()).select_from(User))
    for body in (
        {"email": target["email"].upper(), "password": PASSWORD},
        {
            "email": f"other-{uuid.uuid4().hex[:8]}@example.com",
            "password": PASSWORD,
            "username": target["username"],
        },
    ):
        taken = await client.post("/api/v1/auth/register", json=body)
        assert_problem(taken, 409, "email_taken" if "username" not in body else "username_taken")
    created = await client.post(
        "/api/v1/users", json={"email": target["email"], "password": PASSWORD}, headers=headers
    )
    assert_problem(created, 409, "email_taken")
    db.expire_all()
    assert await db.scalar(select(func.count()).select_from(User)) == users_before
    restored = await client.post(f"/api/v1/users/{target['id']}/restore", headers=headers)
    assert restored.status_code == 200
    assert restored.json()["email"] == target["email"]


# --- roles ----------------------------------------------------------------------------------------


async def test_set_roles_replaces_the_set(client: AsyncClient, db: AsyncSession) -> None:
    actor, headers = await admin(client, db)
    await client.post(
        "/api/v1/roles", json={"name": "support", "permissions": ["users:read"]}, headers=headers
    )
    target, target_headers = await signed_in(client)
    response = await client.put(
        f"/api/v1/users/{target['id']}/roles", json={"roles": ["support"]}, headers=headers
    )
    assert response.status_code == 200
    assert response.json()["roles"] == ["support"]
    assert (await client.get("/api/v1/users", headers=target_headers)).status_code == 200  # next request
    await client.put(f"/api/v1/users/{target['id']}/roles", json={"roles": ["user"]}, headers=headers)
    assert_problem(await client.get("/api/v1/users", headers=target_headers), 403, "permission_denied")
    events = await _events(db, "user.roles.changed", target["id"])
    assert [e.actor_id for e in events] == [actor["id"], actor["id"]]
    assert [e.data for e in events] == [
        {"before": ["user"], "after": ["support"]},
        {"before": ["support"], "after": ["user"]},
    ]


async def test_assigning_a_role_you_do_not_fully_hold_is_403(client: AsyncClient, db: AsyncSession) -> None:
    me, headers = await signed_in_with(client, db, "roles:assign", "users:read")
    my_roles = (await client.get(f"/api/v1/users/{me['id']}", headers=headers)).json()["roles"]
    target = await register(client)
    for roles in (["admin"], ["user", "admin"]):
        response = await client.put(
            f"/api/v1/users/{target['id']}/roles", json={"roles": roles}, headers=headers
        )
        assert_problem(response, 403, "permission_denied")
    self_grant = await client.put(
        f"/api/v1/users/{me['id']}/roles", json={"roles": ["admin"]}, headers=headers
    )
    assert_problem(self_grant, 403, "permission_denied")
    assert (await client.get(f"/api/v1/users/{target['id']}", headers=headers)).json()["roles"] == ["user"]
    assert (await client.get(f"/api/v1/users/{me['id']}", headers=headers)).json()["roles"] == my_roles
    assert "admin" not in my_roles
    # Removing a role that grants more than the caller holds is refused too.
    boss = await register(client)
    await grant(db, boss["id"], "admin")
    boss_roles = (await client.get(f"/api/v1/users/{boss['id']}", headers=headers)).json()["roles"]
    assert "admin" in boss_roles
    demote = await client.put(f"/api/v1/users/{boss['id']}/roles", json={"roles": ["user"]}, headers=headers)
    assert_problem(demote, 403, "permission_denied")
    assert (await client.get(f"/api/v1/users/{boss['id']}", headers=headers)).json()["roles"] == boss_roles
    assert (await client.get(f"/api/v1/users/{me['id']}", headers=headers)).json()["roles"] == my_roles
    for user_id in (target["id"], me["id"], boss["id"]):
        assert await _events(db, "user.roles.changed", user_id) == []


async def test_set_roles_bad_input(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    target = await register(client)
    url = f"/api/v1/users/{target['id']}/roles"
    unknown = await client.put(url, json={"roles": ["admin", "ghost"]}, headers=headers)
    assert_problem(unknown, 422, "validation_error")
    assert_problem(await client.put(url, json={"roles": "admin"}, headers=headers), 422, "validation_error")
    assert_problem(await client.put(url, json={}, headers=headers), 422, "validation_error")
    response = await client.put(f"/api/v1/users/{uuid.uuid4()}/roles", json={"roles": []}, headers=headers)
    assert_problem(response, 404, "not_found")
    _, no_assign = await signed_in_with(client, db, "users:write")
    assert_problem(await client.put(url, json={"roles": []}, headers=no_assign), 403, "permission_denied")
    assert (await client.get(f"/api/v1/users/{target['id']}", headers=headers)).json()["roles"] == ["user"]
    assert await _events(db, "user.roles.changed", target["id"]) == []


# --- self-service delete ----------------------------------------------------------------------------


async def test_delete_me_wrong_password_is_403_and_changes_nothing(
    client: AsyncClient, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    response = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": "not it at all"}, headers=headers
    )
    assert_problem(response, 403, "invalid_credentials")
    assert (await account(db, user["id"])).deleted_at is None
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    assert_problem(
        await client.request("DELETE", "/api/v1/users/me", json={}, headers=headers), 422, "validation_error"
    )


async def test_delete_me_ends_sessions_and_keeps_the_email_taken(
    client: AsyncClient, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    second = await login(client, user["email"])
    client.cookies.clear()
    response = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=headers
    )
    assert response.status_code == 204
    for h in (headers, {"Authorization": f"Bearer {second['access_token']}"}):
        assert_problem(await client.get("/api/v1/users/me", headers=h), 401, "token_invalid")
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert refresh.status_code == 401
    failed = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(failed, 401, "invalid_credentials")
    row = await account(db, user["id"])
    assert row.deleted_at is not None
    assert row.email == user["email"]
    again = await client.post("/api/v1/auth/register", json={"email": user["email"], "password": PASSWORD})
    assert_problem(again, 409, "email_taken")  # until the purge after the retention period
    assert (await _events(db, "user.deleted", user["id"]))[0].actor_id == user["id"]


async def test_delete_me_holds_no_write_lock_while_the_password_is_checked(
    live_client: AsyncClient, live_app: Any
) -> None:
    """Another account's change goes through while the hash runs (on SQLite it would otherwise wait
    for the write lock, and the hash for it: the request would never end)."""
    leaving, other = unique_email("leaving"), unique_email("staying")
    for email in (leaving, other):
        await live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    tokens = {email: (await login(live_client, email))["access_token"] for email in (leaving, other)}
    live_client.cookies.clear()
    passwords = live_app.state.passwords
    verify = passwords.verify

    async def verify_after_another_write(*args: Any, **kwargs: Any) -> Any:
        passwords.verify = verify
        response = await live_client.patch(
            "/api/v1/users/me", json={"full_name": "Meanwhile"}, headers=bearer(tokens[other])
        )
        assert response.status_code == 200, response.text
        return await verify(*args, **kwargs)

    passwords.verify = verify_after_another_write
    deleted = await asyncio.wait_for(
        live_client.request(
            "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=bearer(tokens[leaving])
        ),
        timeout=20,
    )
    assert deleted.status_code == 204


async def _walk(client: AsyncClient, headers: dict[str, str], query: str) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        url = f"/api/v1/users?limit=2&{query}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(url, headers=headers)
        assert response.status_code == 200, response.text
        seen += [u["id"] for u in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize(
    "query", ["role=user", "created_before=2999-01-01T00:00:00Z", "created_after=2000-01-01T00:00:00Z"]
)
async def test_filtered_lists_page_through_every_match_once(
    client: AsyncClient, db: AsyncSession, query: str
) -> None:
    _, headers = await admin(client, db)
    for _ in range(4):
        await register(client)
    seen = await _walk(client, headers, query)
    everyone = await _walk(client, headers, "")
    assert len(seen) == len(set(seen)) >= 5
    assert set(seen) <= set(everyone)
    if query != "role=user":
        assert seen == everyone  # the same newest-first order whichever index serves it


async def test_created_before_with_a_cursor_of_no_user_is_422(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    cursor = encode_cursor(uuid.uuid4())
    response = await client.get(
        f"/api/v1/users?created_before=2999-01-01T00:00:00Z&cursor={cursor}", headers=headers
    )
    assert_problem(response, 422, "validation_error")
