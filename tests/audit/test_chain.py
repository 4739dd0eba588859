"""The hash chain: tampering in SQL is caught, concurrent appends do not fork, and the CLI reports it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from authgate.audit.models import AuditChainHead, AuditEvent
from authgate.audit.service import CHAIN_HEAD_ID, Actor, AuditLog, chain_hash, verify_chain
from authgate.cli import app as cli_app
from authgate.config import get_settings
from authgate.db import create_sessionmaker, new_id, utcnow


async def _append(session: AsyncSession, n: int) -> list[AuditEvent]:
    log = AuditLog(session)
    return [await log.record("auth.logout", actor=Actor.system(), data={"n": i}) for i in range(n)]


async def _verify(sessionmaker: async_sessionmaker[AsyncSession]):  # type: ignore[no-untyped-def]
    async with sessionmaker() as fresh:  # a new identity map: the rows as they are in the database
        return await verify_chain(fresh)


async def test_intact_chain_verifies(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _append(db, 3)
    await db.commit()
    report = await _verify(sessionmaker)
    assert report.broken_event_id is None
    assert report.checked >= 3


@pytest.mark.parametrize("column", ["action", "data", "actor_id", "occurred_at"])
async def test_edited_row_is_caught(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], column: str
) -> None:
    events = await _append(db, 3)
    await db.commit()
    values = {
        "action": "'auth.login.succeeded'",
        "data": "'{\"n\": 99}'",
        "actor_id": "'someone-else'",
        "occurred_at": "occurred_at",  # replaced below: a portable way to shift a timestamp is an ORM value
    }
    if column == "occurred_at":
        await db.execute(
            update(AuditEvent).where(AuditEvent.seq == events[1].seq).values(occurred_at=utcnow())
        )
    else:
        await db.execute(
            text(f"UPDATE audit_event SET {column} = {values[column]} WHERE seq = :seq"),
            {"seq": events[1].seq},
        )
    await db.commit()
    report = await _verify(sessionmaker)
    assert report.broken_event_id == str(events[1].id)
    assert report.reason is not None
    assert "hash" in report.reason


async def test_recomputed_hash_after_edit_breaks_the_next_link(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    events = await _append(db, 3)
    await db.commit()
    await db.execute(
        text("UPDATE audit_event SET hash = :h WHERE seq = :seq"), {"h": "f" * 64, "seq": events[1].seq}
    )
    await db.commit()
    report = await _verify(sessionmaker)
    assert report.broken_event_id == str(events[1].id)


async def test_deleted_row_is_caught(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    events = await _append(db, 3)
    await db.commit()
    await db.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": events[1].seq})
    await db.commit()
    report = await _verify(sessionmaker)
    assert report.broken_event_id == str(events[2].id)
    assert "sequence" in (report.reason or "")


async def test_deleted_last_row_is_caught_by_the_head(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    events = await _append(db, 3)
    await db.commit()
    await db.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": events[2].seq})
    await db.commit()
    report = await _verify(sessionmaker)
    assert report.broken_event_id == str(events[1].id)
    assert "head" in (report.reason or "")


async def test_inserted_row_is_caught(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    events = await _append(db, 2)
    await db.commit()
    last = events[-1]
    forged = AuditEvent(
        id=new_id(),
        seq=last.seq + 1,
        occurred_at=utcnow(),
        actor_type="user",
        actor_id="forger",
        action="auth.login.succeeded",
        target_type=None,
        target_id=None,
        ip=None,
        user_agent=None,
        request_id=None,
        data={},
        prev_hash=last.hash,
    )
    # Even with a correctly computed hash the row is caught: the chain head was not moved.
    await db.execute(
        insert(AuditEvent.__table__).values(
            id=forged.id,
            seq=forged.seq,
            occurred_at=forged.occurred_at,
            actor_type="user",
            actor_id="forger",
            action=forged.action,
            data={},
            prev_hash=last.hash,
            hash=chain_hash(last.hash, forged),
        )
    )
    await db.commit()
    report = await _verify(sessionmaker)
    assert report.broken_event_id is not None
    assert "head" in (report.reason or "")


async def test_inserted_row_in_the_middle_is_caught(
    db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    events = await _append(db, 2)
    await db.commit()
    # Make room by moving the last event up one, then slip a row into its place.
    await db.execute(text("UPDATE audit_event SET seq = seq + 1 WHERE seq = :seq"), {"seq": events[1].seq})
    await db.execute(
        insert(AuditEvent.__table__).values(
            id=new_id(),
            seq=events[1].seq,
            occurred_at=utcnow(),
            actor_type="user",
            actor_id="forger",
            action="auth.login.succeeded",
            data={},
            prev_hash=events[0].hash,
            hash="0" * 64,
        )
    )
    await db.commit()
    report = await _verify(sessionmaker)
    assert report.broken_event_id is not None
    assert report.broken_event_id != str(events[0].id)


# --- committed rows: the concurrent-append test and the CLI need real transactions ---------------


@pytest.fixture
async def committed(engine: AsyncEngine) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A sessionmaker on the real engine; every event appended through it is removed afterwards."""
    factory = create_sessionmaker(engine)
    async with factory() as s:
        head = await s.get(AuditChainHead, CHAIN_HEAD_ID)
        before = (head.last_seq, head.last_hash) if head else None
    try:
        yield factory
    finally:
        async with factory() as s, s.begin():
            await s.execute(delete(AuditEvent).where(AuditEvent.seq > (before[0] if before else 0)))
            if before is None:
                await s.execute(delete(AuditChainHead))
            else:
                await s.execute(update(AuditChainHead).values(last_seq=before[0], last_hash=before[1]))


@pytest.mark.postgres_only
async def test_concurrent_appends_do_not_fork_the_chain(committed: async_sessionmaker[AsyncSession]) -> None:
    async def one(i: int) -> None:
        async with committed() as s, s.begin():
            await AuditLog(s).record("auth.logout", actor=Actor.system(), data={"writer": i})

    await asyncio.gather(*(one(i) for i in range(25)))
    async with committed() as s:
        report = await verify_chain(s)
        seqs = (await s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq))).all()
    assert report.broken_event_id is None
    assert list(seqs) == list(range(1, len(seqs) + 1))
    assert len(seqs) >= 25


def _run_cli(url: str) -> tuple[int, str]:
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli_app, ["audit", "verify"], env={"AUTHGATE_DATABASE_URL": url, "AUTHGATE_ENV": "test"}
        )
    finally:
        get_settings.cache_clear()
    return result.exit_code, result.output


async def test_cli_verify_exit_codes(
    engine: AsyncEngine, committed: async_sessionmaker[AsyncSession]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    async with committed() as s, s.begin():
        events = await _append(s, 3)
    code, output = await asyncio.to_thread(_run_cli, url)
    assert code == 0, output
    assert "intact" in output

    async with committed() as s, s.begin():
        await s.execute(
            text("UPDATE audit_event SET action = 'auth.login.succeeded' WHERE seq = :seq"),
            {"seq": events[1].seq},
        )
    code, output = await asyncio.to_thread(_run_cli, url)
    assert code == 1
    assert str(events[1].id) in output


def test_chain_hash_covers_the_previous_hash() -> None:
    event = AuditEvent(
        id=new_id(),
        seq=1,
        occurred_at=utcnow(),
        actor_type="system",
        actor_id=None,
        action="a",
        target_type=None,
        target_id=None,
        ip=None,
        user_agent=None,
        request_id=None,
        data={},
    )
    assert chain_hash("0" * 64, event) != chain_hash("1" * 64, event)
    assert len(hashlib.sha256(b"").hexdigest()) == len(chain_hash("0" * 64, event))
