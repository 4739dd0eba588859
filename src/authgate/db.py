"""Database foundation: declarative base, portable types, engine, and the per-request unit of work."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Annotated, Any

import aiosqlite
import structlog
from fastapi import Depends, Request
from sqlalchemy import Connection, DateTime, Engine, Executable, MetaData, Row, event
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator
from sqlalchemy.util import await_only
from uuid_utils.compat import uuid7

from authgate.config import Settings

log = structlog.get_logger("authgate.db")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A time-ordered UUID (v7), so primary keys double as a creation-order cursor."""
    return uuid7()


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime}  # noqa: RUF012 - SQLAlchemy's documented hook


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Whether the current unit of work intends to write (SQLite only): see _configure_sqlite.
_write_intent: ContextVar[bool] = ContextVar("authgate_write_intent", default=False)


SQLITE_WRITE_WAIT_SECONDS = 30.0
_HOLDS_WRITE_LOCK = "authgate_holds_write_lock"


@contextmanager
def read_intent() -> Iterator[None]:
    """Mark the transactions opened inside as read-only, whatever the request's method (SQLite)."""
    token = _write_intent.set(False)
    try:
        yield
    finally:
        _write_intent.reset(token)


@contextmanager
def write_intent() -> Iterator[None]:
    """Mark the transactions opened inside as writers (SQLite: `BEGIN IMMEDIATE`, queued in order).

    For work outside a request that reads and then writes, such as the courier claiming messages:
    a deferred transaction that reads first fails at once with "database is locked" when another
    connection commits before its first write (WAL's stale snapshot), busy timeout or not.
    """
    token = _write_intent.set(True)
    try:
        yield
    finally:
        _write_intent.reset(token)


async def write_aside(
    factory: async_sessionmaker[AsyncSession], stmt: Executable, *, failure: str, **context: str
) -> None:
    """Run one statement in a transaction of its own, queued with the writers; a failure is logged.

    For activity stamps written after the response (from a GET too): never worth failing anything for.
    """
    try:
        with write_intent():
            async with factory() as db, db.begin():
                await db.execute(stmt)
    except Exception:
        log.warning(failure, exc_info=True, **context)


class SqliteConnection(aiosqlite.Connection):
    """aiosqlite's connection, answering on the event loop's own thread inside a write transaction.

    aiosqlite sends every call (cursor, execute, fetch, close) to a thread of its own and wakes the
    loop when it is done: two thread switches and a trip through the loop's self-pipe per call,
    about 0.25 ms of CPU per statement, where the statements of this service take tens of
    microseconds. Inside a write transaction nothing can make a statement wait: this process's
    write lock and SQLite's are held (`BEGIN IMMEDIATE`, see `_configure_sqlite`), and in WAL mode
    writers never wait for readers. So while `inline` is set, calls run where they are awaited,
    which takes about a third off the CPU of a sign-in beyond its hash. Everything that can wait
    still goes through the thread: `BEGIN IMMEDIATE` (another process may hold the lock), `COMMIT`
    (it may run a WAL checkpoint, with fsync), and every statement of a read (deferred)
    transaction. Reads inside a write transaction run inline like its writes.
    """

    inline = False

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        connection = self._connection
        if self.inline and connection is not None:
            if fn != connection.commit:
                return fn(*args, **kwargs)
            self.inline = False  # the transaction ends here: whatever follows queues behind COMMIT
        return await super()._execute(fn, *args, **kwargs)  # type: ignore[no-untyped-call]


def _sqlite_connector(url: URL) -> Callable[[], Awaitable[SqliteConnection]]:
    """The engine's `async_creator`: a `SqliteConnection` with the URL's own connect arguments."""
    args, options = url.get_dialect()().create_connect_args(url)
    # Called from the loop's thread as well as aiosqlite's, one call at a time (see SqliteConnection).
    options = {**options, "check_same_thread": False}

    def open_sqlite() -> sqlite3.Connection:
        return sqlite3.connect(*args, **options)  # type: ignore[call-overload, no-any-return]

    async def connect() -> SqliteConnection:
        connection = SqliteConnection(open_sqlite, iter_chunk_size=64)
        connection._thread.daemon = True  # as SQLAlchemy does for aiosqlite's own connections
        try:
            await connection
        except Exception:
            # aiosqlite stops its thread without waiting when the file cannot be opened; the
            # thread then answers the loop, which a command line's `asyncio.run` may have closed
            # by then ("Event loop is closed", a traceback after the error). It has only that
            # answer left to give: wait for it here, without blocking the loop (at most a second).
            for _ in range(100):
                if not connection._thread.is_alive():
                    break
                await asyncio.sleep(0.01)
            raise
        return connection

    return connect


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL, foreign keys and a busy timeout, plus explicit BEGIN so SAVEPOINTs and locking behave.

    pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT; SQLAlchemy documents
    taking it over. Requests that may write begin with `BEGIN IMMEDIATE`, which takes the write
    lock up front, so concurrent writers queue on the busy timeout instead of failing with
    "database is locked" when a reader upgrades; reads begin deferred and run in parallel (WAL).
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # One writer at a time within this process, queued in order on an asyncio lock: SQLite's own
    # busy handler polls with sleeps of up to 100 ms, which starves unlucky writers under load
    # (login p99 of seconds at 16 connections). Other processes still queue on the busy timeout.
    write_lock = asyncio.Lock()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        driver: SqliteConnection = conn.connection.driver_connection
        driver.inline = False
        if not _write_intent.get():
            # Straight to aiosqlite: one trip to its thread, where exec_driver_sql takes three
            # (cursor, execute, close).
            await_only(driver.execute("BEGIN"))
            return
        await_only(asyncio.wait_for(write_lock.acquire(), timeout=SQLITE_WRITE_WAIT_SECONDS))
        conn.info[_HOLDS_WRITE_LOCK] = True  # released when the connection returns to the pool
        await_only(driver.execute("BEGIN IMMEDIATE"))  # on the thread: another process may hold it
        driver.inline = True

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(dbapi_connection: Any, record: Any) -> None:
        if dbapi_connection is not None:
            dbapi_connection.driver_connection.inline = False
        if record.info.pop(_HOLDS_WRITE_LOCK, False):
            write_lock.release()

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: Any) -> None:
        # Replaces the pool's rollback-on-return (`pool_reset_on_return=None` below), which costs
        # a trip to the driver's thread per request even after a commit: roll back only when a
        # transaction is still open.
        if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()


class SqliteReadOnly:
    """A read-only pysqlite connection used on the event loop's own thread, for hot, tiny reads.

    An indexed read in WAL mode costs tens of microseconds and never waits for a writer, while a
    trip to aiosqlite's thread and back costs far more and, under load, stalls behind the event
    loop's queue. Used by the access reader (every authenticated request) and the in-process
    courier's idle check. Never for anything that writes: the connection is `query_only`.
    """

    BUSY_TIMEOUT_MS = 2000  # WAL readers do not wait for writers; only a checkpoint reset can delay them

    def __init__(self, url: URL) -> None:
        self.engine: Engine = create_sync_engine(
            url.set(drivername="sqlite"),
            isolation_level="AUTOCOMMIT",
            pool_size=1,
            max_overflow=0,
            connect_args={"check_same_thread": False},  # one loop at a time; opened and closed there
        )
        event.listen(self.engine, "connect", _sqlite_read_only)
        self._conn: Connection | None = None
        self._closed = False

    def all(self, statement: Executable, params: Mapping[str, Any] | None = None) -> Sequence[Row[Any]]:
        if self._closed:
            raise RuntimeError("the read-only SQLite connection is closed (shutting down)")
        conn = self._conn
        if conn is None or conn.closed:
            conn = self._conn = self.engine.connect()
        try:
            return conn.execute(statement, params).all()
        finally:
            conn.rollback()  # no transaction is open in autocommit; this only resets SQLAlchemy's state

    def close(self) -> None:
        self._closed = True
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.engine.dispose()

    @staticmethod
    def usable_for(engine: AsyncEngine) -> bool:
        """A file database (an in-memory one would be a different, empty database per connection)."""
        return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def _sqlite_read_only(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA query_only=ON")
    cursor.execute(f"PRAGMA busy_timeout={SqliteReadOnly.BUSY_TIMEOUT_MS}")
    cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        url = make_url(settings.database_url)
        # Reads begin deferred and run side by side (WAL); writers take the lock up front and queue
        # on the busy timeout. The pool's rollback-on-return is replaced by `_on_reset` above.
        engine = create_async_engine(
            url,
            async_creator=_sqlite_connector(url),
            pool_size=5,
            max_overflow=10,
            pool_timeout=60,
            pool_reset_on_return=None,
            hide_parameters=True,  # statement errors must not carry values (passwords, tokens) into logs
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_timeout=settings.database_pool_timeout,
        # No pre-ping: with asyncpg it is three round trips (BEGIN, ";", ROLLBACK) on every checkout,
        # doubling an authenticated read. A connection the server has dropped fails one request,
        # and SQLAlchemy then discards the whole pool; pool_recycle retires idle ones first.
        pool_recycle=1800,
        hide_parameters=True,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def unit_of_work(session: AsyncSession) -> AsyncIterator[AsyncSession]:
    """Commit when the handler returns, roll back when it raises; nothing else commits.

    The transaction begins lazily, so no pooled connection is held until the first statement.
    """
    try:
        yield session
    except BaseException:
        await session.rollback()
        raise
    else:
        await session.commit()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    _write_intent.set(request.method not in SAFE_METHODS)
    async with factory() as session:
        async for item in unit_of_work(session):
            yield item


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def end_read(session: AsyncSession) -> None:
    """Close the read-only transaction so its connection returns to the pool before slow CPU work.

    Used around password hashing: a burst of logins must not pin every pooled connection while
    threads hash. The next statement begins a new transaction.
    """
    if session.in_transaction() and not (session.new or session.dirty or session.deleted):
        await session.commit()
