"""Verification and courier: single-use tokens, phone codes, known devices, verified-phone uniqueness.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 11:03:47.115973
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import authgate.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "known_device",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("network", sa.String(length=64), nullable=True),
        sa.Column("first_seen_at", authgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", authgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_known_device_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_known_device")),
        sa.UniqueConstraint("user_id", "fingerprint", name=op.f("uq_known_device_user_id")),
    )
    with op.batch_alter_table("known_device", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_known_device_user_id"), ["user_id"], unique=False)

    op.create_table(
        "phone_verification",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", authgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", authgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", authgate.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_phone_verification_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_phone_verification")),
    )
    with op.batch_alter_table("phone_verification", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_phone_verification_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_verification_phone"), ["phone"], unique=False)
        batch_op.create_index(batch_op.f("ix_phone_verification_user_id"), ["user_id"], unique=False)

    op.create_table(
        "verification_token",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("created_at", authgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", authgate.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", authgate.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_verification_token_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verification_token")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_verification_token_token_hash")),
    )
    with op.batch_alter_table("verification_token", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_verification_token_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.create_index(
            "uq_user_account_verified_phone",
            ["phone"],
            unique=True,
            postgresql_where=sa.text("phone_verified AND deleted_at IS NULL"),
            sqlite_where=sa.text("phone_verified = 1 AND deleted_at IS NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("user_account", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_user_account_verified_phone",
            postgresql_where=sa.text("phone_verified AND deleted_at IS NULL"),
            sqlite_where=sa.text("phone_verified = 1 AND deleted_at IS NULL"),
        )

    with op.batch_alter_table("verification_token", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verification_token_user_id"))

    op.drop_table("verification_token")
    with op.batch_alter_table("phone_verification", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_phone_verification_user_id"))
        batch_op.drop_index(batch_op.f("ix_phone_verification_phone"))
        batch_op.drop_index(batch_op.f("ix_phone_verification_created_at"))

    op.drop_table("phone_verification")
    with op.batch_alter_table("known_device", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_known_device_user_id"))

    op.drop_table("known_device")
