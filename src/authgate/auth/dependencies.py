"""Who is calling: the one dependency every protected route uses, and permission checks on top.

An authenticated read costs one database round trip: the user, its roles and the session
named by the token's `sid` come back in a single query, so a revoked session, a deactivated
user or a removed role takes effect on the very next request.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Literal

import structlog
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import bindparam, select
from sqlalchemy.orm import joinedload

from authgate.auth.cookies import ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER
from authgate.db import SessionDep, utcnow
from authgate.deps import TokenServiceDep
from authgate.errors import (
    AccountDisabledError,
    CSRFError,
    NotAuthenticatedError,
    PermissionDeniedError,
    SessionRevokedError,
    TokenExpiredError,
    TokenInvalidError,
)
from authgate.sessions.models import LoginSession
from authgate.sessions.service import LAST_USED_RESOLUTION
from authgate.users.models import User

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# The problems any authenticated route can answer, for its OpenAPI `responses`.
AUTH_PROBLEMS = (
    NotAuthenticatedError, TokenInvalidError, TokenExpiredError, SessionRevokedError, AccountDisabledError, CSRFError,
)

bearer_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="An access token from `/api/v1/auth/login` or `/api/v1/auth/token`, or an API key (`ag_...`).",
)


# The user, its roles and the token's session in one statement, built once: SQLAlchemy then
# reuses its compiled form and cache key instead of rebuilding both on every request.
_PRINCIPAL_QUERY = (
    select(User, LoginSession)
    .join(LoginSession, LoginSession.user_id == User.id)
    .options(joinedload(User.roles))
    .where(
        User.id == bindparam("user_id"),
        LoginSession.id == bindparam("session_id"),
        User.deleted_at.is_(None),
    )
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request, with its effective permissions computed once."""

    user: User
    via: Literal["bearer", "cookie", "api_key"]
    session_id: uuid.UUID | None
    permissions: frozenset[str]
    api_key_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None  # an API key bound to one workspace reaches only that one

    @property
    def user_id(self) -> uuid.UUID:
        return self.user.id

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None


def check_csrf(request: Request) -> None:
    """Double submit: a cookie-authenticated unsafe request must echo the CSRF cookie in a header."""
    if request.method in SAFE_METHODS:
        return
    cookie = request.cookies.get(CSRF_COOKIE)
    header = request.headers.get(CSRF_HEADER)
    if not cookie or not header or not secrets.compare_digest(cookie.encode(), header.encode()):
        raise CSRFError()


async def get_principal(
    request: Request,
    session: SessionDep,
    tokens: TokenServiceDep,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
) -> Principal:
    via: Literal["bearer", "cookie"] = "bearer"
    token = bearer
    if token is None:
        token = request.cookies.get(ACCESS_COOKIE)
        via = "cookie"
    if not token:
        raise NotAuthenticatedError()
    if via == "cookie":
        check_csrf(request)
    claims = await tokens.decode_access(token)
    params = {"user_id": claims.user_id, "session_id": claims.session_id}
    row = (await session.execute(_PRINCIPAL_QUERY, params)).unique().first()
    if row is None:
        raise TokenInvalidError("The token's user or session does not exist")
    user, login = row[0], row[1]
    now = utcnow()
    if login.revoked_at is not None or login.expires_at <= now:
        raise SessionRevokedError()
    if not user.is_active:
        raise AccountDisabledError()
    if now - login.last_used_at >= LAST_USED_RESOLUTION:  # coalesced: at most one write a minute
        login.last_used_at = now
    structlog.contextvars.bind_contextvars(user_id=str(user.id))
    principal = Principal(user=user, via=via, session_id=login.id, permissions=user.permissions)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(get_principal)]


def require_permission(*needed: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits callers holding every one of `needed` (403 otherwise)."""

    async def dependency(principal: CurrentUser) -> Principal:
        missing = [p for p in needed if p not in principal.permissions]
        if missing:
            raise PermissionDeniedError(f"Missing permission: {', '.join(missing)}")
        return principal

    dependency.__name__ = f"require_{'_'.join(p.replace(':', '_') for p in needed)}"
    return dependency


async def require_user_session(principal: CurrentUser) -> Principal:
    """Admit only a signed-in user, never an API key (keys may not manage keys, passwords, MFA, sessions)."""
    if principal.is_api_key:
        raise PermissionDeniedError("API keys cannot do this")
    return principal


UserSession = Annotated[Principal, Depends(require_user_session)]
