from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, Self

from pydantic import Field, model_validator

from authgate.schemas import APIModel, Secret
from authgate.users.schemas import UserRead


class LoginRequest(APIModel):
    """Exactly one identifier (email or username) and the password."""

    email: str | None = Field(default=None, max_length=320)
    username: str | None = Field(default=None, max_length=64)
    password: Secret = Field(min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _one_identifier(self) -> Self:
        if (self.email is None) == (self.username is None):
            raise ValueError("give exactly one of email or username")
        return self


class RefreshRequest(APIModel):
    refresh_token: str | None = Field(
        default=None, max_length=256, description="Omit to use the `authgate_refresh` cookie"
    )


class TokenResponse(APIModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int = Field(description="Seconds until the access token expires")
    refresh_token: str
    user: UserRead


class OAuth2TokenResponse(APIModel):
    """RFC 6749 §5.1 token response."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type
    expires_in: int
    refresh_token: str
    scope: str = ""


class SessionRead(APIModel):
    id: uuid.UUID
    created_at: datetime
    last_used_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool
