from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from authgate.schemas import APIModel


class AuditEventRead(APIModel):
    id: uuid.UUID
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    data: dict[str, Any]
    hash: str
