"""Fixtures shared by every test: both database engines, per-test isolation, the app and a client.

Every test that asks for `client` (or `db`) runs twice, on SQLite and on PostgreSQL. The schema
comes from the Alembic migrations. Each test runs inside one outer transaction that is rolled
back at teardown; the code under test commits SAVEPOINTs inside it.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from authgate import migrate
from authgate.audit.models import AuditChainHead
from authgate.audit.service import GENESIS_HASH
from authgate.config import PasswordPolicy, Settings
from authgate.db import create_engine, create_sessionmaker
from authgate.main import create_app
from authgate.model_registry import Base

# The configured database is only where a run connects to create its own, `<name>_run_<pid>`, so two
# runs on one server (two checkouts, CI beside a developer) never drop each other's tables.
POSTGRES_SERVER_URL = os.environ.get(
    "AUTHGATE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
_RUN_PREFIX = f"{make_url(POSTGRES_SERVER_URL).database or 'test'}_run_"
_RUN_DATABASE = f"{_RUN_PREFIX}{os.getpid()}"
POSTGRES_URL = make_url(POSTGRES_SERVER_URL).set(database=_RUN_DATABASE).render_as_string(hide_password=False)
REDIS_URL = os.environ.get("AUTHGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"
# Cheap hashing keeps the suite fast; the production parameters are measured in bench/.
FAST_PASSWORDS = PasswordPolicy(argon2_memory_cost=1024, argon2_time_cost=1)

_tmp = Path(tempfile.mkdtemp(prefix="authgate-test-"))


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "test",
        "database_url": database_url,
        "secret_key": TEST_SECRET,
        "public_url": "http://test",
        "password": FAST_PASSWORDS,
        "upload_dir": _tmp / "uploads",
        "log_level": "WARNING",
        "_env_file": None,
    }
    values.update(overrides)
    return Settings(**values)


def unavailable(what: str, exc: BaseException) -> None:
    """Locally a missing service is a skip; under CI=true it fails the run."""
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if IN_CI:
        pytest.fail(message + " — required when CI=true", pytrace=False)
    pytest.skip(message)


async def postgres_server() -> Any:
    """A plain asyncpg connection to the configured database, for creating and dropping others."""
    import asyncpg  # type: ignore[import-untyped]

    return await asyncpg.connect(POSTGRES_SERVER_URL.replace("postgresql+asyncpg://", "postgresql://", 1))


def _ended(database: str) -> bool:
    """Whether the run that made `database` (named after its process id) has ended."""
    pid = database.removeprefix(_RUN_PREFIX)
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


async def _run_database(*, create: bool) -> None:
    """Create this run's database (PostgreSQL 13+, a role with CREATEDB), first dropping those of
    runs that ended without cleaning up (killed); or drop it at the end."""
    server = await postgres_server()
    try:
        doomed = [_RUN_DATABASE]
        if create:
            names = await server.fetch(
                "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", _RUN_PREFIX
            )
            doomed += [row["datname"] for row in names if _ended(row["datname"])]
        for name in doomed:
            await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await server.execute(f'CREATE DATABASE "{_RUN_DATABASE}"')
    finally:
        await server.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[AsyncEngine]:
    """One migrated database per engine for the whole run."""
    url = f"sqlite+aiosqlite:///{_tmp / 'test.db'}" if request.param == "sqlite" else POSTGRES_URL
    if request.param == "postgresql":
        try:
            await _run_database(create=True)
        except Exception as exc:
            unavailable("PostgreSQL", exc)
    eng = create_engine(make_settings(url))
    await asyncio.to_thread(migrate.upgrade, url)
    yield eng
    await eng.dispose()
    if request.param == "postgresql":
        await _run_database(create=False)


@pytest.fixture(autouse=True)
def _engine_markers(request: pytest.FixtureRequest) -> None:
    if "engine" not in request.fixturenames:
        return
    name = request.getfixturevalue("engine").dialect.name
    if request.node.get_closest_marker("postgres_only") and name != "postgresql":
        pytest.skip("PostgreSQL only")
    if request.node.get_closest_marker("sqlite_only") and name != "sqlite":
        pytest.skip("SQLite only")


@pytest.fixture
def dialect(engine: AsyncEngine) -> str:
    return engine.dialect.name


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield conn
        if outer.is_active:
            await outer.rollback()


@pytest.fixture
def sessionmaker(connection: AsyncConnection) -> async_sessionmaker[AsyncSession]:
    """Sessions on the test's connection: each `begin()` is a SAVEPOINT inside the outer transaction."""
    return async_sessionmaker(
        bind=connection, expire_on_commit=False, autoflush=False, join_transaction_mode="create_savepoint"
    )


@pytest.fixture
async def db(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def settings(engine: AsyncEngine) -> Settings:
    return make_settings(engine.url.render_as_string(hide_password=False))


@pytest.fixture
async def app(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> AsyncIterator[FastAPI]:
    application = create_app(settings, sessionmaker=sessionmaker, engine=engine)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with AsyncClient(transport=transport, base_url="https://test") as c:
        yield c


async def _wipe(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "audit_chain_head":
                await conn.execute(delete(table))
        await conn.execute(update(AuditChainHead).values(last_seq=0, last_hash=GENESIS_HASH))


@pytest.fixture
async def live_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A small pool on the same database, so a request holding two connections would stall."""
    url = engine.url.render_as_string(hide_password=False)
    live = create_engine(
        make_settings(url, database_pool_size=4, database_max_overflow=0, database_pool_timeout=20)
    )
    if live.dialect.name == "postgresql":
        async with live.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    yield live
    await _wipe(live)
    await live.dispose()


@pytest.fixture
async def live_app(live_engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    """The app on a real pool: every request commits, as in production (no per-test transaction)."""
    url = live_engine.url.render_as_string(hide_password=False)
    application = create_app(
        make_settings(url), sessionmaker=create_sessionmaker(live_engine), engine=live_engine
    )
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def live_client(live_app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=live_app), base_url="https://test") as client:
        yield client


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def tmp_root() -> Path:
    return _tmp
