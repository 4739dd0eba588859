"""Email verification and password recovery: single-use emailed tokens, stored as SHA-256 hashes."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.service import Actor, AuditLog
from authgate.config import Settings
from authgate.db import end_read, utcnow
from authgate.errors import SingleUseTokenInvalidError, WrongPasswordError
from authgate.mfa.service import discard_challenges
from authgate.outbox.service import Outbox
from authgate.ratelimit.service import RateLimiter
from authgate.security.opaque import hash_token, new_token
from authgate.security.passwords import PasswordHasher
from authgate.sessions.service import SessionService
from authgate.users.models import User
from authgate.users.repository import UserRepository, normalize_email
from authgate.users.service import confirm_password
from authgate.verification.models import VerificationToken
from authgate.verification.notifications import SecurityNotifier, locale_of, public_link, user_locale

EMAIL_VERIFICATION = "email_verification"
PASSWORD_RESET = "password_reset"  # noqa: S105 - a token purpose, not a secret
NOBODY = uuid.UUID(int=0)  # an account id that never exists
VERIFY_EMAIL_PATH = "/ui/verify-email"
RESET_PASSWORD_PATH = "/ui/password/reset"  # noqa: S105 - a path
REGISTER_PATH = "/ui/register"


class TokenStore:
    """Issue and consume single-use tokens of one purpose."""

    def __init__(self, session: AsyncSession, purpose: str, ttl: timedelta) -> None:
        self._db, self._purpose, self._ttl = session, purpose, ttl

    async def issue(self, user: User) -> str:
        raw = new_token()
        self._db.add(
            VerificationToken(
                user_id=user.id,
                purpose=self._purpose,
                token_hash=hash_token(raw),
                email=user.email_normalized,
                expires_at=utcnow() + self._ttl,
            )
        )
        await self._db.flush()
        return raw

    async def find(self, raw: str) -> VerificationToken:
        """The live token for `raw`, or `token_invalid` (wrong, expired and used look alike)."""
        row = await self._db.scalar(
            select(VerificationToken).where(
                VerificationToken.token_hash == hash_token(raw),
                VerificationToken.purpose == self._purpose,
                VerificationToken.user_id.is_not(None),
                VerificationToken.used_at.is_(None),
                VerificationToken.expires_at > utcnow(),
            )
        )
        if row is None:
            raise SingleUseTokenInvalidError()
        return row

    async def consume(self, row: VerificationToken) -> None:
        """Mark the token used; a concurrent request that used it first makes this one fail."""
        result = await self._db.execute(
            update(VerificationToken)
            .where(VerificationToken.id == row.id, VerificationToken.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise SingleUseTokenInvalidError()

    async def revoke_all(self, user_id: uuid.UUID) -> None:
        await self._db.execute(
            update(VerificationToken)
            .where(
                VerificationToken.user_id == user_id,
                VerificationToken.purpose == self._purpose,
                VerificationToken.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )


class EmailVerificationService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self._db, self._settings = session, settings
        self._tokens = TokenStore(session, EMAIL_VERIFICATION, settings.verification.email_token_ttl)
        self._users = UserRepository(session)

    async def send(self, user: User) -> None:
        """Email a verification link, unless the address is verified already."""
        if user.email_verified:
            return
        raw = await self._tokens.issue(user)
        ttl_hours = int(self._settings.verification.email_token_ttl.total_seconds() // 3600)
        await Outbox(self._db).enqueue(
            channel="email",
            template="email_verification",
            to=user.email,
            locale=await user_locale(self._db, user),
            context={
                "link": f"{public_link(self._settings, VERIFY_EMAIL_PATH)}?token={raw}",
                "name": user.full_name,
                "expires_hours": ttl_hours,
            },
        )

    async def confirm(self, raw: str) -> User:
        """Verify the address the token was sent to; a token for a since-changed address is invalid
        (read under the row lock, so an address change beside it runs before or after, whole)."""
        row = await self._tokens.find(raw)
        user = await self._users.get(row.user_id, lock=True) if row.user_id else None
        if user is None or user.email_normalized != row.email:
            raise SingleUseTokenInvalidError()
        await self._tokens.consume(row)
        if not user.email_verified:
            user.email_verified = True
            await AuditLog(self._db).record(
                "email.verified",
                actor=Actor.user(user.id),
                target_type="user",
                target_id=user.id,
                data={"email": user.email},
            )
        await self._db.flush()
        return user


async def count_verification_request(limiter: RateLimiter, user_id: uuid.UUID) -> None:
    """`VERIFICATION_PER_ACCOUNT` for a link or code sent to a signed-in account (429 past it)."""
    await limiter.hit("verification_per_account", f"user:{user_id}")


async def count_reset_request(limiter: RateLimiter, email: str) -> None:
    """`VERIFICATION_PER_ACCOUNT` for forgot-password, keyed by the address as typed (normalised),
    account or not: the limit itself reveals nothing."""
    await limiter.hit("verification_per_account", f"email:{normalize_email(email)}")


class PasswordService:
    def __init__(self, session: AsyncSession, settings: Settings, passwords: PasswordHasher) -> None:
        self._db, self._settings, self._passwords = session, settings, passwords
        self._tokens = TokenStore(session, PASSWORD_RESET, settings.verification.password_reset_ttl)
        self._users = UserRepository(session)
        self._sessions = SessionService(
            session, refresh_ttl=settings.refresh_token_ttl, reuse_grace=settings.refresh_reuse_grace
        )

    async def forgot(self, email: str) -> None:
        """Email a reset link to a known, active account; unknown addresses get the same answer.

        Both paths do the same work so the answer takes as long: make and hash a token, look
        the address up, insert a token row and an outbox row. For an unknown address the token
        row has no user (it can never be redeemed) and the message is `suppressed` unless
        `VERIFICATION__NOTIFY_UNKNOWN_RECIPIENTS` is on. Measured in bench/enumeration.py.
        """
        raw = new_token()
        user = await self._users.get_by_email(email)
        known = user is not None and user.is_active and user.deleted_at is None
        config = self._settings.verification
        self._db.add(
            VerificationToken(
                user_id=user.id if known and user is not None else None,
                purpose=PASSWORD_RESET,
                token_hash=hash_token(raw),
                email=normalize_email(email),
                expires_at=utcnow() + config.password_reset_ttl,
            )
        )
        await self._db.flush()
        # Looked up for unknown addresses too (an id no account has): the same work on both paths.
        locale = await locale_of(self._db, user.id if known and user is not None else NOBODY)
        outbox = Outbox(self._db)
        if known and user is not None:
            minutes = int(config.password_reset_ttl.total_seconds() // 60)
            await outbox.enqueue(
                channel="email",
                template="password_reset",
                to=user.email,
                locale=locale,
                context={
                    "link": f"{public_link(self._settings, RESET_PASSWORD_PATH)}?token={raw}",
                    "expires_minutes": minutes,
                },
            )
            return
        await outbox.enqueue(
            channel="email",
            template="password_reset_unknown",
            to=email.strip(),
            context={"register_link": public_link(self._settings, REGISTER_PATH)},
            deliver=config.notify_unknown_recipients,
        )

    async def reset(self, raw: str, new_password: str) -> None:
        """Set a new password with a reset token; every session of the user is revoked."""
        row = await self._tokens.find(raw)
        user = await self._users.get(row.user_id) if row.user_id else None
        if user is None or not user.is_active or user.email_normalized != row.email:
            raise SingleUseTokenInvalidError()
        await end_read(self._db)  # no pooled connection is held while the hash runs
        digest = await self._passwords.hash_new(
            new_password, user_inputs=[user.email, user.username], field="new_password"
        )
        # Checked again under the account's row lock: while the hash ran, an admin may have changed
        # the address the link was sent to, or deactivated the account. The row first, then the
        # tokens, in the order a password change takes them (the other order deadlocks).
        user = await self._users.get(user.id, lock=True)
        if user is None or not user.is_active or user.email_normalized != row.email:
            raise SingleUseTokenInvalidError()
        await self._tokens.consume(row)
        await self._tokens.revoke_all(user.id)  # older reset links die with this one
        user.password_hash = digest
        await discard_challenges(self._db, user.id)  # first: a sign-in finishing now waits, then is revoked
        revoked = await self._sessions.revoke_all(user.id)
        await AuditLog(self._db).record(
            "password.reset",
            actor=Actor.user(user.id),
            target_type="user",
            target_id=user.id,
            data={"sessions_revoked": revoked},
        )
        await SecurityNotifier(self._db, self._settings).password_reset(user)
        await self._db.flush()

    async def change(
        self, user: User, session_id: uuid.UUID | None, current_password: str, new_password: str
    ) -> None:
        """Change the signed-in user's password; the other sessions are revoked, this one stays."""
        stored = await confirm_password(self._db, self._passwords, user.id, current_password)
        digest = await self._passwords.hash_new(
            new_password, user_inputs=[user.email, user.username], field="new_password"
        )
        # Only if the password is still the one just verified: of changes side by side, one wins and
        # the others find their "current" password is not current any more (403).
        swapped = await self._db.execute(
            update(User).where(User.id == user.id, User.password_hash == stored).values(password_hash=digest)
        )
        if swapped.rowcount != 1:  # type: ignore[attr-defined]
            raise WrongPasswordError()
        await self._tokens.revoke_all(user.id)  # a pending reset link must not undo this change
        await discard_challenges(self._db, user.id)  # first: a sign-in finishing now waits, then is revoked
        revoked = await self._sessions.revoke_all(user.id, except_id=session_id)
        await AuditLog(self._db).record(
            "password.changed",
            actor=Actor.user(user.id),
            target_type="user",
            target_id=user.id,
            data={"sessions_revoked": revoked},
        )
        await SecurityNotifier(self._db, self._settings).password_changed(user)
        await self._db.flush()
