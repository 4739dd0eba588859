"""API keys (SPEC §7): issue, use, scope, revoke; on both engines."""

from __future__ import annotations

import hashlib
import re
import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.api_keys.models import ApiKey
from authgate.audit.models import AuditEvent
from authgate.db import utcnow
from authgate.sessions.service import ActivityStamps
from tests.factories import PASSWORD, assert_problem, signed_in
from tests.rbac import account, admin, issue_key, signed_in_with

KEY_RE = re.compile(r"^ag_([0-9a-f]{12})_([A-Za-z0-9_-]{43,})$")


def key_headers(raw: str) -> dict[str, str]:
    return {"X-API-Key": raw}


async def _key_row(db: AsyncSession, key_id: str) -> ApiKey:
    db.expire_all()
    row = await db.get(ApiKey, uuid.UUID(key_id))
    assert row is not None
    return row


async def test_create_shows_key_once_and_stores_only_a_hash(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    created = await issue_key(client, headers, name="ci")
    assert set(created) == {
        "id",
        "name",
        "prefix",
        "scopes",
        "workspace_id",
        "expires_at",
        "created_at",
        "last_used_at",
        "key",
    }
    match = KEY_RE.match(created["key"])
    assert match is not None
    assert match.group(1) == created["prefix"]
    assert created["scopes"] == []
    assert created["last_used_at"] is None
    row = await _key_row(db, created["id"])
    assert row.secret_hash == hashlib.sha256(match.group(2).encode()).hexdigest()
    assert created["key"] not in str(row.__dict__)
    listed = await client.get("/api/v1/api-keys", headers=headers)
    assert listed.status_code == 200
    assert listed.json()["next_cursor"] is None
    assert [k["id"] for k in listed.json()["items"]] == [created["id"]]
    assert "key" not in listed.json()["items"][0]
    assert created["key"] not in listed.text
    event = await db.scalar(select(AuditEvent).where(AuditEvent.action == "api_key.created"))
    assert event is not None
    assert event.target_id == created["id"]


@pytest.mark.parametrize("style", ["x-api-key", "bearer"])
async def test_key_authenticates_as_owner(client: AsyncClient, style: str) -> None:
    user, headers = await signed_in(client)
    raw = (await issue_key(client, headers))["key"]
    auth = key_headers(raw) if style == "x-api-key" else {"Authorization": f"Bearer {raw}"}
    response = await client.get("/api/v1/users/me", headers=auth)
    assert response.status_code == 200
    assert response.json()["id"] == user["id"]


async def test_key_without_scopes_has_self_service_only(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    raw = (await issue_key(client, headers))["key"]
    assert (await client.get("/api/v1/users/me/profile", headers=key_headers(raw))).status_code == 200
    assert_problem(await client.get("/api/v1/users", headers=key_headers(raw)), 403, "permission_denied")


async def test_scoped_key_gets_only_its_scopes(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    raw = (await issue_key(client, headers, scopes=["users:read"]))["key"]
    assert (await client.get("/api/v1/users", headers=key_headers(raw))).status_code == 200
    response = await client.post("/api/v1/users", json={"email": "x@example.com"}, headers=key_headers(raw))
    assert_problem(response, 403, "permission_denied")


async def test_scopes_are_intersected_with_the_owners_current_permissions(
    client: AsyncClient, db: AsyncSession
) -> None:
    user, headers = await signed_in_with(client, db, "users:read")
    raw = (await issue_key(client, headers, scopes=["users:read"]))["key"]
    assert (await client.get("/api/v1/users", headers=key_headers(raw))).status_code == 200
    owner = await account(db, user["id"])
    await db.refresh(owner, ["roles"])
    owner.roles = []
    await db.commit()
    assert_problem(await client.get("/api/v1/users", headers=key_headers(raw)), 403, "permission_denied")


async def test_scopes_wider_than_the_owner_are_403_and_nothing_is_created(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await signed_in_with(client, db, "users:read")
    response = await client.post(
        "/api/v1/api-keys", json={"name": "k", "scopes": ["users:read", "users:write"]}, headers=headers
    )
    assert_problem(response, 403, "permission_denied")
    assert await db.scalar(select(func.count()).select_from(ApiKey)) == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "scopes": ["no:such"]},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "k", "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "k", "expires_at": "2099-01-01T00:00:00"},
        {"name": "k", "expires_at": "9999-12-31T23:59:59-14:00"},  # past year 9999 in UTC
        {"name": "k", "expires_at": "0001-01-01T00:00:00+14:00"},  # before year 1 in UTC
        {"name": "k", "secret": "mine"},
        {"name": "k", "workspace_id": "not-a-uuid"},
    ],
)
async def test_bad_create_bodies_are_422(
    client: AsyncClient, db: AsyncSession, body: dict[str, object]
) -> None:
    _, headers = await signed_in(client)
    assert_problem(await client.post("/api/v1/api-keys", json=body, headers=headers), 422, "validation_error")
    assert await db.scalar(select(func.count()).select_from(ApiKey)) == 0


async def test_workspace_binding_and_expiry_are_kept(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    workspace = await client.post("/api/v1/workspaces", json={"name": "Keys Inc"}, headers=headers)
    ws = workspace.json()["id"]
    offset = await issue_key(client, headers, expires_at="2099-01-01T05:00:00+05:00")
    assert offset["expires_at"] in ("2099-01-01T00:00:00Z", "2099-01-01T00:00:00+00:00")  # answered in UTC
    created = await issue_key(client, headers, workspace_id=ws, expires_at="2099-01-01T00:00:00Z")
    assert created["workspace_id"] == ws
    assert created["expires_at"].startswith("2099-01-01T00:00:00")
    bound = {"X-API-Key": created["key"]}
    assert (await client.get(f"/api/v1/workspaces/{ws}", headers=bound)).status_code == 200
    other = (await client.post("/api/v1/workspaces", json={"name": "Other"}, headers=headers)).json()["id"]
    assert_problem(await client.get(f"/api/v1/workspaces/{other}", headers=bound), 404, "not_found")


async def test_binding_to_a_workspace_you_are_not_in_is_refused(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, owner = await signed_in(client)
    foreign = (await client.post("/api/v1/workspaces", json={"name": "Not yours"}, headers=owner)).json()[
        "id"
    ]
    _, headers = await signed_in(client)
    for ws in (foreign, str(uuid.uuid4())):
        response = await client.post(
            "/api/v1/api-keys", json={"name": "k", "workspace_id": ws}, headers=headers
        )
        assert_problem(response, 422, "validation_error")
    assert await db.scalar(select(func.count()).select_from(ApiKey)) == 0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/api-keys", {"name": "child"}),
        ("DELETE", "/api/v1/users/me", {"password": PASSWORD}),
        ("DELETE", "/api/v1/auth/sessions/{session}", None),  # the owner's own, live session
        ("GET", "/api/v1/auth/sessions", None),
    ],
)
async def test_a_key_cannot_manage_keys_account_or_sessions(
    client: AsyncClient, db: AsyncSession, method: str, path: str, body: dict[str, str] | None
) -> None:
    user, headers = await admin(client, db)
    raw = (await issue_key(client, headers, scopes=["users:read"]))["key"]
    sessions = (await client.get("/api/v1/auth/sessions", headers=headers)).json()["items"]
    assert len(sessions) == 1
    path = path.format(session=sessions[0]["id"])
    response = await client.request(method, path, json=body, headers=key_headers(raw))
    assert_problem(response, 403, "permission_denied")
    assert await db.scalar(select(func.count()).select_from(ApiKey)) == 1
    # Nothing was done on the owner's behalf: the account stands and its session still works.
    row = await account(db, user["id"])
    assert row.is_active is True and row.deleted_at is None
    after = (await client.get("/api/v1/auth/sessions", headers=headers)).json()["items"]
    assert [s["id"] for s in after] == [sessions[0]["id"]]
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/users/me", headers=key_headers(raw))).status_code == 200


async def test_revoked_key_stops_at_once_and_others_keys_are_404(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await signed_in(client)
    _, other_headers = await signed_in(client)
    created = await issue_key(client, headers)
    assert_problem(
        await client.delete(f"/api/v1/api-keys/{created['id']}", headers=other_headers), 404, "not_found"
    )
    assert_problem(await client.delete(f"/api/v1/api-keys/{uuid.uuid4()}", headers=headers), 404, "not_found")
    assert (await client.delete(f"/api/v1/api-keys/{created['id']}", headers=headers)).status_code == 204
    assert_problem(
        await client.get("/api/v1/users/me", headers=key_headers(created["key"])), 401, "token_invalid"
    )
    assert (await client.get("/api/v1/api-keys", headers=headers)).json()["items"] == []
    assert_problem(
        await client.delete(f"/api/v1/api-keys/{created['id']}", headers=headers), 404, "not_found"
    )
    event = await db.scalar(select(AuditEvent).where(AuditEvent.action == "api_key.revoked"))
    assert event is not None
    assert event.target_id == created["id"]


async def test_expired_key_is_401(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    created = await issue_key(client, headers)
    row = await _key_row(db, created["id"])
    row.expires_at = utcnow() - timedelta(seconds=1)
    await db.commit()
    assert_problem(
        await client.get("/api/v1/users/me", headers=key_headers(created["key"])), 401, "token_expired"
    )


@pytest.mark.parametrize("change", ["deactivate", "delete"])
async def test_key_of_deactivated_or_deleted_owner_is_401(
    client: AsyncClient, db: AsyncSession, change: str
) -> None:
    user, headers = await signed_in(client)
    raw = (await issue_key(client, headers))["key"]
    owner = await account(db, user["id"])
    if change == "deactivate":
        owner.is_active = False
    else:
        owner.deleted_at = utcnow()
    await db.commit()
    assert_problem(await client.get("/api/v1/users/me", headers=key_headers(raw)), 401, "token_invalid")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda raw: raw[:-2] + ("AA" if not raw.endswith("AA") else "BB"),  # right prefix, wrong secret
        lambda raw: "ag_000000000000_" + raw.split("_", 2)[2],  # unknown prefix
        lambda raw: "ag_nounderscore",
        lambda raw: "ag_" + "a" * 300,
    ],
)
async def test_wrong_or_malformed_keys_are_401(client: AsyncClient, mangle: object) -> None:
    _, headers = await signed_in(client)
    raw = (await issue_key(client, headers))["key"]
    assert callable(mangle)
    assert_problem(
        await client.get("/api/v1/users/me", headers=key_headers(mangle(raw))), 401, "token_invalid"
    )


async def test_last_used_at_is_written_at_most_once_a_minute(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await signed_in(client)
    created = await issue_key(client, headers)
    await client.get("/api/v1/users/me", headers=key_headers(created["key"]))
    first = (await _key_row(db, created["id"])).last_used_at
    assert first is not None
    await client.get("/api/v1/users/me", headers=key_headers(created["key"]))
    assert (await _key_row(db, created["id"])).last_used_at == first
    row = await _key_row(db, created["id"])
    row.last_used_at = first - timedelta(minutes=2)
    await db.commit()
    app.state.stamps = ActivityStamps()  # and the process's own memory of the stamp, two minutes on
    await client.get("/api/v1/users/me", headers=key_headers(created["key"]))
    assert (await _key_row(db, created["id"])).last_used_at > first - timedelta(seconds=1)


async def test_list_pages_and_hides_other_users_keys(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    _, other = await signed_in(client)
    ids = [(await issue_key(client, headers, name=f"k{i}"))["id"] for i in range(3)]
    await issue_key(client, other)
    first = (await client.get("/api/v1/api-keys?limit=2", headers=headers)).json()
    second = (
        await client.get(f"/api/v1/api-keys?limit=2&cursor={first['next_cursor']}", headers=headers)
    ).json()
    assert [k["id"] for k in first["items"] + second["items"]] == ids[::-1]
    assert second["next_cursor"] is None


async def test_api_keys_need_authentication(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/api-keys"), 401, "not_authenticated")
    assert_problem(await client.post("/api/v1/api-keys", json={"name": "k"}), 401, "not_authenticated")


async def test_a_key_signs_its_owner_out_everywhere_and_keeps_working(client: AsyncClient) -> None:
    """SPEC §4: logout-all takes any authentication; a key has no session of its own."""
    user, headers = await signed_in(client)
    raw = (await issue_key(client, headers))["key"]
    assert (await client.post("/api/v1/auth/logout", headers=key_headers(raw))).status_code == 204
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200  # untouched
    response = await client.post("/api/v1/auth/logout-all", headers=key_headers(raw))
    assert response.status_code == 204
    assert_problem(await client.get("/api/v1/users/me", headers=headers), 401, "session_revoked")
    me = await client.get("/api/v1/users/me", headers=key_headers(raw))
    assert me.status_code == 200
    assert me.json()["id"] == user["id"]
