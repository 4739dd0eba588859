"""Reading the audit log: filtered keyset pages, newest first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.pagination import PageParams, fetch_page

# What a user sees of their own history: sign-ins, sign-outs, sessions, password and MFA changes.
SECURITY_ACTION_PREFIXES = ("auth.", "session.", "password.", "mfa.")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    actor_id: str | None = None
    action: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditRepository:
    def __init__(self, session: AsyncSession) -> None:
        self._db = session

    async def page(self, flt: AuditFilter, params: PageParams) -> tuple[list[AuditEvent], str | None]:
        """Events matching every given filter; `since` is inclusive, `until` exclusive."""
        stmt = select(AuditEvent)
        if flt.actor_id is not None:
            stmt = stmt.where(AuditEvent.actor_id == flt.actor_id)
        if flt.action is not None:
            stmt = stmt.where(AuditEvent.action == flt.action)
        if flt.target_id is not None:
            stmt = stmt.where(AuditEvent.target_id == flt.target_id)
        if flt.since is not None:
            stmt = stmt.where(AuditEvent.occurred_at >= flt.since)
        if flt.until is not None:
            stmt = stmt.where(AuditEvent.occurred_at < flt.until)
        return await fetch_page(self._db, stmt, AuditEvent.id, params)

    async def security_page(
        self, user_id: uuid.UUID, params: PageParams
    ) -> tuple[list[AuditEvent], str | None]:
        """The user's own security history: events they caused, or that name their account as the
        target (what their API keys may do of this kind, signing out, names the account)."""
        uid = str(user_id)
        stmt = select(AuditEvent).where(
            or_(
                and_(AuditEvent.actor_type == "user", AuditEvent.actor_id == uid),
                and_(AuditEvent.target_type == "user", AuditEvent.target_id == uid),
            ),
            or_(*(AuditEvent.action.startswith(p, autoescape=True) for p in SECURITY_ACTION_PREFIXES)),
        )
        return await fetch_page(self._db, stmt, AuditEvent.id, params)
