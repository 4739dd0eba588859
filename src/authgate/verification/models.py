from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from authgate.db import Base, new_id, utcnow


class VerificationToken(Base):
    """A single-use emailed token (email verification, password reset), stored only as its SHA-256."""

    __tablename__ = "verification_token"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # None for the decoy written when a reset is asked for an address without an account
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(32))  # email_verification | password_reset
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(320))  # normalised address the token was sent to
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class PhoneVerification(Base):
    """A 6-digit code sent by SMS, stored as an HMAC; rows also count toward cooldown and daily caps."""

    __tablename__ = "phone_verification"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    phone: Mapped[str] = mapped_column(String(20), index=True)  # E.164
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class KnownDevice(Base):
    """A (user agent, IP network) pair a user signed in from; a new one triggers a security alert."""

    __tablename__ = "known_device"
    __table_args__ = (UniqueConstraint("user_id", "fingerprint"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256(user agent + network)
    user_agent: Mapped[str | None] = mapped_column(String(512))
    network: Mapped[str | None] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
