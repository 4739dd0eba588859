from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Index, String, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from authgate.db import Base, new_id, utcnow
from authgate.roles.models import Role, user_role


class User(Base):
    __tablename__ = "user_account"  # "user" is reserved in PostgreSQL
    __table_args__ = (
        # A verified phone belongs to one account that is not deleted (SPEC §5).
        Index(
            "uq_user_account_verified_phone",
            "phone",
            unique=True,
            postgresql_where=text("phone_verified AND deleted_at IS NULL"),
            sqlite_where=text("phone_verified = 1 AND deleted_at IS NULL"),
        ),
        # The purge finds deleted accounts past their retention; the few deleted rows only.
        Index(
            "ix_user_account_deleted_at",
            "deleted_at",
            postgresql_where=text("deleted_at IS NOT NULL"),
            sqlite_where=text("deleted_at IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320), unique=True)
    email_verified: Mapped[bool] = mapped_column(default=False)
    username: Mapped[str | None] = mapped_column(String(32), unique=True)  # stored lower-case
    full_name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(20))
    phone_verified: Mapped[bool] = mapped_column(default=False)
    password_hash: Mapped[str | None] = mapped_column(String(255), deferred=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    mfa_enabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]

    roles: Mapped[list[Role]] = relationship(secondary=user_role, lazy="raise", order_by=Role.name)

    @property
    def role_names(self) -> list[str]:
        return [role.name for role in self.roles]

    @property
    def permissions(self) -> frozenset[str]:
        return frozenset(p for role in self.roles for p in role.permissions)


# Admin list (`GET /api/v1/users`): prefix search on `q` and the `is_active` filter, both ordered by id.
# text_pattern_ops lets PostgreSQL use an index for LIKE 'x%' whatever the database collation.
Index(
    "ix_user_account_email_prefix",
    User.email_normalized,
    postgresql_ops={"email_normalized": "text_pattern_ops"},
)
Index("ix_user_account_username_prefix", User.username, postgresql_ops={"username": "text_pattern_ops"})
Index(
    "ix_user_account_name_prefix",
    func.lower(User.full_name).label("full_name_lower"),
    postgresql_ops={"full_name_lower": "text_pattern_ops"},
)
Index("ix_user_account_is_active_id", User.is_active, User.id)
