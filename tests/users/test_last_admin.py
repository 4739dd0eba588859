"""The service always keeps one active administrator: the last one cannot be deactivated,
deleted or demoted (409 `last_admin`), through the API or the console; on both engines."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from authgate.roles.models import Role, user_role
from authgate.users.models import User
from tests.factories import PASSWORD, assert_problem, bearer, login, register, unique_email
from tests.rbac import account, admin, grant
from tests.ui.conftest import post_form, ui_sign_in


async def _admin_ids(db: AsyncSession) -> list[uuid.UUID]:
    stmt = select(user_role.c.user_id).join(Role, Role.id == user_role.c.role_id).where(Role.name == "admin")
    return list((await db.scalars(stmt)).all())


async def only_admin(client: AsyncClient, db: AsyncSession) -> tuple[dict[str, Any], dict[str, str]]:
    """A new admin, made the only active one (inside the test's transaction)."""
    user, headers = await admin(client, db)
    others = [i for i in await _admin_ids(db) if i != uuid.UUID(user["id"])]
    await db.execute(update(User).where(User.id.in_(others)).values(is_active=False))
    await db.commit()
    return user, headers


def removals(user_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("PATCH", f"/api/v1/users/{user_id}", {"is_active": False}),
        ("DELETE", f"/api/v1/users/{user_id}", {}),
        ("PUT", f"/api/v1/users/{user_id}/roles", {"roles": ["user"]}),
    ]


async def still_admin(db: AsyncSession, user_id: str) -> None:
    row = await account(db, user_id)
    assert row.is_active and row.deleted_at is None
    assert uuid.UUID(user_id) in await _admin_ids(db)


async def test_the_only_admin_cannot_be_removed_and_nothing_changes(
    client: AsyncClient, db: AsyncSession
) -> None:
    boss, headers = await only_admin(client, db)
    for method, url, body in removals(boss["id"]):
        response = await client.request(method, url, json=body or None, headers=headers)
        assert_problem(response, 409, "last_admin")
    leave = await client.request("DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=headers)
    assert_problem(leave, 409, "last_admin")
    await still_admin(db, boss["id"])
    assert (await client.get("/api/v1/users", headers=headers)).status_code == 200


@pytest.mark.parametrize("removal", [0, 1, 2], ids=["deactivate", "delete", "demote"])
async def test_with_a_second_active_admin_either_can_go(
    client: AsyncClient, db: AsyncSession, removal: int
) -> None:
    boss, _ = await only_admin(client, db)
    second = await register(client)
    await grant(db, second["id"], "admin")
    method, url, body = removals(boss["id"])[removal]  # the second admin removes the first
    second_headers = bearer((await login(client, second["email"]))["access_token"])
    response = await client.request(method, url, json=body or None, headers=second_headers)
    assert response.status_code in (200, 204), response.text
    # Now the second one is the last: it cannot follow.
    method, url, body = removals(second["id"])[removal]
    assert_problem(
        await client.request(method, url, json=body or None, headers=second_headers), 409, "last_admin"
    )
    await still_admin(db, second["id"])


async def test_a_deactivated_or_deleted_admin_does_not_count(client: AsyncClient, db: AsyncSession) -> None:
    boss, headers = await only_admin(client, db)
    inactive, deleted = [uuid.UUID((await register(client))["id"]) for _ in range(2)]
    for other in (inactive, deleted):
        await grant(db, str(other), "admin")
    await db.execute(update(User).where(User.id == inactive).values(is_active=False))
    await db.commit()
    assert (await client.delete(f"/api/v1/users/{deleted}", headers=headers)).status_code == 204
    await db.execute(update(User).where(User.id == deleted).values(is_active=True))  # deleted, not inactive
    await db.commit()
    for method, url, body in removals(boss["id"]):
        assert_problem(
            await client.request(method, url, json=body or None, headers=headers), 409, "last_admin"
        )


async def test_the_console_says_so_and_changes_nothing(client: AsyncClient, db: AsyncSession) -> None:
    boss, _ = await only_admin(client, db)
    await ui_sign_in(client, boss["email"])
    url = f"/ui/admin/users/{boss['id']}"
    page = await post_form(client, url, {"full_name": "Boss"})  # the "Active" box left unticked
    assert page.status_code == 409 and "last active administrator" in page.text
    assert (await post_form(client, f"{url}/delete", {})).status_code == 409
    assert (await post_form(client, f"{url}/roles", {"roles": "user"})).status_code == 409
    await still_admin(db, boss["id"])


async def test_two_admins_removing_each_other_at_once_leave_one(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    """Side by side, each sees the other still active unless the checks queue: exactly one wins."""
    pair = [unique_email("duel-a"), unique_email("duel-b")]
    for email in pair:
        await live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    async with live_engine.begin() as conn:
        rows = await conn.execute(select(User.email, User.id).where(User.email.in_(pair)))
        ids: dict[str, uuid.UUID] = dict(rows.all())
        admin_role = await conn.scalar(select(Role.id).where(Role.name == "admin"))
        await conn.execute(user_role.insert(), [{"user_id": i, "role_id": admin_role} for i in ids.values()])
        held = select(user_role.c.user_id).where(user_role.c.role_id == admin_role)
        set_aside = list(
            (
                await conn.scalars(
                    select(User.id).where(User.id.in_(held), User.id.not_in(ids.values()), User.is_active)
                )
            ).all()
        )
        await conn.execute(update(User).where(User.id.in_(set_aside)).values(is_active=False))
    try:
        tokens = {email: (await login(live_client, email))["access_token"] for email in pair}
        live_client.cookies.clear()
        answers = await asyncio.gather(
            *(
                live_client.patch(
                    f"/api/v1/users/{ids[other]}", json={"is_active": False}, headers=bearer(tokens[me])
                )
                for me, other in (pair, pair[::-1])
            )
        )
        statuses = sorted(a.status_code for a in answers)
        assert statuses in ([200, 409], [200, 403]), [a.text for a in answers]
        async with live_engine.connect() as conn:
            active = (await conn.scalars(select(User.is_active).where(User.id.in_(ids.values())))).all()
        assert sorted(active) == [False, True]
    finally:
        async with live_engine.begin() as conn:
            await conn.execute(update(User).where(User.id.in_(set_aside)).values(is_active=True))
