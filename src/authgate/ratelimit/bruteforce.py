"""Per-account brute-force protection (Keycloak style): a growing, capped wait after N failures.

State lives in the database (`login_throttle`), not in Redis: it is shared by every API process
in both runtime shapes, survives a Redis flush or restart, and costs one small write per
*failed* attempt, in the short transaction that already records the failure. Successful
sign-ins pay two indexed reads (before the hash and after it) and, only when a row exists, a delete.

The key, hashed, is the account for a known one (its email and its username share one count) and
the normalised identifier (email or username) for an unknown one, so an unknown address builds
up the same wait as a real one and the 429 reveals nothing.

Lock-out abuse: an attacker who knows an email could otherwise keep its owner out by failing
once every time the wait ends. Two limits on that:

* the wait is capped (`lockout_max_wait`, default 15 min), and attempts refused during the
  wait are not counted, so nobody can push it further out;
* the wait holds at both ends of an attempt: before the password is checked, and again when the
  answer is given. Attempts sent in parallel all pass the first check (none has failed yet), so
  the second one decides: an attempt answered while the account waits gets the same 429 whether
  its password was right or wrong, and is not counted. A burst therefore learns the answers of
  at most `failed_logins_before_delay` attempts, like the same attempts sent one by one;
* with `lockout_spares_known_ips` (off by default), a client at an IP address from which the
  account has signed in before (it has a login session from there) is not held by the wait: its
  password is checked as usual (its own failures still count, and the per-IP request limits
  still apply). So a real user on a network they use is never locked out by failures coming
  from elsewhere.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

from sqlalchemy import delete, exists, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.config import RateLimits
from authgate.db import utcnow
from authgate.errors import RateLimitedError
from authgate.logging import get_request_context
from authgate.ratelimit.models import LoginThrottle
from authgate.sessions.models import LoginSession
from authgate.users.repository import normalize_email


class AccountThrottledError(RateLimitedError):
    """Too many failed sign-ins for this identifier; the same answer for known and unknown accounts."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after, "Too many failed sign-in attempts; retry later")


def login_identifier(email: str | None, username: str | None) -> str:
    """The account key an attempt counts against: the normalised email or username."""
    if email is not None:
        return "email:" + normalize_email(email)
    return "username:" + (username or "").strip().lower()


def account_identifier(user_id: uuid.UUID) -> str:
    """The key of a known account: its email and its username share one count."""
    return f"account:{user_id}"


def mfa_identifier(user_id: uuid.UUID) -> str:
    return f"mfa:{user_id}"


def _hash(identifier: str) -> str:
    return hashlib.sha256(identifier.encode()).hexdigest()


class LoginGuard:
    def __init__(self, config: RateLimits) -> None:
        self._config = config

    def wait_for(self, failures: int) -> timedelta:
        """The wait after `failures` consecutive failures: none below N, then doubling up to the cap."""
        over = failures - self._config.failed_logins_before_delay
        if over < 0:
            return timedelta(0)
        wait = self._config.lockout_base_wait * (1 << min(over, 30))
        return min(wait, self._config.lockout_max_wait)

    async def check(self, session: AsyncSession, identifier: str, user_id: uuid.UUID | None) -> bool:
        """Raise 429 while the identifier waits (with `lockout_spares_known_ips`, not at an IP the
        account signed in from). Called before the password is checked and again, once it proved
        right, before the success is answered.

        Returns whether the identifier has failures on record (a success then `reset`s them).
        """
        row = await session.get(LoginThrottle, _hash(identifier), populate_existing=True)
        if row is None:
            return False
        if waiting := await self._seconds_to_wait(session, row, user_id):
            raise AccountThrottledError(retry_after=waiting)
        return True

    async def _seconds_to_wait(
        self, session: AsyncSession, row: LoginThrottle, user_id: uuid.UUID | None
    ) -> int:
        """What is left of the row's wait (0: none), unless the client is at an address the account knows."""
        remaining = (row.locked_until - utcnow()).total_seconds() if row.locked_until else 0
        if remaining <= 0:
            return 0
        if (
            self._config.lockout_spares_known_ips
            and user_id is not None
            and await self._is_known_ip(session, user_id)
        ):
            return 0
        return int(remaining) + 1

    async def _is_known_ip(self, session: AsyncSession, user_id: uuid.UUID) -> bool:
        ip = get_request_context().ip
        if ip is None:
            return False
        found = await session.scalar(
            select(exists().where(LoginSession.user_id == user_id, LoginSession.ip == ip))
        )
        return bool(found)

    async def record_failure(
        self, session: AsyncSession, identifier: str, user_id: uuid.UUID | None = None
    ) -> int | None:
        """Count one failure (call in its own transaction: it must survive the failed request).

        When the identifier is already waiting (parallel attempts failed first), the failure is
        not counted and the seconds left are returned: the attempt is answered 429, like one that
        arrived during the wait.
        """
        key, now = _hash(identifier), utcnow()
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        upsert = insert(LoginThrottle).values(key_hash=key, failures=0, last_failure_at=now)
        # DO UPDATE (a no-op), not DO NOTHING: on PostgreSQL it locks an existing row at once, so
        # the purge of idle throttles cannot delete it between this statement and the next.
        await session.execute(
            upsert.on_conflict_do_update(
                index_elements=["key_hash"], set_={"key_hash": upsert.excluded.key_hash}
            )
        )
        # Row lock on PostgreSQL (SQLite's write lock does the same): parallel failures all count.
        row = await session.scalar(
            select(LoginThrottle)
            .where(LoginThrottle.key_hash == key)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert row is not None  # noqa: S101 - inserted just above
        if waiting := await self._seconds_to_wait(session, row, user_id):
            return waiting
        if now - row.last_failure_at > self._config.lockout_failure_reset:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        wait = self.wait_for(row.failures)
        row.locked_until = now + wait if wait else None
        await session.flush()
        return None

    async def reset(self, session: AsyncSession, identifier: str) -> None:
        """A success clears the count."""
        await session.execute(delete(LoginThrottle).where(LoginThrottle.key_hash == _hash(identifier)))
