from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from authgate.schemas import APIModel, in_utc

Scope = Annotated[str, StringConstraints(max_length=64)]


class ApiKeyCreate(APIModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    scopes: list[Scope] = Field(
        default_factory=list,
        max_length=64,
        description="Permissions the key may use (each must be held by you); none = self-service only",
    )
    expires_at: Annotated[AwareDatetime, AfterValidator(in_utc)] | None = None  # answered in UTC
    workspace_id: uuid.UUID | None = None


class ApiKeyRead(APIModel):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    workspace_id: uuid.UUID | None
    expires_at: datetime | None
    created_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The full key, shown only in this response")
