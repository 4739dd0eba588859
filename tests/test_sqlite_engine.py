"""The embedded SQLite engine: where each statement runs, and that waiting never blocks the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from authgate.db import SqliteConnection, create_engine, read_intent, write_intent
from tests.conftest import make_settings

Trace = list[tuple[str, bool]]  # (statement, ran on the event loop's thread)


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[tuple[AsyncEngine, Trace, Path]]:
    """A fresh file database on authgate's engine, tracing each statement with the thread it ran on."""
    path = tmp_path / "engine.db"
    engine = create_engine(make_settings(f"sqlite+aiosqlite:///{path}"))
    trace: Trace = []
    loop_thread = threading.get_ident()

    @event.listens_for(engine.sync_engine, "connect")
    def _trace(dbapi_connection: Any, _record: Any) -> None:
        driver: SqliteConnection = dbapi_connection.driver_connection
        driver._conn.set_trace_callback(
            lambda sql: trace.append(
                (sql.split()[0].upper() + _second(sql), threading.get_ident() == loop_thread)
            )
        )

    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)"))
    trace.clear()
    yield engine, trace, path
    await engine.dispose()


def _second(sql: str) -> str:
    words = sql.split()
    return f" {words[1].upper()}" if words[0].upper() == "BEGIN" and len(words) > 1 else ""


async def test_a_write_transaction_runs_its_statements_on_the_loop_but_waits_off_it(
    sqlite_engine: tuple[AsyncEngine, Trace, Path],
) -> None:
    engine, trace, _ = sqlite_engine
    with write_intent():
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO item (name) VALUES ('a')"))
            assert (await conn.execute(text("SELECT count(*) FROM item"))).scalar() == 1
    # BEGIN IMMEDIATE may wait for another process and COMMIT may checkpoint: aiosqlite's thread.
    assert trace == [
        ("BEGIN IMMEDIATE", False),
        ("INSERT", True),
        ("SELECT", True),
        ("COMMIT", False),
    ]


async def test_commit_hands_the_connection_back_to_aiosqlite_thread(
    sqlite_engine: tuple[AsyncEngine, Trace, Path],
) -> None:
    """Nothing after COMMIT runs beside it: a rollback during a cancelled commit queues behind it."""
    engine, _, _ = sqlite_engine
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        with write_intent():
            await conn.execute(text("INSERT INTO item (name) VALUES ('a')"))
            assert driver.inline is True
            await conn.commit()
        assert driver.inline is False


async def test_reads_stay_on_aiosqlite_thread(sqlite_engine: tuple[AsyncEngine, Trace, Path]) -> None:
    engine, trace, _ = sqlite_engine
    with read_intent():
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM item"))).scalar() == 0
            await conn.commit()
    assert trace == [("BEGIN", False), ("SELECT", False), ("COMMIT", False)]


async def test_the_connection_leaves_the_loop_when_its_write_transaction_ends(
    sqlite_engine: tuple[AsyncEngine, Trace, Path],
) -> None:
    engine, trace, _ = sqlite_engine
    async with engine.connect() as conn:
        with write_intent():
            await conn.execute(text("INSERT INTO item (name) VALUES ('a')"))
            await conn.rollback()
        with read_intent():
            assert (await conn.execute(text("SELECT count(*) FROM item"))).scalar() == 0
            await conn.rollback()
    assert trace == [
        ("BEGIN IMMEDIATE", False),
        ("INSERT", True),
        ("ROLLBACK", True),
        ("BEGIN", False),
        ("SELECT", False),
        ("ROLLBACK", False),
    ]


async def _insert(engine: AsyncEngine, name: str) -> None:
    with write_intent():
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO item (name) VALUES (:name)"), {"name": name})


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT name FROM item ORDER BY id"))).scalars())


async def test_a_failing_statement_on_the_loop_raises_and_leaves_the_connection_usable(
    sqlite_engine: tuple[AsyncEngine, Trace, Path],
) -> None:
    engine, _, _ = sqlite_engine
    await _insert(engine, "a")
    with pytest.raises(IntegrityError):
        await _insert(engine, "a")
    await _insert(engine, "b")
    assert await _names(engine) == ["a", "b"]


async def test_a_writer_in_another_process_is_waited_for_off_the_loop(
    sqlite_engine: tuple[AsyncEngine, Trace, Path],
) -> None:
    """Another process holds the write lock: our writer queues on aiosqlite's thread, the loop runs on."""
    engine, trace, path = sqlite_engine
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO item (name) VALUES ('other')")
    writer = asyncio.create_task(_insert(engine, "ours"))
    for _ in range(500):  # until the writer's BEGIN has started
        if trace:
            break
        await asyncio.sleep(0.01)
    # It waits for the lock on aiosqlite's thread, while this coroutine, on the loop, runs on.
    assert trace == [("BEGIN IMMEDIATE", False)]
    await asyncio.sleep(0.1)
    assert not writer.done() and trace == [("BEGIN IMMEDIATE", False)]
    other.execute("COMMIT")
    other.close()
    await asyncio.wait_for(writer, timeout=10)
    assert await _names(engine) == ["other", "ours"]
