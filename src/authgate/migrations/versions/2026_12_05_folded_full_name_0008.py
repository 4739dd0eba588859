"""The admin search compares names case-folded in Python, the same on SQLite and PostgreSQL.

Until now it compared `lower(full_name)`: ASCII-only on SQLite, collation-dependent on PostgreSQL,
so "émile" found "Émile Zola" on one engine and not on the other. The folded name is a column
kept by the application; this revision adds it, fills it for existing accounts in batches, and
moves the prefix index onto it (built CONCURRENTLY on PostgreSQL, so sign-ups keep writing).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 02:40:00.000000
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_user_account_name_prefix"
BATCH = 1000
users = sa.table(
    "user_account",
    sa.column("id", sa.Uuid()),
    sa.column("full_name", sa.String()),
    sa.column("full_name_folded", sa.String()),
)


def _postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _fold(value: str) -> str:
    # As `authgate.users.models.fold_name` was when this revision was written.
    return unicodedata.normalize("NFKC", value).casefold()


def _backfill() -> None:
    bind = op.get_bind()
    fill = (
        users.update()
        .where(users.c.id == sa.bindparam("key"))
        .values(full_name_folded=sa.bindparam("folded"))
    )
    after = None
    while True:
        page = sa.select(users.c.id, users.c.full_name).where(users.c.full_name.is_not(None))
        if after is not None:
            page = page.where(users.c.id > after)
        rows = bind.execute(page.order_by(users.c.id).limit(BATCH)).all()
        if not rows:
            return
        bind.execute(fill, [{"key": key, "folded": _fold(name)} for key, name in rows])
        after = rows[-1][0]


def upgrade() -> None:
    op.drop_index(INDEX, table_name="user_account")
    op.add_column("user_account", sa.Column("full_name_folded", sa.String(length=800), nullable=True))
    _backfill()
    if _postgresql():
        with op.get_context().autocommit_block():
            op.create_index(
                INDEX,
                "user_account",
                ["full_name_folded"],
                postgresql_ops={"full_name_folded": "text_pattern_ops"},
                postgresql_concurrently=True,
            )
        return
    op.create_index(INDEX, "user_account", ["full_name_folded"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="user_account")
    op.drop_column("user_account", "full_name_folded")
    if _postgresql():
        op.execute(f"CREATE INDEX {INDEX} ON user_account (lower(full_name) text_pattern_ops)")
    else:
        op.create_index(INDEX, "user_account", [sa.text("lower(full_name)")])
