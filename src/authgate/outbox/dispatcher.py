"""The courier: claims due outbox messages, renders and sends them, retries with backoff, then gives up.

Delivery is at least once. The boundary, precisely: a message is claimed (status `sending`,
`claimed_at` set, attempt counted) and committed *before* the transport is called, and marked
`sent` in a second transaction *after* the transport returned. A worker that dies between the
provider accepting the message and that second commit leaves the row `sending`; once
`OUTBOX__CLAIM_TIMEOUT` has passed another worker claims it again and sends it again, with the
same idempotency key (the SMTP Message-ID, Twilio's `I-Twilio-Idempotency-Token`), so Twilio drops
the duplicate within its idempotency window and mail clients can thread/deduplicate it. Nothing
else can produce a second send: claims are exclusive (`FOR UPDATE SKIP LOCKED` on PostgreSQL, a
conditional UPDATE on SQLite), and results are only written while the claim is still ours.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from authgate.config import OutboxSettings, Settings
from authgate.db import SqliteReadOnly, utcnow, write_intent
from authgate.outbox.models import MessageStatus, OutboxMessage
from authgate.outbox.rendering import TemplateError, render
from authgate.outbox.service import COURIER_WAKEUP, refresh_outbox_gauge
from authgate.outbox.transports import (
    OutgoingMessage,
    PermanentError,
    TransientError,
    Transports,
    transports_from_settings,
)

log = structlog.get_logger("authgate.outbox")
_jitter = secrets.SystemRandom()
MAX_ERROR_LENGTH = 2000


@dataclass(frozen=True, slots=True)
class Claimed:
    message: OutgoingMessage
    row_id: uuid.UUID
    attempts: int
    claimed_at: datetime


def backoff_delay(attempts: int, config: OutboxSettings) -> timedelta:
    """Exponential backoff with jitter: half the capped delay fixed, half random ("equal jitter")."""
    base = config.backoff_base.total_seconds()
    capped = min(config.backoff_max.total_seconds(), base * 2 ** max(0, attempts - 1))
    return timedelta(seconds=capped / 2 + _jitter.uniform(0, capped / 2))


class Dispatcher:
    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        transports: Transports | None = None,
        *,
        quick_reads: SqliteReadOnly | None = None,
    ) -> None:
        self._factory, self._settings, self._config = factory, settings, settings.outbox
        self._transports = transports or transports_from_settings(settings)
        self.delivered = 0  # messages this dispatcher marked sent (for tests and status pages)
        self._quick_reads = quick_reads
        # The dev inbox shows what was sent; elsewhere a finished message keeps no body, because
        # its links and codes (a password reset, a phone code) must not outlive it in the database.
        self._keep_bodies = settings.exposes_dev_tools
        self.wakeup = asyncio.Event()  # set after a commit that queued mail (`attach`)

    def attach(self, factory: async_sessionmaker[AsyncSession]) -> None:
        """Let commits through `factory` that queue mail wake this courier (the in-process shape)."""
        factory.configure(info={**factory.kw.get("info", {}), COURIER_WAKEUP: self.wakeup})

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncSession]:
        """Every courier transaction writes; on SQLite it takes the write lock up front."""
        with write_intent():
            async with self._factory() as session, session.begin():
                yield session

    def _due(self, now: datetime) -> ColumnElement[bool]:
        return or_(
            and_(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now),
            and_(
                OutboxMessage.status == "sending", OutboxMessage.claimed_at < now - self._config.claim_timeout
            ),
        )

    async def claim(self, limit: int | None = None) -> list[Claimed]:
        """Claim up to a batch of due messages for this worker, rendering them on first claim."""
        limit = limit or self._config.batch_size
        now = utcnow()
        claimed: list[Claimed] = []
        async with self._transaction() as session:
            rows = await self._lock_due(session, now, limit)
            for row in rows:
                row.status, row.claimed_at, row.attempts = "sending", now, row.attempts + 1
                if row.text is None:
                    try:
                        rendered = render(row.channel, row.template, row.context, row.locale)
                    except TemplateError as exc:
                        row.status, row.claimed_at, row.last_error = "dead", None, str(exc)[:MAX_ERROR_LENGTH]
                        if not self._keep_bodies:
                            row.context = {}  # a dead message keeps no body (see `_finish`)
                        log.error(
                            "message_dead", message_id=str(row.id), template=row.template, error=str(exc)
                        )
                        continue
                    row.subject, row.text, row.html = rendered.subject, rendered.text, rendered.html
                claimed.append(
                    Claimed(
                        OutgoingMessage(
                            id=str(row.id),
                            channel=row.channel,
                            to=row.recipient,
                            subject=row.subject,
                            text=row.text or "",
                            html=row.html,
                            idempotency_key=row.idempotency_key,
                        ),
                        row.id,
                        row.attempts,
                        now,
                    )
                )
        return claimed

    async def _lock_due(self, session: AsyncSession, now: datetime, limit: int) -> list[OutboxMessage]:
        stmt = (
            select(OutboxMessage).where(self._due(now)).order_by(OutboxMessage.next_attempt_at).limit(limit)
        )
        if session.get_bind().dialect.name == "postgresql":
            # Rows another worker has locked are skipped, not waited for: workers never share a message.
            return list((await session.scalars(stmt.with_for_update(skip_locked=True))).all())
        # SQLite has no row locks; BEGIN IMMEDIATE serialises writers, and the conditional UPDATE
        # below re-checks the row is still due, so a message is claimed by exactly one transaction.
        rows = list((await session.scalars(stmt)).all())
        mine: list[OutboxMessage] = []
        for row in rows:
            result = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == row.id, self._due(now))
                .values(claimed_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                mine.append(row)
        return mine

    async def deliver(self, item: Claimed) -> MessageStatus:
        """Send one claimed message and record the outcome; returns the new status."""
        transport = self._transports.for_channel(item.message.channel)
        try:
            provider_id = await transport.send(item.message)
        except PermanentError as exc:
            return await self._finish(item, "dead", error=str(exc))
        except TransientError as exc:
            return await self._retry_or_bury(item, str(exc))
        except Exception as exc:  # a bug in a transport must not kill the worker; treat as transient
            log.exception("transport_failed", message_id=item.message.id)
            return await self._retry_or_bury(item, f"{type(exc).__name__}: {exc}")
        return await self._finish(item, "sent", provider_id=provider_id)

    async def _retry_or_bury(self, item: Claimed, error: str) -> MessageStatus:
        if item.attempts >= self._config.max_attempts:
            return await self._finish(item, "dead", error=error)
        return await self._finish(
            item,
            "pending",
            error=error,
            next_attempt_at=utcnow() + backoff_delay(item.attempts, self._config),
        )

    async def _finish(
        self,
        item: Claimed,
        status: MessageStatus,
        *,
        error: str | None = None,
        provider_id: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> MessageStatus:
        values: dict[str, object] = {
            "status": status,
            "claimed_at": None,
            "last_error": error and error[:MAX_ERROR_LENGTH],
        }
        if status == "sent":
            values.update(sent_at=utcnow(), provider_message_id=provider_id)
        if status in ("sent", "dead") and not self._keep_bodies:
            values.update(context={}, text=None, html=None)
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        async with self._transaction() as session:
            # Written only while the claim is still ours: a worker whose claim timed out and was
            # taken over must not overwrite the new owner's result.
            await session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id == item.row_id,
                    OutboxMessage.status == "sending",
                    OutboxMessage.claimed_at == item.claimed_at,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )
        if status == "sent":
            self.delivered += 1
        event = {"sent": "message_sent", "dead": "message_dead"}.get(status, "message_retry")
        log.info(
            event,
            message_id=item.message.id,
            channel=item.message.channel,
            attempts=item.attempts,
            error=error,
        )
        return status

    async def release(self, items: list[Claimed]) -> None:
        """Hand claimed but unsent messages back (shutdown): due again at once, the attempt not counted."""
        if not items:
            return
        async with self._transaction() as session:
            for item in items:
                await session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.id == item.row_id,
                        OutboxMessage.status == "sending",
                        OutboxMessage.claimed_at == item.claimed_at,
                    )
                    .values(status="pending", claimed_at=None, attempts=OutboxMessage.attempts - 1)
                    .execution_options(synchronize_session=False)
                )
        log.info("messages_released", count=len(items))

    async def run_once(self, stop: asyncio.Event | None = None) -> int:
        """Claim one batch and deliver it; on `stop`, the messages not yet started are released."""
        batch = await self.claim()
        for index, item in enumerate(batch):
            if stop is not None and stop.is_set():
                await self.release(batch[index:])
                return index
            await self.deliver(item)
        return len(batch)

    def _anything_due(self) -> bool:
        """The idle check: free with a read-only SQLite connection, else left to the claim itself."""
        if self._quick_reads is None:
            return True
        query = select(OutboxMessage.id).where(self._due(utcnow())).limit(1)
        return bool(self._quick_reads.all(query))

    async def _idle(self, stop: asyncio.Event, seconds: float) -> None:
        """Wait for `stop`, a wake-up or the timeout, whichever comes first."""
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self.wakeup.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        self.wakeup.clear()

    async def drain(self) -> int:
        """Deliver until nothing is due (tests, `authgate worker --once`)."""
        total = 0
        while count := await self.run_once():
            total += count
        await self.update_gauge()
        return total

    async def update_gauge(self) -> None:
        await refresh_outbox_gauge(self._factory)

    async def run(self, stop: asyncio.Event, *, poll_interval: float | None = None) -> None:
        """Poll until `stop` is set; the batch in hand is finished or released before returning.

        Between polls it also wakes when `wakeup` is set, so an attached courier can poll rarely.
        """
        interval = poll_interval or self._config.poll_interval
        log.info("dispatcher_started")
        while not stop.is_set():
            try:
                count = await self.run_once(stop) if self._anything_due() else 0
                if count:
                    await self.update_gauge()  # `/metrics` refreshes it too
            except Exception:  # the database may be away for a moment; keep the worker alive
                log.exception("dispatcher_error")
                count = 0
            if count == 0:
                await self._idle(stop, interval)
        log.info("dispatcher_stopped")
