"""Housekeeping: delete what ended longer ago than its retention (`AUTHGATE_RETENTION__<NAME>`).

Sessions, one-time tokens and delivered messages end on their own; their rows are kept for a
while (the session list, the outbox admin view, an investigation) and then purged, so tables do
not grow without bound and no stale link lingers in a message body. Soft-deleted accounts are
erased for good once `DELETED_ACCOUNTS` has passed: the row and everything that cascades from it
(profile, settings, sessions, API keys, memberships, MFA, devices), and the avatar file. The
audit trail keeps its events (they name the account by id) and gains one `user.purged` per
erased account. An account that still owns a workspace is kept until ownership is transferred.

Runs from `authgate purge` (`--dry-run` only counts), and every `RETENTION__INTERVAL` in `authgate
worker` and in the in-process courier of `authgate serve`. Deletes go in batches of `BATCH` rows,
one short write transaction each, so requests never wait long behind a purge on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Table, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.audit.service import Actor, AuditLog
from authgate.config import RetentionSettings, Settings
from authgate.db import utcnow, write_intent
from authgate.mfa.models import MfaChallenge
from authgate.outbox.models import OutboxMessage
from authgate.profiles.models import UserProfile
from authgate.ratelimit.models import LoginThrottle
from authgate.sessions.models import LoginSession, RefreshToken
from authgate.storage.local import LocalStorage, Storage
from authgate.users.models import User
from authgate.verification.models import PhoneVerification, VerificationToken
from authgate.workspaces.models import Workspace, WorkspaceInvitation

log = structlog.get_logger("authgate.housekeeping")
BATCH = 500
FINISHED_MESSAGES = ("sent", "dead", "suppressed")

Where = Callable[[datetime, datetime], ColumnElement[bool]]  # (cutoff, now) -> the rows to delete


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


def _owns_a_workspace() -> ColumnElement[bool]:
    return select(Workspace.id).where(Workspace.owner_id == User.id).exists()


class Housekeeper:
    def __init__(
        self, factory: async_sessionmaker[AsyncSession], retention: RetentionSettings, storage: Storage
    ) -> None:
        self._factory, self._retention, self._storage = factory, retention, storage

    @classmethod
    def from_settings(cls, factory: async_sessionmaker[AsyncSession], settings: Settings) -> Housekeeper:
        return cls(factory, settings.retention, LocalStorage(settings.upload_dir / "avatars"))

    def _cutoff(self, retention: str, now: datetime) -> datetime:
        keep: timedelta = getattr(self._retention, retention)
        return now - keep

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        with write_intent():  # SQLite: take the write lock up front, queue with the other writers
            async with self._factory() as session, session.begin():
                yield session

    async def purge(self, *, dry_run: bool = False, now: datetime | None = None) -> dict[str, int]:
        """Delete (or with `dry_run`, count) what is past its retention; returns rows per kind.

        `accounts_kept` counts deleted accounts past their retention that still own a workspace.
        """
        now = now or utcnow()
        report: dict[str, int] = {}
        for rule in RULES:
            where = rule.where(self._cutoff(rule.retention, now), now)
            report[rule.name] = await (
                self._count(rule.table, where) if dry_run else self._delete(rule, where)
            )
        due = User.deleted_at < self._cutoff("deleted_accounts", now)
        report["accounts"] = await (
            self._count(_table(User), due & ~_owns_a_workspace()) if dry_run else self._erase_accounts(due)
        )
        report["accounts_kept"] = await self._count(_table(User), due & _owns_a_workspace())
        if report["accounts_kept"]:
            log.warning("deleted_accounts_kept", count=report["accounts_kept"], reason="they own a workspace")
        if not dry_run and any(report[k] for k in report if k != "accounts_kept"):
            log.info("purged", **report)
        return report

    async def _count(self, table: Table, where: ColumnElement[bool]) -> int:
        async with self._factory() as session:
            return int(await session.scalar(select(func.count()).select_from(table).where(where)) or 0)

    async def _delete(self, rule: Rule, where: ColumnElement[bool]) -> int:
        (key,) = rule.table.primary_key.columns
        batch = select(key).where(where).limit(BATCH).scalar_subquery()
        total = 0
        while True:
            async with self._transaction() as session:
                result = await session.execute(delete(rule.table).where(key.in_(batch)))
            deleted = int(result.rowcount)  # type: ignore[attr-defined]
            total += deleted
            if deleted < BATCH:
                return total

    async def _erase_accounts(self, due: ColumnElement[bool]) -> int:
        total = 0
        while True:
            avatars: list[str] = []
            async with self._transaction() as session:
                rows = (
                    await session.execute(
                        select(User.id, UserProfile.avatar_key)
                        .outerjoin(UserProfile, UserProfile.user_id == User.id)
                        .where(due & ~_owns_a_workspace())
                        .limit(BATCH)
                    )
                ).all()
                ids: list[uuid.UUID] = [row.id for row in rows]
                if ids:
                    await session.execute(delete(User).where(User.id.in_(ids)))
                    audit = AuditLog(session)
                    for user_id in ids:
                        await audit.record(
                            "user.purged", actor=Actor.system(), target_type="user", target_id=user_id
                        )
                avatars = [row.avatar_key for row in rows if row.avatar_key]
            # Files go only once the rows are gone for good: a rolled-back erase keeps its avatar.
            for name in avatars:
                await self._storage.delete(name)
            total += len(ids)
            if len(ids) < BATCH:
                return total

    async def run(self, stop: asyncio.Event) -> None:
        """Purge now and every `interval` until `stop` is set; a failed round is logged and retried."""
        interval = self._retention.interval.total_seconds()
        while not stop.is_set():
            try:
                await self.purge()
            except Exception:  # the next round tries again; housekeeping never takes the process down
                log.exception("purge_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
