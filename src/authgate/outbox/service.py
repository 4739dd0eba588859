"""Enqueueing messages: a row in the caller's transaction; delivery happens later, with retries."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from authgate.db import new_id
from authgate.ops.metrics import OUTBOX_PENDING
from authgate.outbox.models import Channel, MessageStatus, OutboxMessage
from authgate.outbox.rendering import Rendered, TemplateError, render
from authgate.pagination import PageParams, fetch_page

log = structlog.get_logger("authgate.outbox")


class Outbox:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def enqueue(
        self,
        *,
        channel: Channel,
        template: str,
        to: str,
        context: dict[str, Any],
        locale: str | None = None,
        idempotency_key: str | None = None,
        deliver: bool = True,
    ) -> OutboxMessage:
        """Queue one message; it is sent only if the surrounding transaction commits.

        `deliver=False` records the message as `suppressed`: written (so a request costs the same
        whether or not a message goes out) and shown in the dev inbox, but never sent.
        """
        message_id = new_id()
        message = OutboxMessage(
            id=message_id,
            channel=channel,
            template=template,
            recipient=to,
            locale=locale,
            context=context,
            idempotency_key=idempotency_key or f"{template}:{message_id}",
            status="pending" if deliver else "suppressed",
        )
        self._session.add(message)
        await self._session.flush()
        if deliver:
            self._session.info[PENDING_MAIL] = True  # see `wake_courier_after_commit`
        return message


PENDING_MAIL = "authgate_outbox_pending"
COURIER_WAKEUP = "authgate_courier_wakeup"


@event.listens_for(Session, "after_commit")
def wake_courier_after_commit(session: Session) -> None:
    """Nudge the in-process courier the moment a transaction that queued mail commits.

    The courier's event reaches sessions through their factory's `info` (`Dispatcher.attach`);
    without one (a separate worker process, tests) the courier finds the message on its next poll.
    """
    if session.info.pop(PENDING_MAIL, False):
        wakeup = session.info.get(COURIER_WAKEUP)
        if wakeup is not None:
            wakeup.set()


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back_mail(session: Session) -> None:
    session.info.pop(PENDING_MAIL, None)


async def inbox_page(session: AsyncSession, params: PageParams) -> tuple[list[OutboxMessage], str | None]:
    """One page of messages, newest first (ids are time-ordered), for the development inbox."""
    return await fetch_page(session, select(OutboxMessage), OutboxMessage.id, params)


def rendered(message: OutboxMessage) -> Rendered:
    """What the message says: stored once the dispatcher rendered it, rendered now otherwise."""
    if message.text is not None:
        return Rendered(subject=message.subject, text=message.text, html=message.html)
    try:
        return render(message.channel, message.template, message.context, message.locale)
    except TemplateError as exc:
        return Rendered(subject=None, text=f"(cannot render: {exc})", html=None)


async def pending_count(session: AsyncSession) -> int:
    """Messages not yet delivered or given up on (pending or being sent)."""
    stmt = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.status.in_(("pending", "sending")))
    )
    return int(await session.scalar(stmt) or 0)


async def refresh_outbox_gauge(factory: async_sessionmaker[AsyncSession]) -> None:
    """Set `authgate_outbox_pending` from the table, so any process's /metrics shows the shared depth."""
    try:
        async with factory() as session:
            OUTBOX_PENDING.set(await pending_count(session))
    except Exception:  # metrics must render even when the database is away (/ready says so)
        log.warning("outbox_gauge_not_refreshed", exc_info=True)


async def admin_page(
    session: AsyncSession, params: PageParams, *, status: MessageStatus | None
) -> tuple[list[OutboxMessage], str | None]:
    """Messages for administrators, newest first, optionally of one status (`dead` ones to investigate)."""
    stmt = select(OutboxMessage)
    if status is not None:
        stmt = stmt.where(OutboxMessage.status == status)
    return await fetch_page(session, stmt, OutboxMessage.id, params)
