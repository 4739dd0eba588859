"""The migrations build the schema the models describe, and run down and up again, on both engines."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from authgate import migrate
from authgate.model_registry import Base


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    with warnings.catch_warnings():
        # SQLite reflection cannot see expression indexes (the name-prefix index); PostgreSQL checks it.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based index")
        return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def test_models_and_migrated_schema_agree(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []


async def test_upgrade_downgrade_upgrade(engine: AsyncEngine) -> None:
    url = engine.url.render_as_string(hide_password=False)
    await engine.dispose()  # release pooled connections so DDL is not blocked
    await asyncio.to_thread(migrate.downgrade, url, "base")
    async with engine.connect() as conn:
        assert await conn.run_sync(_tables) <= {"alembic_version"}
    await asyncio.to_thread(migrate.upgrade, url)
    async with engine.connect() as conn:
        assert {"user_account", "login_session", "refresh_token", "audit_event"} <= await conn.run_sync(
            _tables
        )
        assert await conn.run_sync(_diff) == []
    assert "(head)" in await asyncio.to_thread(migrate.current, url)
