from __future__ import annotations

import uuid
from datetime import datetime

from authgate.outbox.models import Channel, MessageStatus
from authgate.schemas import APIModel


class InboxItem(APIModel):
    id: uuid.UUID
    channel: Channel
    to: str
    subject: str | None
    text: str | None
    html: str | None
    status: MessageStatus
    created_at: datetime


class InboxRead(APIModel):
    items: list[InboxItem]
    next_cursor: str | None = None


class OutboxMessageRead(APIModel):
    """A queued message as administrators see it: delivery state, never the rendered body."""

    id: uuid.UUID
    channel: Channel
    template: str
    recipient: str
    status: MessageStatus
    attempts: int
    last_error: str | None
    provider_message_id: str | None
    next_attempt_at: datetime
    created_at: datetime
    sent_at: datetime | None
