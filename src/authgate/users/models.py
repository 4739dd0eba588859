from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime

from sqlalchemy import Index, String, text
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from authgate.db import Base, new_id, utcnow
from authgate.roles.models import Role, user_role


def fold_name(value: str) -> str:
    """A name in the form the search compares: NFKC, then case-folded ("Straße" and "STRASSE" meet).

    Done here rather than by the database's lower(), which is ASCII-only on SQLite and follows the
    collation on PostgreSQL, so that both engines find the same people.
    """
    return unicodedata.normalize("NFKC", value).casefold()


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
    # The name as the admin search compares it (`fold_name`), kept in step by `_fold_full_name`.
    full_name_folded: Mapped[str | None] = mapped_column(String(800))
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

    @validates("full_name")
    def _fold_full_name(self, _key: str, value: str | None) -> str | None:
        self.full_name_folded = fold_name(value) if value is not None else None
        return value

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
    User.full_name_folded,
    postgresql_ops={"full_name_folded": "text_pattern_ops"},
)
Index("ix_user_account_is_active_id", User.is_active, User.id)
