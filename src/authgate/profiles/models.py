from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from authgate.db import Base, utcnow


class UserProfile(Base):
    """Public-facing details of a user, one row per user, created with the account."""

    __tablename__ = "user_profile"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    bio: Mapped[str | None] = mapped_column(String(2000))
    locale: Mapped[str | None] = mapped_column(String(35))
    timezone: Mapped[str | None] = mapped_column(String(64))
    website: Mapped[str | None] = mapped_column(String(2048))
    avatar_key: Mapped[str | None] = mapped_column(String(128))  # storage name of the re-encoded image
    avatar_updated_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class UserSettings(Base):
    """Per-user preferences, one row per user, created with the account."""

    __tablename__ = "user_settings"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    profile_visibility: Mapped[str] = mapped_column(String(16), default="members")
    security_alerts: Mapped[bool] = mapped_column(default=True)
    marketing_emails: Mapped[bool] = mapped_column(default=False)
    theme: Mapped[str] = mapped_column(String(16), default="system")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def new_profile_rows(user_id: uuid.UUID) -> list[UserProfile | UserSettings]:
    """The profile and settings rows every user gets when the account is created."""
    return [UserProfile(user_id=user_id), UserSettings(user_id=user_id)]
