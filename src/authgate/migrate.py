"""Alembic driven from code, so `authgate migrate` and the tests need no alembic.ini."""

from __future__ import annotations

import io

from alembic import command
from alembic.config import Config


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
