"""Indexes for the purge's scans: ended sessions, delivered messages, deleted accounts.

On PostgreSQL they are built CONCURRENTLY, outside a transaction, so sign-ins and the outbox keep
writing to the tables while the indexes build.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23 17:38:59.319803
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DELETED = sa.text("deleted_at IS NOT NULL")
# (name, table, columns, where)
INDEXES: tuple[tuple[str, str, list[str], sa.TextClause | None], ...] = (
    ("ix_login_session_expires_at", "login_session", ["expires_at"], None),
    ("ix_login_session_revoked_at", "login_session", ["revoked_at"], None),
    ("ix_outbox_message_finished", "outbox_message", ["status", "updated_at"], None),
    ("ix_user_account_deleted_at", "user_account", ["deleted_at"], DELETED),
)


def _postgresql() -> bool:
    return op.get_context().dialect.name == "postgresql"


def upgrade() -> None:
    if _postgresql():
        with op.get_context().autocommit_block():
            for name, table, columns, where in INDEXES:
                op.create_index(
                    name,
                    table,
                    columns,
                    postgresql_where=where,
                    postgresql_concurrently=True,
                    if_not_exists=True,
                )
        return
    for name, table, columns, where in INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False, sqlite_where=where)


def downgrade() -> None:
    if _postgresql():
        with op.get_context().autocommit_block():
            for name, table, _columns, _where in reversed(INDEXES):
                op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        return
    for name, table, _columns, _where in reversed(INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
