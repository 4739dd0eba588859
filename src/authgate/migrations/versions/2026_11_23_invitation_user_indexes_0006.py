"""Indexes on the invitation columns that point at accounts: erasing an account sets them NULL.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 16:17:05.661765
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("workspace_invitation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_workspace_invitation_accepted_by_id"), ["accepted_by_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_workspace_invitation_invited_by_id"), ["invited_by_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("workspace_invitation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workspace_invitation_invited_by_id"))
        batch_op.drop_index(batch_op.f("ix_workspace_invitation_accepted_by_id"))
