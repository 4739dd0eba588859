"""The service refuses to start on a database the migrations have not brought up to its code."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from authgate import migrate
from authgate.db import create_engine
from authgate.main import create_app
from authgate.migrate import SchemaBehindError
from tests.conftest import POSTGRES_SERVER_URL, POSTGRES_URL, make_settings, postgres_server, unavailable


async def _postgres_admin() -> Any:
    """A plain asyncpg connection to the test server, as its superuser (a failure if there is none in CI)."""
    import asyncpg

    try:
        return await postgres_server()
    except (OSError, asyncpg.PostgresError) as exc:
        unavailable("PostgreSQL", exc)


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own, with nothing in it."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    name = f"authgate_empty_{uuid.uuid4().hex[:12]}"
    admin = await _postgres_admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _start(url: str) -> int:
    """Start the app on `url` and answer its readiness check: the status /ready gives."""
    app = create_app(make_settings(url))
    async with app.router.lifespan_context(app):
        assert app.state.keyring is not None
        async with AsyncClient(transport=ASGITransport(app=app), base_url="https://test") as client:
            return (await client.get("/ready")).status_code


async def test_an_empty_database_is_refused_with_the_command_that_fixes_it(empty_database: str) -> None:
    with pytest.raises(SchemaBehindError, match=r"empty database.*authgate migrate upgrade"):
        await _start(empty_database)


async def test_a_database_behind_the_code_is_refused(empty_database: str) -> None:
    await asyncio.to_thread(migrate.upgrade, empty_database, "0007")
    with pytest.raises(SchemaBehindError, match=r"at 0007, this version needs 0008"):
        await _start(empty_database)
    await asyncio.to_thread(migrate.upgrade, empty_database)
    assert await _start(empty_database) == 200


async def test_a_newer_release_schema_is_allowed(empty_database: str) -> None:
    """A rolling deploy migrates first; an old process that restarts meanwhile keeps serving."""
    await asyncio.to_thread(migrate.upgrade, empty_database)
    engine = create_engine(make_settings(empty_database))
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    try:
        assert await _start(empty_database) == 200
        async with engine.connect() as conn:  # the older process left the newer schema's mark alone
            assert (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar() == "9999"
    finally:
        await engine.dispose()


async def test_an_unreachable_database_is_not_mistaken_for_an_empty_one(tmp_path: Path) -> None:
    """The operator must read the real cause, not advice to run migrations."""
    for url in (
        f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}",
        POSTGRES_URL.rsplit("/", 1)[0] + f"/authgate_missing_{uuid.uuid4().hex[:12]}",
    ):
        engine = create_engine(make_settings(url))
        try:
            async with AsyncSession(engine) as session:
                with pytest.raises(DBAPIError) as failed:
                    await migrate.require_current_schema(session)
            assert not isinstance(failed.value, SchemaBehindError)
        finally:
            await engine.dispose()


async def test_a_table_the_service_may_not_read_is_reported_as_such() -> None:
    """A role without rights on alembic_version gets the permission error, not 'empty database'."""
    role = f"authgate_reader_{uuid.uuid4().hex[:8]}"
    admin = await _postgres_admin()
    schema = f"authgate_forbidden_{uuid.uuid4().hex[:8]}"
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        await admin.execute(f'CREATE TABLE "{schema}".alembic_version (version_num varchar(32) PRIMARY KEY)')
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        await admin.execute(f'ALTER ROLE "{role}" SET search_path = "{schema}"')
        url = (
            make_url(POSTGRES_SERVER_URL)
            .set(username=role, password=None)
            .render_as_string(hide_password=False)
        )
        engine = create_engine(make_settings(url))
        try:
            async with AsyncSession(engine) as session:
                with pytest.raises(DBAPIError, match="permission denied"):
                    await migrate.require_current_schema(session)
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
