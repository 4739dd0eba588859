"""Alembic driven from code, so `authgate migrate` and the tests need no alembic.ini."""

from __future__ import annotations

import functools
import io

import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncSession

log = structlog.get_logger("authgate.migrate")


class SchemaBehindError(RuntimeError):
    """The database has not been migrated to the revision this code needs."""


def alembic_config(database_url: str) -> Config:
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", "authgate:migrations")
    config.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(slug)s_%%(rev)s")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str:
    config = alembic_config(database_url)
    command.current(config)
    out = config.stdout
    assert isinstance(out, io.StringIO)  # noqa: S101 - set above
    return out.getvalue().strip()


@functools.cache
def _revisions() -> tuple[str | None, frozenset[str]]:
    """This code's head revision and every revision it knows (read once: the scripts are files)."""
    scripts = ScriptDirectory.from_config(alembic_config(""))
    return scripts.get_current_head(), frozenset(script.revision for script in scripts.walk_revisions())


async def require_current_schema(session: AsyncSession) -> None:
    """Refuse to start on a database the migrations have not brought up to this code.

    A revision this code does not know is a newer release's (its migrations ran before this
    process restarted during a rolling deploy): that is allowed, with a warning.
    """
    head, known = _revisions()
    connection = await session.connection()
    # Only a missing table means "never migrated"; an unreachable or forbidden database raises as is.
    migrated = await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version"))
    found = await session.scalar(text("SELECT version_num FROM alembic_version")) if migrated else None
    if found == head:
        return
    if found is not None and found not in known:
        log.warning("schema_newer_than_code", database=found, code=head)
        return
    raise SchemaBehindError(
        f"the database schema is at {found or 'no revision (empty database)'}, this version needs "
        f"{head}: run `authgate migrate upgrade` first"
    )
