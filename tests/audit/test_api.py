"""The audit log over HTTP (SPEC §9), on both engines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from tests.factories import PASSWORD, assert_problem, grant_role, login, signed_in

FIELDS = {
    "id",
    "occurred_at",
    "actor_type",
    "actor_id",
    "action",
    "target_type",
    "target_id",
    "ip",
    "user_agent",
    "request_id",
    "data",
    "hash",
}


async def test_audit_events_need_audit_read(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    assert_problem(await client.get("/api/v1/audit-events", headers=headers), 403, "permission_denied")
    assert_problem(await client.get("/api/v1/audit-events"), 401, "not_authenticated")


async def test_auditor_lists_events_with_every_field(client: AsyncClient, db: AsyncSession) -> None:
    admin, headers = await signed_in(client)
    await grant_role(db, admin["id"])
    response = await client.get("/api/v1/audit-events", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "next_cursor"}
    items = body["items"]
    assert items
    assert all(set(item) == FIELDS for item in items)
    mine = [i for i in items if i["action"] == "auth.login.succeeded" and i["actor_id"] == admin["id"]]
    assert mine
    assert mine[0]["ip"] == "203.0.113.7"
    assert len(mine[0]["hash"]) == 64


async def test_audit_filters(client: AsyncClient, db: AsyncSession) -> None:
    admin, headers = await signed_in(client)
    await grant_role(db, admin["id"])
    other, _ = await signed_in(client)
    await client.post("/api/v1/auth/login", json={"email": other["email"], "password": "wrong password"})

    by_action = await client.get(
        "/api/v1/audit-events", params={"action": "auth.login.failed"}, headers=headers
    )
    assert {i["action"] for i in by_action.json()["items"]} == {"auth.login.failed"}
    by_actor = await client.get("/api/v1/audit-events", params={"actor_id": other["id"]}, headers=headers)
    assert by_actor.json()["items"]
    assert {i["actor_id"] for i in by_actor.json()["items"]} == {other["id"]}
    by_target = await client.get("/api/v1/audit-events", params={"target_id": other["id"]}, headers=headers)
    assert {i["target_id"] for i in by_target.json()["items"]} == {other["id"]}

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await client.get("/api/v1/audit-events", params={"since": future}, headers=headers)).json()[
        "items"
    ] == []
    assert (await client.get("/api/v1/audit-events", params={"until": past}, headers=headers)).json()[
        "items"
    ] == []
    window = await client.get(
        "/api/v1/audit-events", params={"since": past, "until": future}, headers=headers
    )
    total = await db.scalar(select(func.count()).select_from(AuditEvent))
    assert len(window.json()["items"]) == min(total or 0, 50)
    # Without an offset a time is UTC; a date alone is its midnight.
    naive_future = (datetime.now(UTC) + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    for params in ({"since": naive_future}, {"since": tomorrow}):
        response = await client.get("/api/v1/audit-events", params=params, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["items"] == []
    until_naive = await client.get("/api/v1/audit-events", params={"until": naive_future}, headers=headers)
    assert len(until_naive.json()["items"]) == min(total or 0, 50)


async def test_audit_pages_with_cursor(client: AsyncClient, db: AsyncSession) -> None:
    admin, headers = await signed_in(client)
    await grant_role(db, admin["id"])
    for _ in range(3):
        await client.post("/api/v1/auth/login", json={"email": admin["email"], "password": PASSWORD})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2, "actor_id": admin["id"]}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/v1/audit-events", params=params, headers=headers)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) >= 4
    assert seen == sorted(seen, reverse=True)  # newest first (time-ordered ids)


async def test_audit_bad_filters_are_422(client: AsyncClient, db: AsyncSession) -> None:
    admin, headers = await signed_in(client)
    await grant_role(db, admin["id"])
    for params in (
        {"since": "yesterday"},
        {"since": "2026-13-01"},
        {"until": "9999-12-31T23:59:59-14:00"},  # past year 9999 once in UTC
        {"since": "0001-01-01T00:00:00+14:00"},
        {"limit": 0},
        {"cursor": "!!"},
        {"action": "x" * 65},
        {"actor_id": "nope"},
        {"target_id": "not-a-uuid"},
    ):
        assert_problem(
            await client.get("/api/v1/audit-events", params=params, headers=headers), 422, "validation_error"
        )


async def test_security_events_show_only_own(client: AsyncClient) -> None:
    alice, alice_headers = await signed_in(client)
    bob, _ = await signed_in(client)
    await client.post("/api/v1/auth/login", json={"email": alice["email"], "password": "wrong password"})
    await client.post("/api/v1/auth/login", json={"email": bob["email"], "password": "wrong password"})
    response = await client.get("/api/v1/users/me/security-events", headers=alice_headers)
    assert response.status_code == 200
    items = response.json()["items"]
    actions = [i["action"] for i in items]
    assert "auth.login.failed" in actions
    assert "auth.login.succeeded" in actions
    assert all(i["actor_id"] == alice["id"] or i["target_id"] == alice["id"] for i in items)
    assert all(set(i) == FIELDS for i in items)


async def test_security_events_need_sign_in(client: AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/users/me/security-events"), 401, "not_authenticated")


async def test_what_an_api_key_does_is_on_record_as_the_key(client: AsyncClient, db: AsyncSession) -> None:
    """The key, not its owner, is the actor (the owner is one lookup away); a session's acts name the user."""
    from tests.factories import register
    from tests.rbac import issue_key

    admin, headers = await signed_in(client)
    await grant_role(db, admin["id"])
    key = await issue_key(client, headers, scopes=["users:write", "roles:manage"])
    by_key = {"X-API-Key": key["key"]}
    target = await register(client)

    async def last(action: str) -> AuditEvent:
        db.expire_all()
        stmt = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq.desc()).limit(1)
        event = await db.scalar(stmt)
        assert event is not None
        return event

    assert (
        await client.patch(f"/api/v1/users/{target['id']}", json={"full_name": "K"}, headers=by_key)
    ).status_code == 200
    assert ((await last("user.updated")).actor_type, (await last("user.updated")).actor_id) == (
        "api_key",
        key["id"],
    )
    assert (await client.post("/api/v1/roles", json={"name": "by-key"}, headers=by_key)).status_code == 201
    created = await last("role.created")
    assert (created.actor_type, created.actor_id) == ("api_key", key["id"])
    assert (
        await client.patch("/api/v1/users/me", json={"full_name": "Me"}, headers=by_key)
    ).status_code == 200
    mine = await last("user.updated")
    assert (mine.actor_type, mine.actor_id, mine.target_id) == ("api_key", key["id"], admin["id"])
    assert (
        await client.patch("/api/v1/users/me", json={"full_name": "Me 2"}, headers=headers)
    ).status_code == 200
    again = await last("user.updated")
    assert (again.actor_type, again.actor_id) == ("user", admin["id"])
    # Signing out with a key (it has no session of its own): on record as the key, about the account,
    # and among the owner's security events.
    assert (await client.post("/api/v1/auth/logout", headers=by_key)).status_code == 204
    out = await last("auth.logout")
    assert (out.actor_type, out.actor_id, out.target_type, out.target_id) == (
        "api_key",
        key["id"],
        "user",
        admin["id"],
    )
    assert (await client.post("/api/v1/auth/logout-all", headers=by_key)).status_code == 204
    assert ((await last("auth.logout")).actor_type, (await last("auth.logout")).data["all_sessions"]) == (
        "api_key",
        True,
    )
    _, other_headers = await signed_in(client)
    fresh = {"Authorization": f"Bearer {(await login(client, admin['email']))['access_token']}"}
    mine = (await client.get("/api/v1/users/me/security-events?limit=200", headers=fresh)).json()["items"]
    by_the_key = [e for e in mine if e["actor_id"] == key["id"]]
    assert [e["action"] for e in by_the_key] == ["auth.logout", "auth.logout"]
    theirs = (await client.get("/api/v1/users/me/security-events?limit=200", headers=other_headers)).json()[
        "items"
    ]
    assert all(e["actor_id"] != key["id"] for e in theirs)
