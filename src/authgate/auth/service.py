"""Access-token resolution shared by request authentication, introspection and forward-auth."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from authgate.db import utcnow
from authgate.errors import AccountDisabledError, SessionRevokedError, TokenInvalidError
from authgate.security.tokens import AccessClaims
from authgate.sessions.models import LoginSession
from authgate.users.models import User

# Built once: SQLAlchemy reuses its compiled form and cache key instead of rebuilding both per request.
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


async def resolve_access(session: AsyncSession, claims: AccessClaims) -> tuple[User, LoginSession]:
    """The user (with roles) and session behind verified claims, in one query.

    A revoked or expired session, a deleted or deactivated user all fail here, so they take
    effect on the next request rather than when the token expires.
    """
    params = {"user_id": claims.user_id, "session_id": claims.session_id}
    row = (await session.execute(_PRINCIPAL_QUERY, params)).unique().first()
    if row is None:
        raise TokenInvalidError("The token's user or session does not exist")
    user, login = row[0], row[1]
    if login.revoked_at is not None or login.expires_at <= utcnow():
        raise SessionRevokedError()
    if not user.is_active:
        raise AccountDisabledError()
    return user, login
