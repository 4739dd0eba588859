"""Several workers on one PostgreSQL database: every message delivered exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import datetime

import pytest
from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from authgate.config import Settings
from authgate.db import create_sessionmaker, new_id, utcnow
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.models import OutboxMessage
from authgate.outbox.transports import OutgoingMessage, Transports

TEMPLATE = "mfa_enabled"
MESSAGES = 1000


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, message: OutgoingMessage) -> str:
        await asyncio.sleep(0)  # let the other worker run between sends
        self.sent.append(message.id)
        return f"rec-{message.id}"


@pytest.mark.postgres_only
async def test_two_workers_drain_a_thousand_messages_without_duplicates_or_loss(
    engine: AsyncEngine, settings: Settings
) -> None:
    # The real engine, not the test's rolled-back transaction: workers need separate connections
    # and real row locks. The rows are removed at the end.
    factory = create_sessionmaker(engine)
    marker = f"load-{new_id()}@example.com"
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "channel": "email",
            "template": TEMPLATE,
            "recipient": marker,
            "context": {"when": "now", "sessions_link": "http://test/ui/security"},
            "idempotency_key": f"load:{i}:{marker}",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(MESSAGES)
    ]
    async with factory() as session, session.begin():
        await session.execute(insert(OutboxMessage), rows)
    try:
        fast = settings.model_copy(update={"outbox": settings.outbox.model_copy(update={"batch_size": 25})})
        first, second = _Recorder(), _Recorder()
        workers = [
            Dispatcher(factory, fast, Transports(email=recorder, sms=recorder))
            for recorder in (first, second)
        ]
        await asyncio.gather(*(worker.drain() for worker in workers))

        sent = first.sent + second.sent
        assert len(sent) == MESSAGES
        assert Counter(sent).most_common(1)[0][1] == 1  # no duplicate
        assert set(sent) == {str(r["id"]) for r in rows}  # no loss
        assert first.sent
        assert second.sent
        async with factory() as session:
            result = await session.execute(
                select(OutboxMessage.status, func.count())
                .where(OutboxMessage.recipient == marker)
                .group_by(OutboxMessage.status)
            )
            statuses = {row[0]: row[1] for row in result}
        assert statuses == {"sent": MESSAGES}
    finally:
        async with factory() as session, session.begin():
            await session.execute(delete(OutboxMessage).where(OutboxMessage.recipient == marker))


@pytest.mark.sqlite_only
async def test_a_claim_holds_the_write_lock_from_its_first_read(
    live_engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite: another writer wants the lock between the claim's SELECT and its UPDATE.

    A deferred transaction that has read cannot wait for a writer (SQLite answers "database is
    locked" at once, busy timeout or not); the courier takes the write lock up front instead.
    """
    factory = create_sessionmaker(live_engine)
    now = utcnow()
    message_id = new_id()
    async with factory() as session, session.begin():
        await session.execute(
            insert(OutboxMessage).values(
                id=message_id,
                channel="email",
                template=TEMPLATE,
                recipient="snapshot@example.com",
                context={"when": "now", "sessions_link": "http://test/ui/security"},
                idempotency_key=f"snapshot:{message_id}",
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    other_writes: list[str] = []
    others: list[sqlite3.Connection] = []
    original = Dispatcher._due
    calls = 0

    def due_with_a_writer_after_the_read(self: Dispatcher, at: datetime) -> ColumnElement[bool]:
        # Called once to build the SELECT, then once per row for the UPDATE, after the SELECT ran.
        nonlocal calls
        calls += 1
        if calls == 2:
            database = live_engine.url.database
            assert database is not None
            other = sqlite3.connect(database, timeout=0.2, isolation_level=None)  # another process
            others.append(other)
            try:
                other.execute("BEGIN IMMEDIATE")  # and it keeps the write lock while the claim goes on
                other_writes.append("holding the write lock")
            except sqlite3.OperationalError as exc:
                other_writes.append(str(exc))
        return original(self, at)

    monkeypatch.setattr(Dispatcher, "_due", due_with_a_writer_after_the_read)
    recorder = _Recorder()
    try:
        claimed = await Dispatcher(factory, settings, Transports(email=recorder, sms=recorder)).claim()
    finally:
        for other in others:
            other.close()
    assert [c.row_id for c in claimed] == [message_id]
    assert other_writes == ["database is locked"]  # the claim held the lock; the other writer gave up
