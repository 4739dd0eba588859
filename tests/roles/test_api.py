"""Permissions and roles (SPEC §7) over HTTP, on both engines."""

from __future__ import annotations

import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.roles.models import Role
from authgate.roles.permissions import PERMISSIONS
from tests.factories import assert_problem, signed_in
from tests.rbac import admin, grant, signed_in_with


async def _role_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(Role)) or 0)


async def test_permissions_catalogue_is_a_page_for_any_user(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    response = await client.get("/api/v1/permissions", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["next_cursor"] is None
    assert {p["name"] for p in body["items"]} == set(PERMISSIONS)
    assert all(set(p) == {"name", "description"} and p["description"] for p in body["items"])
    assert_problem(await client.get("/api/v1/permissions"), 401, "not_authenticated")


async def test_permissions_page_through_in_name_order(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "3", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/permissions", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert 1 <= len(page["items"]) <= 3
        seen += [p["name"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(PERMISSIONS)
    whole = await client.get("/api/v1/permissions", params={"limit": "200"}, headers=headers)
    assert [p["name"] for p in whole.json()["items"]] == seen and whole.json()["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "x"},
        {"cursor": "%%%"},
        {"cursor": "_w"},
        {"cursor": "x" * 257},
    ],
)
async def test_permissions_reject_a_bad_limit_or_cursor(client: AsyncClient, params: dict[str, str]) -> None:
    _, headers = await signed_in(client)
    assert_problem(
        await client.get("/api/v1/permissions", params=params, headers=headers), 422, "validation_error"
    )


async def test_list_and_read_roles_need_roles_read(client: AsyncClient, db: AsyncSession) -> None:
    _, user_headers = await signed_in(client)
    _, reader = await signed_in_with(client, db, "roles:read")
    assert_problem(await client.get("/api/v1/roles", headers=user_headers), 403, "permission_denied")
    assert_problem(await client.get("/api/v1/roles/admin", headers=user_headers), 403, "permission_denied")
    listed = await client.get("/api/v1/roles", headers=reader)
    assert listed.status_code == 200
    by_name = {r["name"]: r for r in listed.json()["items"]}
    assert by_name["admin"]["builtin"] is True
    assert set(by_name["admin"]["permissions"]) == set(PERMISSIONS)
    assert by_name["user"] == {
        "name": "user",
        "description": by_name["user"]["description"],
        "permissions": [],
        "builtin": True,
    }
    assert (await client.get("/api/v1/roles/user", headers=reader)).json()["name"] == "user"
    assert_problem(await client.get("/api/v1/roles/nope", headers=reader), 404, "not_found")


async def test_create_role(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    body = {"name": "support", "description": "Helpdesk", "permissions": ["users:read", "audit:read"]}
    response = await client.post("/api/v1/roles", json=body, headers=headers)
    assert response.status_code == 201
    assert response.json() == {
        "name": "support",
        "description": "Helpdesk",
        "permissions": ["audit:read", "users:read"],
        "builtin": False,
    }
    event = await db.scalar(select(AuditEvent).where(AuditEvent.action == "role.created"))
    assert event is not None
    assert event.data["name"] == "support"
    duplicate = await client.post("/api/v1/roles", json={"name": "support"}, headers=headers)
    assert_problem(duplicate, 409, "conflict")


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "permissions": []},
        {"name": "Bad Name"},
        {"name": "ok-name", "permissions": ["users:fly"]},
        {"name": "ok-name", "description": "d" * 201},
        {"name": "ok-name", "builtin": True},
        {"name": "ok-name", "permissions": "users:read"},
    ],
)
async def test_bad_role_bodies_are_422_and_create_nothing(
    client: AsyncClient, db: AsyncSession, body: dict[str, object]
) -> None:
    _, headers = await admin(client, db)
    before = await _role_count(db)
    assert_problem(await client.post("/api/v1/roles", json=body, headers=headers), 422, "validation_error")
    assert await _role_count(db) == before


async def test_nobody_grants_a_permission_they_do_not_hold(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in_with(client, db, "roles:manage", "users:read")
    before = await _role_count(db)
    response = await client.post(
        "/api/v1/roles",
        json={"name": "sneaky", "permissions": ["users:read", "users:delete"]},
        headers=headers,
    )
    assert_problem(response, 403, "permission_denied")
    assert await _role_count(db) == before
    ok = await client.post(
        "/api/v1/roles", json={"name": "reader", "permissions": ["users:read"]}, headers=headers
    )
    assert ok.status_code == 201
    widen = await client.patch("/api/v1/roles/reader", json={"permissions": ["users:write"]}, headers=headers)
    assert_problem(widen, 403, "permission_denied")
    db.expire_all()
    assert (await db.scalar(select(Role).where(Role.name == "reader"))).permissions == ["users:read"]  # type: ignore[union-attr]


async def test_create_needs_roles_manage(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in_with(client, db, "roles:read")
    assert_problem(
        await client.post("/api/v1/roles", json={"name": "r1"}, headers=headers), 403, "permission_denied"
    )


async def test_update_role_takes_effect_on_holders_next_request(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await admin(client, db)
    await client.post("/api/v1/roles", json={"name": "viewer"}, headers=headers)
    holder, holder_headers = await signed_in(client)
    await grant(db, holder["id"], "viewer")
    assert_problem(await client.get("/api/v1/users", headers=holder_headers), 403, "permission_denied")
    response = await client.patch(
        "/api/v1/roles/viewer",
        json={"permissions": ["users:read"], "description": "Sees users"},
        headers=headers,
    )
    assert response.status_code == 200
    assert response.json()["permissions"] == ["users:read"]
    assert response.json()["description"] == "Sees users"
    assert (await client.get("/api/v1/users", headers=holder_headers)).status_code == 200
    assert await db.scalar(select(AuditEvent).where(AuditEvent.action == "role.updated")) is not None
    for body in ({"permissions": ["nope:nope"]}, {"permissions": None}, {"description": None}):
        bad = await client.patch("/api/v1/roles/viewer", json=body, headers=headers)
        assert_problem(bad, 422, "validation_error")
    kept = (await client.get("/api/v1/roles/viewer", headers=headers)).json()
    assert (kept["permissions"], kept["description"]) == (["users:read"], "Sees users")
    assert_problem(await client.patch("/api/v1/roles/ghost", json={}, headers=headers), 404, "not_found")


async def test_builtin_roles_keep_permissions_and_cannot_be_deleted(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, headers = await admin(client, db)
    changed = await client.patch("/api/v1/roles/user", json={"permissions": ["users:read"]}, headers=headers)
    assert_problem(changed, 409, "conflict")
    described = await client.patch("/api/v1/roles/user", json={"description": "Everyone"}, headers=headers)
    assert described.status_code == 200
    assert described.json()["permissions"] == []
    holder, holder_headers = await signed_in(client)
    before = {
        name: (await client.get(f"/api/v1/roles/{name}", headers=headers)).json()
        for name in ("admin", "user")
    }
    for name in ("admin", "user"):
        assert_problem(await client.delete(f"/api/v1/roles/{name}", headers=headers), 409, "conflict")
        assert_problem(
            await client.delete(f"/api/v1/roles/{name}?force=true", headers=headers), 409, "conflict"
        )
    # Both roles survive as they were, and so do their assignments (with what they grant).
    for name, role in before.items():
        assert (await client.get(f"/api/v1/roles/{name}", headers=headers)).json() == role
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["roles"] == ["admin", "user"]
    assert (await client.get("/api/v1/users/me", headers=holder_headers)).json()["roles"] == ["user"]
    assert (await client.get(f"/api/v1/users/{holder['id']}", headers=headers)).status_code == 200
    assert await db.scalar(select(AuditEvent).where(AuditEvent.action == "role.deleted")) is None


async def test_delete_role_in_use_needs_force(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    await client.post(
        "/api/v1/roles", json={"name": "auditor", "permissions": ["audit:read"]}, headers=headers
    )
    await client.post("/api/v1/roles", json={"name": "unused"}, headers=headers)
    holder, holder_headers = await signed_in(client)
    await grant(db, holder["id"], "auditor")
    assert (await client.delete("/api/v1/roles/unused", headers=headers)).status_code == 204
    assert_problem(await client.delete("/api/v1/roles/auditor", headers=headers), 409, "conflict")
    assert (await client.get("/api/v1/users/me", headers=holder_headers)).json()["roles"] == [
        "auditor",
        "user",
    ]
    assert (await client.delete("/api/v1/roles/auditor?force=true", headers=headers)).status_code == 204
    assert (await client.get("/api/v1/users/me", headers=holder_headers)).json()["roles"] == ["user"]
    assert_problem(await client.get("/api/v1/roles/auditor", headers=headers), 404, "not_found")
    assert_problem(await client.delete("/api/v1/roles/auditor", headers=headers), 404, "not_found")
    events = (await db.scalars(select(AuditEvent).where(AuditEvent.action == "role.deleted"))).all()
    assert sorted(e.data["name"] for e in events) == ["auditor", "unused"]


async def test_roles_list_pages(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await admin(client, db)
    for i in range(3):
        await client.post("/api/v1/roles", json={"name": f"page-{i}"}, headers=headers)
    first = (await client.get("/api/v1/roles?limit=2", headers=headers)).json()
    rest = (
        await client.get(f"/api/v1/roles?limit=200&cursor={first['next_cursor']}", headers=headers)
    ).json()
    names = [r["name"] for r in first["items"] + rest["items"]]
    assert len(names) == len(set(names)) == await _role_count(db)
