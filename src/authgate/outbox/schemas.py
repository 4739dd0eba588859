from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from authgate.schemas import APIModel


class InboxItem(APIModel):
    id: uuid.UUID
    channel: Literal["email", "sms"]
    to: str
    subject: str | None
    text: str | None
    html: str | None
    status: str
    created_at: datetime


class InboxRead(APIModel):
    items: list[InboxItem]
    next_cursor: str | None = None
