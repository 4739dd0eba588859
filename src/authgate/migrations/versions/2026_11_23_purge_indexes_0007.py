"""Indexes for the purge's scans: ended sessions, delivered messages, deleted accounts.

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


def upgrade() -> None:
    with op.batch_alter_table("login_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_session_expires_at"), ["expires_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_login_session_revoked_at"), ["revoked_at"], unique=False)

    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_message_finished", ["status", "updated_at"], unique=False)

    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.create_index(
            "ix_user_account_deleted_at",
            ["deleted_at"],
            unique=False,
            postgresql_where=DELETED,
            sqlite_where=DELETED,
        )


def downgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_index("ix_user_account_deleted_at")

    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_message_finished")

    with op.batch_alter_table("login_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_session_revoked_at"))
        batch_op.drop_index(batch_op.f("ix_login_session_expires_at"))
