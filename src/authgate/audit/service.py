"""The audit log: append-only, hash-chained events written in the caller's transaction."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditChainHead, AuditEvent
from authgate.db import new_id, utcnow
from authgate.logging import get_request_context

GENESIS_HASH = "0" * 64
CHAIN_HEAD_ID = 1
ActorType = Literal["user", "api_key", "system", "anonymous"]


@dataclass(frozen=True, slots=True)
class Actor:
    type: ActorType
    id: str | None = None

    @classmethod
    def user(cls, user_id: uuid.UUID) -> Actor:
        return cls("user", str(user_id))

    @classmethod
    def system(cls) -> Actor:
        return cls("system", None)


ANONYMOUS = Actor("anonymous", None)


def canonical_event(event: AuditEvent) -> bytes:
    """The bytes an event's hash covers: every field but the hashes, in a stable JSON form."""
    body = {
        "id": str(event.id),
        "seq": event.seq,
        "occurred_at": event.occurred_at.isoformat(),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "data": event.data,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical_event(event)).hexdigest()


class AuditLog:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def record(
        self,
        action: str,
        *,
        actor: Actor,
        target_type: str | None = None,
        target_id: uuid.UUID | str | None = None,
        data: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Append one event in the current transaction; ip, user agent and request id come from the request.

        The chain head row is locked (FOR UPDATE on PostgreSQL; SQLite's write lock does the
        same), so concurrent appenders queue instead of forking the chain.
        """
        head = await self._session.scalar(
            select(AuditChainHead)
            .where(AuditChainHead.id == CHAIN_HEAD_ID)
            .with_for_update()
            .execution_options(populate_existing=True)  # the values as locked, not as cached
        )
        if head is None:  # seeded by the initial migration; its absence is a broken database
            raise RuntimeError("audit chain head row is missing; run `authgate migrate upgrade`")
        ctx = get_request_context()
        event = AuditEvent(
            id=new_id(),
            seq=head.last_seq + 1,
            occurred_at=utcnow(),
            actor_type=actor.type,
            actor_id=actor.id,
            action=action,
            target_type=target_type,
            target_id=str(target_id) if target_id is not None else None,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            request_id=ctx.request_id,
            data=data or {},
            prev_hash=head.last_hash,
        )
        event.hash = chain_hash(head.last_hash, event)
        head.last_seq, head.last_hash = event.seq, event.hash
        self._session.add(event)
        await self._session.flush()
        return event


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    broken_event_id: str | None  # the first event whose link does not hold
    reason: str | None


async def verify_chain(session: AsyncSession, *, batch: int = 1000) -> ChainReport:
    """Walk the chain in `seq` order and report the first edited, deleted or inserted event.

    An edited row fails its own hash; a deleted row breaks the next row's `prev_hash` (or the
    sequence); an inserted row fails either. The chain head must match the last event too.
    """
    prev_hash, expected_seq, checked, last_id = GENESIS_HASH, 1, 0, None
    after = 0
    while True:
        rows = (
            await session.scalars(
                select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
            )
        ).all()
        for event in rows:
            problem = None
            if event.seq != expected_seq:
                problem = f"sequence gap: expected {expected_seq}, found {event.seq}"
            elif event.prev_hash != prev_hash:
                problem = "prev_hash does not match the previous event"
            elif event.hash != chain_hash(prev_hash, event):
                problem = "hash does not match the event's content"
            if problem:
                return ChainReport(checked, str(event.id), problem)
            prev_hash, expected_seq, checked, last_id = (
                event.hash,
                expected_seq + 1,
                checked + 1,
                str(event.id),
            )
        if len(rows) < batch:
            break
        after = rows[-1].seq
    head = await session.get(AuditChainHead, CHAIN_HEAD_ID)
    if head is not None and (head.last_seq != expected_seq - 1 or head.last_hash != prev_hash):
        return ChainReport(
            checked, last_id, "the chain head does not match the last event (events removed at the end)"
        )
    return ChainReport(checked, None, None)
