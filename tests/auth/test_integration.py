"""Introspection (RFC 7662) and forward-auth for the services behind authgate."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.roles.models import Role
from authgate.users.models import User
from tests.factories import assert_problem, bearer, login, register, signed_in
from tests.rbac import admin, issue_key, signed_in_with


async def _introspector(client: AsyncClient, db: AsyncSession) -> dict[str, str]:
    """A signed-in user given the admin role (which holds `tokens:introspect`)."""
    user = await register(client)
    account = await db.scalar(select(User).where(User.email == user["email"]))
    admin = await db.scalar(select(Role).where(Role.name == "admin"))
    assert account is not None and admin is not None
    await db.refresh(account, ["roles"])
    account.roles.append(admin)
    await db.commit()
    tokens = await login(client, user["email"])
    client.cookies.clear()
    return bearer(tokens["access_token"])


async def test_introspect_active_token(client: AsyncClient, db: AsyncSession) -> None:
    caller = await _introspector(client, db)
    subject, _ = await signed_in(client)
    tokens = await login(client, subject["email"])
    client.cookies.clear()
    response = await client.post(
        "/api/v1/auth/introspect", data={"token": tokens["access_token"]}, headers=caller
    )
    assert response.status_code == 200
    body = response.json()
    assert body["active"] is True and body["sub"] == subject["id"] and body["roles"] == ["user"]
    assert body["iss"] == "http://test" and body["aud"] == "authgate" and body["exp"] > body["iat"]


async def test_introspect_scope_is_the_permissions_held_now(client: AsyncClient, db: AsyncSession) -> None:
    """A revoked role takes effect on the next request (SPEC §12), introspection's `scope` included."""
    caller = await _introspector(client, db)
    subject = await register(client)
    reader = Role(name=f"reader-{uuid.uuid4().hex[:8]}", permissions=["users:read"])
    account = await db.scalar(select(User).where(User.email == subject["email"]))
    assert account is not None
    await db.refresh(account, ["roles"])
    account.roles.append(reader)
    await db.commit()
    tokens = await login(client, subject["email"])
    client.cookies.clear()

    async def introspected() -> dict[str, object]:
        response = await client.post(
            "/api/v1/auth/introspect", data={"token": tokens["access_token"]}, headers=caller
        )
        assert response.status_code == 200
        return dict(response.json())

    before = await introspected()
    assert "users:read" in str(before["scope"]).split() and reader.name in before["roles"]  # type: ignore[operator]
    await db.refresh(account, ["roles"])
    account.roles.remove(reader)
    await db.commit()
    after = await introspected()
    assert after["active"] is True and after["roles"] == ["user"]
    assert "users:read" not in str(after["scope"]).split()


async def test_introspect_inactive_tokens(client: AsyncClient, db: AsyncSession) -> None:
    caller = await _introspector(client, db)
    subject = await register(client)
    tokens = await login(client, subject["email"])
    client.cookies.clear()
    await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    for token in (tokens["access_token"], "garbage", tokens["refresh_token"]):
        response = await client.post("/api/v1/auth/introspect", data={"token": token}, headers=caller)
        assert response.status_code == 200 and response.json() == {"active": False}


async def test_introspect_needs_the_permission(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    response = await client.post("/api/v1/auth/introspect", data={"token": "x"}, headers=headers)
    assert_problem(response, 403, "permission_denied")
    assert_problem(
        await client.post("/api/v1/auth/introspect", data={"token": "x"}), 401, "not_authenticated"
    )


async def test_introspect_without_token_is_422(client: AsyncClient, db: AsyncSession) -> None:
    caller = await _introspector(client, db)
    assert_problem(
        await client.post("/api/v1/auth/introspect", data={}, headers=caller), 422, "validation_error"
    )


async def test_forward_auth_headers(client: AsyncClient, app: FastAPI) -> None:
    user, headers = await signed_in(client)
    response = await client.get("/api/v1/auth/verify", headers=headers)
    assert response.status_code == 200
    assert response.headers["x-auth-user-id"] == user["id"]
    assert response.headers["x-auth-email"] == user["email"]
    assert response.headers["x-auth-roles"] == "user"
    assert_problem(await client.get("/api/v1/auth/verify"), 401, "not_authenticated")
    assert_problem(await client.get("/api/v1/auth/verify", headers=bearer("nope")), 401, "token_invalid")


async def test_forward_auth_carries_an_internationalised_address(client: AsyncClient) -> None:
    """Header values are bytes: non-ASCII characters (and `%`) are percent-encoded UTF-8."""
    for email in (
        f"пользователь-{uuid.uuid4().hex[:6]}@example.com",
        f"j%C3rgen+{uuid.uuid4().hex[:6]}@example.com",
    ):
        user, headers = await signed_in(client, email=email)
        response = await client.get("/api/v1/auth/verify", headers=headers)
        assert response.status_code == 200
        sent = response.headers.raw  # as on the wire
        value = next(v for k, v in sent if k.lower() == b"x-auth-email").decode("ascii")
        assert unquote(value) == user["email"] and value != user["email"]
        assert response.json()["email"] == user["email"]


async def test_forward_auth_answers_401_for_a_deactivated_account(
    client: AsyncClient, db: AsyncSession
) -> None:
    """SPEC §9: 200 with the headers, else 401 (a proxy turns any 403 into a 403 page of its own)."""
    user, headers = await signed_in(client)
    await db.execute(update(User).where(User.id == uuid.UUID(user["id"])).values(is_active=False))
    await db.commit()
    response = await client.get("/api/v1/auth/verify", headers=headers)
    assert_problem(response, 401, "account_disabled")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert "x-auth-user-id" not in response.headers
    # Everywhere else a deactivated account stays 403 `account_disabled`.
    assert_problem(await client.get("/api/v1/users/me", headers=headers), 403, "account_disabled")


async def _subject_token(client: AsyncClient) -> tuple[dict[str, Any], str]:
    subject = await register(client)
    tokens = await login(client, subject["email"])
    client.cookies.clear()
    return subject, tokens["access_token"]


async def test_introspect_with_an_api_key_in_either_header(client: AsyncClient, db: AsyncSession) -> None:
    """SPEC §12: the caller's key in `X-API-Key` or as a bearer, when it carries `tokens:introspect`."""
    owner, owner_headers = await admin(client, db)
    key = (await issue_key(client, owner_headers, scopes=["tokens:introspect"]))["key"]
    assert key.startswith("ag_")
    subject, token = await _subject_token(client)
    for key_header in ({"X-API-Key": key}, bearer(key)):
        response = await client.post("/api/v1/auth/introspect", data={"token": token}, headers=key_header)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["active"] is True and body["sub"] == subject["id"] and body["roles"] == ["user"]
        assert body["sub"] != owner["id"]
    # A token the key cannot vouch for is still just inactive.
    garbage = await client.post(
        "/api/v1/auth/introspect", data={"token": "garbage"}, headers={"X-API-Key": key}
    )
    assert garbage.status_code == 200 and garbage.json() == {"active": False}


async def test_introspect_with_a_key_lacking_the_permission_is_403(
    client: AsyncClient, db: AsyncSession
) -> None:
    """The owner may introspect, but a key scoped without `tokens:introspect` may not."""
    _, owner_headers = await admin(client, db)
    assert (
        await client.post("/api/v1/auth/introspect", data={"token": "x"}, headers=owner_headers)
    ).status_code == 200
    scoped = (await issue_key(client, owner_headers, scopes=["users:read"]))["key"]
    unscoped = (await issue_key(client, owner_headers))["key"]
    _, token = await _subject_token(client)
    for key in (scoped, unscoped):
        for key_header in ({"X-API-Key": key}, bearer(key)):
            response = await client.post("/api/v1/auth/introspect", data={"token": token}, headers=key_header)
            assert_problem(response, 403, "permission_denied")


async def test_introspect_key_loses_the_permission_with_its_owner(
    client: AsyncClient, db: AsyncSession
) -> None:
    """A key acts with the intersection of its scopes and the owner's current permissions (SPEC §7)."""
    owner, owner_headers = await signed_in_with(client, db, "tokens:introspect")
    key = (await issue_key(client, owner_headers, scopes=["tokens:introspect"]))["key"]
    _, token = await _subject_token(client)
    allowed = await client.post("/api/v1/auth/introspect", data={"token": token}, headers={"X-API-Key": key})
    assert allowed.status_code == 200 and allowed.json()["active"] is True
    account = await db.scalar(select(User).where(User.id == uuid.UUID(owner["id"])))
    assert account is not None
    await db.refresh(account, ["roles"])
    account.roles[:] = [r for r in account.roles if "tokens:introspect" not in r.permissions]
    await db.commit()
    refused = await client.post("/api/v1/auth/introspect", data={"token": token}, headers={"X-API-Key": key})
    assert_problem(refused, 403, "permission_denied")
