"""Enqueueing messages: a row in the caller's transaction; delivery happens later, with retries."""

from __future__ import annotations

from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from authgate.db import new_id
from authgate.outbox.models import OutboxMessage

Channel = Literal["email", "sms"]


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
    ) -> OutboxMessage:
        """Queue one message; it is sent only if the surrounding transaction commits."""
        message_id = new_id()
        message = OutboxMessage(
            id=message_id,
            channel=channel,
            template=template,
            recipient=to,
            locale=locale,
            context=context,
            idempotency_key=idempotency_key or f"{template}:{message_id}",
        )
        self._session.add(message)
        await self._session.flush()
        return message
