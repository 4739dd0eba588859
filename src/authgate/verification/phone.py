"""Phone verification: 6-digit SMS codes (stored as HMACs), attempts, resend cooldown and daily caps."""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.audit.service import Actor, AuditLog
from authgate.config import Settings
from authgate.db import new_id, utcnow
from authgate.errors import RateLimitedError
from authgate.outbox.service import Outbox
from authgate.users.errors import PhoneTakenError
from authgate.users.models import User
from authgate.users.repository import UserRepository
from authgate.verification.errors import CodeInvalidError
from authgate.verification.models import PhoneVerification
from authgate.verification.notifications import SecurityNotifier, user_locale

DAY = timedelta(days=1)


class PhoneVerificationService:
    def __init__(
        self, session: AsyncSession, factory: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self._db, self._factory, self._settings = session, factory, settings
        self._config = settings.verification
        self._users = UserRepository(session)

    def _code_hash(self, row_id: uuid.UUID, code: str) -> str:
        # Keyed with the secret and the row: a leaked table does not give a 10^6 lookup table.
        key = self._settings.secret().encode()
        return hmac.new(key, f"phone-code:{row_id}:{code}".encode(), hashlib.sha256).hexdigest()

    async def _phone_taken(self, phone: str, user_id: uuid.UUID) -> bool:
        stmt = select(User.id).where(
            User.phone == phone, User.phone_verified.is_(True), User.deleted_at.is_(None), User.id != user_id
        )
        return await self._db.scalar(stmt.limit(1)) is not None

    async def request(self, user: User, phone: str) -> None:
        """Text a code to `phone` for `user`; 409 when another account verified it, 429 on limits."""
        # Serialise requests of one user (PostgreSQL row lock; SQLite's write lock does the same),
        # so the cooldown and the caps cannot be raced.
        await self._db.execute(select(User.id).where(User.id == user.id).with_for_update())
        if await self._phone_taken(phone, user.id):
            raise PhoneTakenError()
        now = utcnow()
        await self._check_limits(user.id, phone, now)
        await self._db.execute(
            update(PhoneVerification)
            .where(PhoneVerification.user_id == user.id, PhoneVerification.used_at.is_(None))
            .values(used_at=now)  # a new code replaces the previous ones
            .execution_options(synchronize_session=False)
        )
        code = f"{secrets.randbelow(1_000_000):06d}"
        row_id = new_id()
        self._db.add(
            PhoneVerification(
                id=row_id,
                user_id=user.id,
                phone=phone,
                code_hash=self._code_hash(row_id, code),
                created_at=now,
                expires_at=now + self._config.phone_code_ttl,
            )
        )
        await self._db.flush()
        await Outbox(self._db).enqueue(
            channel="sms",
            template="phone_verification",
            to=phone,
            locale=await user_locale(self._db, user),
            context={"code": code, "expires_minutes": int(self._config.phone_code_ttl.total_seconds() // 60)},
        )

    async def _check_limits(self, user_id: uuid.UUID, phone: str, now: datetime) -> None:
        latest = await self._db.scalar(
            select(func.max(PhoneVerification.created_at)).where(PhoneVerification.user_id == user_id)
        )
        if latest is not None and now - latest < self._config.phone_resend_cooldown:
            wait = self._config.phone_resend_cooldown - (now - latest)
            raise RateLimitedError(math.ceil(wait.total_seconds()), "Wait before asking for another code")
        for condition, cap in (
            (PhoneVerification.phone == phone, self._config.phone_daily_cap_per_number),
            (PhoneVerification.user_id == user_id, self._config.phone_daily_cap_per_user),
        ):
            await self._check_cap(condition, cap, now)

    async def _check_cap(self, condition: ColumnElement[bool], cap: int, now: datetime) -> None:
        stmt = select(func.count(), func.min(PhoneVerification.created_at)).where(
            condition, PhoneVerification.created_at > now - DAY
        )
        count, oldest = (await self._db.execute(stmt)).one()
        if count >= cap:
            wait = (oldest + DAY - now).total_seconds() if oldest is not None else DAY.total_seconds()
            raise RateLimitedError(math.ceil(wait), "Daily limit of verification codes reached")

    async def confirm(self, user: User, phone: str, code: str, actor: Actor | None = None) -> User:
        """Check a code; five wrong tries (counted even though the request fails) end the code.
        `actor`: the API key that called, if one did (the user by default)."""
        user_id = user.id
        now = utcnow()
        row = await self._db.scalar(
            select(PhoneVerification)
            .where(
                PhoneVerification.user_id == user_id,
                PhoneVerification.phone == phone,
                PhoneVerification.used_at.is_(None),
                PhoneVerification.expires_at > now,
                PhoneVerification.attempts < self._config.phone_code_attempts,
            )
            .order_by(PhoneVerification.created_at.desc())
            .limit(1)
        )
        if row is None:
            raise CodeInvalidError()
        row_id, expected = row.id, row.code_hash
        # The attempt is counted in its own committed transaction *before* the comparison, so it
        # survives this request failing and parallel guesses cannot exceed the limit. End ours
        # first: on SQLite it holds the database write lock.
        await self._db.rollback()
        if not await self._take_attempt(row_id, now):
            raise CodeInvalidError()
        if not hmac.compare_digest(expected, self._code_hash(row_id, code)):
            raise CodeInvalidError()
        return await self._apply(user_id, row_id, phone, actor or Actor.user(user_id))

    async def _take_attempt(self, row_id: uuid.UUID, now: datetime) -> bool:
        async with self._factory() as own, own.begin():
            result = await own.execute(
                update(PhoneVerification)
                .where(
                    PhoneVerification.id == row_id,
                    PhoneVerification.used_at.is_(None),
                    PhoneVerification.expires_at > now,
                    PhoneVerification.attempts < self._config.phone_code_attempts,
                )
                .values(attempts=PhoneVerification.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    async def _apply(self, user_id: uuid.UUID, row_id: uuid.UUID, phone: str, actor: Actor) -> User:
        used = await self._db.execute(
            update(PhoneVerification)
            .where(PhoneVerification.id == row_id, PhoneVerification.used_at.is_(None))
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        user = await self._users.get(user_id)
        if used.rowcount != 1 or user is None:  # type: ignore[attr-defined]
            raise CodeInvalidError()
        if await self._phone_taken(phone, user_id):
            raise PhoneTakenError()
        changed = user.phone != phone
        user.phone, user.phone_verified = phone, True
        try:
            await self._db.flush()
        except IntegrityError as exc:  # the partial unique index: another account won a race
            raise PhoneTakenError() from exc
        await AuditLog(self._db).record(
            "phone.verified",
            actor=actor,
            target_type="user",
            target_id=user_id,
            data={"phone": phone},
        )
        if changed:
            await SecurityNotifier(self._db, self._settings).phone_changed(user)
        return user
