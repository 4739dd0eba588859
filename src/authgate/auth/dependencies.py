"""Who is calling: the one dependency every protected route uses, and permission checks on top.

An authenticated read costs one database round trip: the user, its roles and the session
named by the token's `sid` come back in a single statement (`auth.service`), so a revoked
session, a deactivated user or a removed role takes effect on the very next request. The caller
arrives as a read-only `Account`; a handler that changes the account asks for `CallerUser`, the
ORM row loaded in its own transaction.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

import structlog
from fastapi import BackgroundTasks, Depends, Request
from fastapi.security import APIKeyHeader, OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import joinedload

from authgate.api_keys.models import ApiKey
from authgate.api_keys.service import KEY_PREFIX, secret_matches, split_key, touch_api_key
from authgate.audit.service import Actor
from authgate.auth.cookies import ACCESS_COOKIE, CSRF_COOKIE, CSRF_HEADER
from authgate.auth.service import AccessReader, Account
from authgate.auth.workflows import AuthWorkflow
from authgate.db import SessionDep, utcnow
from authgate.deps import PasswordHasherDep, SessionmakerDep, SettingsDep, TokenServiceDep
from authgate.errors import (
    AccountDisabledError,
    CSRFError,
    NotAuthenticatedError,
    PermissionDeniedError,
    SessionRevokedError,
    TokenExpiredError,
    TokenInvalidError,
)
from authgate.security.tokens import TokenService
from authgate.sessions.service import ActivityStamps, touch_session
from authgate.users.models import User
from authgate.users.repository import UserRepository

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# The problems any authenticated route can answer, for its OpenAPI `responses`.
AUTH_PROBLEMS = (
    NotAuthenticatedError,
    TokenInvalidError,
    TokenExpiredError,
    SessionRevokedError,
    AccountDisabledError,
    CSRFError,
)

bearer_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    description="An access token from `/api/v1/auth/login` or `/api/v1/auth/token`, or an API key (`ag_...`).",
)

api_key_scheme = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (`ag_...`) from `/api/v1/api-keys`."
)


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request, with its effective permissions computed once."""

    account: Account
    session_id: uuid.UUID | None
    permissions: frozenset[str]
    api_key_id: uuid.UUID | None = None
    workspace_id: uuid.UUID | None = None  # an API key bound to one workspace reaches only that one

    @property
    def user_id(self) -> uuid.UUID:
        return self.account.id

    @property
    def is_api_key(self) -> bool:
        return self.api_key_id is not None

    @property
    def actor(self) -> Actor:
        """Whom the audit log names for what this caller does: the API key when one made the call
        (its owner is one lookup away), else the signed-in user."""
        if self.api_key_id is not None:
            return Actor("api_key", str(self.api_key_id))
        return Actor.user(self.account.id)


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
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    background: BackgroundTasks,
) -> Principal:
    if api_key is not None or (bearer is not None and bearer.startswith(KEY_PREFIX)):
        principal = await _principal_from_api_key(request, api_key or bearer or "", background)
        request.state.principal = principal
        return principal
    token = bearer
    if token is None:
        token = request.cookies.get(ACCESS_COOKIE)
        if token:
            check_csrf(request)
    if not token:
        raise NotAuthenticatedError()
    principal = await principal_from_access_token(request, token, background)
    structlog.contextvars.bind_contextvars(user_id=str(principal.user_id))
    request.state.principal = principal
    return principal


async def principal_from_access_token(request: Request, token: str, background: BackgroundTasks) -> Principal:
    """The caller an access token names: its signature, claims, session and account checked (one
    read), and the session's activity stamped, coalesced to one write a minute after the response,
    in its own transaction, so a read stays a read (and never waits for SQLite's write lock)."""
    state = request.app.state
    tokens: TokenService = state.tokens
    reader: AccessReader = state.access
    access = await reader.resolve(await tokens.decode_access(token))
    now = utcnow()
    stamps: ActivityStamps = state.stamps
    if stamps.due(access.session_id, access.session_last_used_at, now):
        background.add_task(touch_session, state.sessionmaker, access.session_id, now)
    account = access.account
    return Principal(account=account, session_id=access.session_id, permissions=account.permissions)


async def _principal_from_api_key(request: Request, raw: str, background: BackgroundTasks) -> Principal:
    """Authenticate an API key: key, owner and roles in one query; permissions = scopes ∩ owner's."""
    parts = split_key(raw)
    if parts is None:
        raise TokenInvalidError("Malformed API key")
    prefix, secret = parts
    stmt = (
        select(ApiKey, User)
        .join(User, User.id == ApiKey.user_id)
        .options(joinedload(User.roles))
        .where(ApiKey.prefix == prefix)
    )
    factory: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with factory() as session:  # closing detaches the rows without expiring them
        row = (await session.execute(stmt)).unique().first()
    if row is None or not secret_matches(row[0], secret):
        raise TokenInvalidError("Unknown API key")
    key, user = row[0], row[1]
    now = utcnow()
    if key.revoked_at is not None:
        raise TokenInvalidError("API key revoked")
    if key.expires_at is not None and key.expires_at <= now:
        raise TokenExpiredError("API key expired")
    if user.deleted_at is not None or not user.is_active:  # 401: the key no longer authenticates anyone
        raise TokenInvalidError("The API key's owner is deactivated")
    stamps: ActivityStamps = request.app.state.stamps
    if stamps.due(key.id, key.last_used_at, now):
        background.add_task(touch_api_key, request.app.state.sessionmaker, key.id, now)  # coalesced, after
    structlog.contextvars.bind_contextvars(user_id=str(user.id), api_key_id=str(key.id))
    return Principal(
        account=Account.of(user),
        session_id=None,
        permissions=user.permissions & frozenset(key.scopes),
        api_key_id=key.id,
        workspace_id=key.workspace_id,
    )


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
    """Admit only a signed-in user, never an API key (keys may not manage keys, passwords, MFA or list sessions)."""
    if principal.is_api_key:
        raise PermissionDeniedError("API keys cannot do this")
    return principal


UserSession = Annotated[Principal, Depends(require_user_session)]


async def get_optional_principal(
    request: Request,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    background: BackgroundTasks,
) -> Principal | None:
    """The caller if any credentials came with the request (bad ones are still 401), else None."""
    if bearer is None and api_key is None and not request.cookies.get(ACCESS_COOKIE):
        return None
    return await get_principal(request, bearer, api_key, background)


OptionalPrincipal = Annotated[Principal | None, Depends(get_optional_principal)]


async def load_caller(session: AsyncSession, principal: Principal) -> User:
    """The caller's ORM row (with roles) in `session`'s transaction, for changes made on their behalf."""
    user = await UserRepository(session).get(principal.user_id)
    if user is None:  # deleted between authentication and now
        raise TokenInvalidError("The token's user or session does not exist")
    return user


async def get_caller_user(principal: CurrentUser, session: SessionDep) -> User:
    return await load_caller(session, principal)


CallerUser = Annotated[User, Depends(get_caller_user)]


async def get_auth_workflow(
    session: SessionDep,
    factory: SessionmakerDep,
    settings: SettingsDep,
    passwords: PasswordHasherDep,
    tokens: TokenServiceDep,
) -> AuthWorkflow:
    return AuthWorkflow(session, factory, settings, passwords, tokens)


AuthWorkflowDep = Annotated[AuthWorkflow, Depends(get_auth_workflow)]
