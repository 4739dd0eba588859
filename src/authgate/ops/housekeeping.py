"""Housekeeping: delete what ended longer ago than its retention (`AUTHGATE_RETENTION__<NAME>`).

Sessions, one-time tokens and delivered messages end on their own; their rows are kept for a
while (the session list, the outbox admin view, an investigation) and then purged, so tables do
not grow without bound and no stale link lingers in a message body. Soft-deleted accounts are
erased for good once `DELETED_ACCOUNTS` has passed: the row and everything that cascades from it
(profile, settings, sessions, API keys, memberships, MFA, devices), the workspaces it owned and
had deleted, and the avatar file. The audit log is never purged: its events keep what they
recorded (ids, and for some an address, a number, an IP), and it gains one `user.purged` per
erased account. An account that still owns a live workspace is kept, and counted, until an
administrator (`workspaces:admin`) hands the workspace over to one of its active members.

Runs from `authgate purge` (`--dry-run` only counts), and every `RETENTION__INTERVAL` in `authgate
worker` and in the in-process courier of `authgate serve`. Each batch finds its rows in a read
transaction and deletes them by primary key, the condition checked again, in a short write
transaction: on SQLite no request waits behind a scan, and purges running side by side (several
workers) neither delete a row that no longer qualifies nor record an erasure twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Select, Table, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.audit.service import Actor, AuditLog
from authgate.config import RetentionSettings, Settings
from authgate.db import utcnow, write_intent
from authgate.mfa.models import MfaChallenge
from authgate.outbox.models import MessageStatus, OutboxMessage
from authgate.profiles.models import UserProfile
from authgate.profiles.service import avatar_storage
from authgate.ratelimit.models import LoginThrottle
from authgate.sessions.models import LoginSession, RefreshToken
from authgate.storage.local import Storage
from authgate.users.models import User
from authgate.verification.models import PhoneVerification, VerificationToken
from authgate.workspaces.models import Workspace, WorkspaceInvitation

log = structlog.get_logger("authgate.housekeeping")
BATCH = 500
ACCOUNT_BATCH = 50  # each erased account appends an audit event, which waits for the chain's head
FINISHED_MESSAGES: tuple[MessageStatus, ...] = ("sent", "dead", "suppressed")

Where = Callable[[datetime, datetime], ColumnElement[bool]]  # (cutoff, now) -> the rows to delete
# (session, keys, where) -> (rows removed, storage names to delete once the transaction committed)
Remove = Callable[[AsyncSession, list[Any], ColumnElement[bool]], Awaitable[tuple[int, list[str]]]]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # the key in the report
    table: Table
    retention: str  # the RetentionSettings field that sets the cutoff
    where: Where


def _ended_session(cutoff: datetime) -> ColumnElement[bool]:
    return or_(LoginSession.expires_at < cutoff, LoginSession.revoked_at < cutoff)


def _table(model: Any) -> Table:
    table: Table = model.__table__
    return table


# In order: refresh tokens before their sessions (no reliance on ON DELETE CASCADE).
RULES: tuple[Rule, ...] = (
    Rule(
        "refresh_tokens",
        _table(RefreshToken),
        "ended_sessions",
        lambda cutoff, _now: RefreshToken.session_id.in_(
            select(LoginSession.id).where(_ended_session(cutoff))
        ),
    ),
    Rule("sessions", _table(LoginSession), "ended_sessions", lambda cutoff, _now: _ended_session(cutoff)),
    Rule(
        "login_throttles",
        _table(LoginThrottle),
        "ended_sessions",
        lambda cutoff, now: (
            (LoginThrottle.last_failure_at < cutoff)
            & or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now)
        ),
    ),
    Rule(
        "verification_tokens",
        _table(VerificationToken),
        "spent_tokens",
        lambda cutoff, _now: or_(VerificationToken.expires_at < cutoff, VerificationToken.used_at < cutoff),
    ),
    Rule(
        "phone_codes",
        _table(PhoneVerification),
        "spent_tokens",
        lambda cutoff, _now: or_(PhoneVerification.expires_at < cutoff, PhoneVerification.used_at < cutoff),
    ),
    Rule(
        "mfa_challenges",
        _table(MfaChallenge),
        "spent_tokens",
        lambda cutoff, _now: or_(MfaChallenge.expires_at < cutoff, MfaChallenge.used_at < cutoff),
    ),
    Rule(
        "invitations",
        _table(WorkspaceInvitation),
        "spent_tokens",
        lambda cutoff, _now: or_(
            WorkspaceInvitation.expires_at < cutoff,
            WorkspaceInvitation.accepted_at < cutoff,
            WorkspaceInvitation.revoked_at < cutoff,
        ),
    ),
    Rule(
        "messages",
        _table(OutboxMessage),
        "finished_messages",
        lambda cutoff, _now: (
            OutboxMessage.status.in_(FINISHED_MESSAGES) & (OutboxMessage.updated_at < cutoff)
        ),
    ),
)


def scan(key: ColumnElement[Any], where: ColumnElement[bool], size: int) -> Select[tuple[Any]]:
    """The read that finds a batch; indexes on the columns of `where` keep it off a full scan."""
    return select(key).where(where).limit(size)


def _owns_a_live_workspace() -> ColumnElement[bool]:
    return select(Workspace.id).where(Workspace.owner_id == User.id, Workspace.deleted_at.is_(None)).exists()


class Housekeeper:
    def __init__(
        self, factory: async_sessionmaker[AsyncSession], retention: RetentionSettings, storage: Storage
    ) -> None:
        self._factory, self._retention, self._storage = factory, retention, storage

    @classmethod
    def from_settings(cls, factory: async_sessionmaker[AsyncSession], settings: Settings) -> Housekeeper:
        return cls(factory, settings.retention, avatar_storage(settings))

    def _cutoff(self, retention: str, now: datetime) -> datetime:
        keep: timedelta = getattr(self._retention, retention)
        return now - keep

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        with write_intent():  # SQLite: take the write lock up front, queue with the other writers
            async with self._factory() as session, session.begin():
                yield session

    async def purge(
        self, *, dry_run: bool = False, now: datetime | None = None, stop: asyncio.Event | None = None
    ) -> dict[str, int]:
        """Delete (or with `dry_run`, count) what is past its retention; returns rows per kind.

        `accounts_kept` counts deleted accounts past their retention that still own a live
        workspace. With `stop`, a purge that is asked to stop ends after the batch in hand.
        """
        now = now or utcnow()
        stop = stop or asyncio.Event()
        report: dict[str, int] = {}
        for rule in RULES:
            where = rule.where(self._cutoff(rule.retention, now), now)
            (key,) = rule.table.primary_key.columns
            if dry_run:
                report[rule.name] = await self._count(rule.table, where)
            else:
                report[rule.name] = await self._batches(
                    key, where, BATCH, stop, self._delete_rows(rule.table, key)
                )
        due = User.deleted_at < self._cutoff("deleted_accounts", now)
        erasable = due & ~_owns_a_live_workspace()
        if dry_run:
            report["accounts"] = await self._count(_table(User), erasable)
        else:
            report["accounts"] = await self._batches(
                _table(User).c.id, erasable, ACCOUNT_BATCH, stop, self._erase
            )
        report["accounts_kept"] = await self._count(_table(User), due & _owns_a_live_workspace())
        if report["accounts_kept"]:
            log.warning("deleted_accounts_kept", count=report["accounts_kept"], reason="they own a workspace")
        if not dry_run and any(report[k] for k in report if k != "accounts_kept"):
            log.info("purged", **report)
        return report

    async def _count(self, table: Table, where: ColumnElement[bool]) -> int:
        async with self._factory() as session:
            return int(await session.scalar(select(func.count()).select_from(table).where(where)) or 0)

    async def _batches(
        self,
        key: ColumnElement[Any],
        where: ColumnElement[bool],
        size: int,
        stop: asyncio.Event,
        remove: Remove,
    ) -> int:
        """Find up to `size` keys (a read), remove them (a write that checks `where` again); repeat.

        Files named by `remove` are deleted once its transaction has committed: a rolled-back
        erasure keeps its avatar, and a file that cannot be deleted does not stop the others.
        """
        total = 0
        while not stop.is_set():
            async with self._factory() as session:  # a plain read: no write lock while it scans
                keys = list((await session.scalars(scan(key, where, size))).all())
            if not keys:
                break
            async with self._transaction() as session:
                removed, files = await remove(session, keys, where)
            total += removed
            for name in files:
                try:
                    await self._storage.delete(name)
                except Exception:
                    log.warning("purged_file_not_deleted", name=name, exc_info=True)
            if len(keys) < size:
                break
        return total

    @staticmethod
    def _delete_rows(table: Table, key: ColumnElement[Any]) -> Remove:
        async def remove(
            session: AsyncSession, keys: list[Any], where: ColumnElement[bool]
        ) -> tuple[int, list[str]]:
            result = await session.execute(delete(table).where(key.in_(keys), where))
            return int(result.rowcount), []  # type: ignore[attr-defined]

        return remove

    @staticmethod
    async def _erase(
        session: AsyncSession, ids: list[Any], where: ColumnElement[bool]
    ) -> tuple[int, list[str]]:
        """Erase accounts that still qualify (not restored meanwhile, not erased by another worker)."""
        users = _table(User)
        # Which of them still qualify, locked until the commit (PostgreSQL; SQLite's write lock is
        # held already): an account restored since the read keeps its rows, deleted workspaces
        # included, and a worker erasing the same accounts finds them gone once it gets the lock.
        erased = list(
            (
                await session.scalars(select(users.c.id).where(users.c.id.in_(ids), where).with_for_update())
            ).all()
        )
        if not erased:
            return 0, []
        profiles = select(UserProfile.user_id, UserProfile.avatar_key).where(UserProfile.user_id.in_(erased))
        avatars = dict((await session.execute(profiles)).all())
        # Workspaces the account owned and deleted: their members and invitations go with them.
        await session.execute(
            delete(Workspace).where(Workspace.owner_id.in_(erased), Workspace.deleted_at.is_not(None))
        )
        await session.execute(delete(users).where(users.c.id.in_(erased)))
        audit = AuditLog(session)
        for user_id in erased:
            await audit.record("user.purged", actor=Actor.system(), target_type="user", target_id=user_id)
        return len(erased), [name for user_id in erased if (name := avatars.get(user_id))]

    async def run(self, stop: asyncio.Event) -> None:
        """Purge now and every `interval` until `stop` is set; a failed round is logged and retried."""
        interval = self._retention.interval.total_seconds()
        while not stop.is_set():
            try:
                await self.purge(stop=stop)
            except Exception:  # the next round tries again; housekeeping never takes the process down
                log.exception("purge_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
