"""Administrators see the courier's queue, dead messages included, but never message bodies."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.outbox.models import OutboxMessage
from tests.factories import assert_problem, grant_role, signed_in


async def test_admin_lists_dead_messages_with_their_error(client: AsyncClient, db: AsyncSession) -> None:
    admin, headers = await signed_in(client)
    await grant_role(db, admin["id"])
    other, _ = await signed_in(client)  # registering queued a verification email for them
    await db.execute(
        update(OutboxMessage)
        .where(OutboxMessage.recipient == other["email"])
        .values(status="dead", attempts=8, last_error="550 mailbox unavailable")
    )
    await db.commit()

    dead = await client.get("/api/v1/outbox-messages", params={"status": "dead"}, headers=headers)
    assert dead.status_code == 200
    items = dead.json()["items"]
    assert [m["recipient"] for m in items] == [other["email"]]
    assert items[0]["last_error"] == "550 mailbox unavailable" and items[0]["attempts"] == 8
    assert "text" not in items[0] and "html" not in items[0] and "context" not in items[0]

    everything = (await client.get("/api/v1/outbox-messages", headers=headers)).json()["items"]
    assert {m["recipient"] for m in everything} >= {admin["email"], other["email"]}


async def test_outbox_needs_the_permission(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    assert_problem(await client.get("/api/v1/outbox-messages", headers=headers), 403, "permission_denied")
    assert_problem(await client.get("/api/v1/outbox-messages"), 401, "not_authenticated")


async def test_outbox_rejects_an_unknown_status(client: AsyncClient, db: AsyncSession) -> None:
    admin, headers = await signed_in(client)
    await grant_role(db, admin["id"])
    response = await client.get("/api/v1/outbox-messages", params={"status": "lost"}, headers=headers)
    assert_problem(response, 422, "validation_error")
