"""The migrations build the schema the models describe, and run down and up again, on both engines."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from authgate import migrate
from authgate.model_registry import Base


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
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


async def test_folded_names_are_filled_in_for_existing_accounts(engine: AsyncEngine) -> None:
    """Revision 0008 folds the names of accounts that existed before it, and its downgrade undoes it."""
    url = engine.url.render_as_string(hide_password=False)
    now = datetime.now(UTC)
    users = sa.table(
        "user_account",
        *(sa.column(name) for name in ("email", "email_normalized", "full_name", "full_name_folded")),
        *(sa.column(name) for name in ("email_verified", "phone_verified", "is_active", "mfa_enabled")),
        sa.column("id", sa.Uuid()),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
    )
    key = uuid.uuid4()
    await engine.dispose()
    await asyncio.to_thread(migrate.downgrade, url, "0007")
    try:
        async with engine.begin() as conn:
            assert "full_name_folded" not in {
                c["name"] for c in await conn.run_sync(lambda c: inspect(c).get_columns("user_account"))
            }
            await conn.execute(
                users.insert().values(
                    id=key,
                    email=f"{key}@example.com",
                    email_normalized=f"{key}@example.com",
                    full_name="Émile STRAẞE",
                    email_verified=False,
                    phone_verified=False,
                    is_active=True,
                    mfa_enabled=False,
                    created_at=now,
                    updated_at=now,
                )
            )
        await engine.dispose()
        await asyncio.to_thread(migrate.upgrade, url)
        async with engine.connect() as conn:
            folded = await conn.scalar(sa.select(users.c.full_name_folded).where(users.c.id == key))
            assert folded == "émile strasse"
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()
        await asyncio.to_thread(migrate.upgrade, url)
        async with engine.begin() as conn:
            await conn.execute(users.delete().where(users.c.id == key))
