"""Login sessions and rotating refresh tokens, with reuse detection and a short grace window."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.db import new_id, utcnow, write_aside
from authgate.errors import NotFoundError, RefreshReusedError, SessionRevokedError, TokenInvalidError
from authgate.logging import get_request_context
from authgate.pagination import PageParams, fetch_page
from authgate.security.opaque import hash_token, new_token
from authgate.sessions.models import LoginSession, RefreshToken

LAST_USED_RESOLUTION = timedelta(minutes=1)


class ActivityStamps:
    """Which sessions and API keys this process has stamped lately (`app.state.stamps`).

    The stored `last_used_at` only changes once the stamp commits, so without this every request
    with a busy token in between would schedule its own write: at thousands of requests a second,
    a queue of hundreds of writers that each hold their connection's next request. With it, a
    process writes one stamp per row per `LAST_USED_RESOLUTION`.
    """

    MAX_ENTRIES = 100_000

    def __init__(self, resolution: timedelta = LAST_USED_RESOLUTION) -> None:
        self._resolution = resolution
        self._stamped: dict[uuid.UUID, datetime] = {}

    def due(self, row_id: uuid.UUID, last_used_at: datetime | None, now: datetime) -> bool:
        """Whether to stamp `row_id` now; claims the stamp for this process when it is."""
        if last_used_at is not None and now - last_used_at < self._resolution:
            return False
        stamped = self._stamped.get(row_id)
        if stamped is not None and now - stamped < self._resolution:
            return False
        if len(self._stamped) >= self.MAX_ENTRIES:
            self._stamped = {k: v for k, v in self._stamped.items() if now - v < self._resolution}
            if len(self._stamped) >= self.MAX_ENTRIES:  # all recent: forget them (costs a few extra stamps)
                self._stamped.clear()
        self._stamped[row_id] = now
        return True


async def touch_session(
    factory: async_sessionmaker[AsyncSession], session_id: uuid.UUID, at: datetime
) -> None:
    """Stamp a session's last activity (at most once a minute); best effort, after the response."""
    stmt = (
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.last_used_at < at - LAST_USED_RESOLUTION)
        .values(last_used_at=at)
    )
    await write_aside(factory, stmt, failure="session_touch_failed", session_id=str(session_id))


@dataclass(frozen=True, slots=True)
class IssuedRefresh:
    session: LoginSession
    refresh_token: str


class SessionService:
    def __init__(self, session: AsyncSession, *, refresh_ttl: timedelta, reuse_grace: timedelta) -> None:
        self._db = session
        self._refresh_ttl, self._grace = refresh_ttl, reuse_grace

    async def start(self, user_id: uuid.UUID) -> IssuedRefresh:
        """Open a session for a signed-in user and issue its first refresh token."""
        ctx = get_request_context()
        now = utcnow()
        login = LoginSession(
            id=new_id(),  # here rather than at flush: the refresh token refers to it
            user_id=user_id,
            ip=ctx.ip,
            user_agent=ctx.user_agent,
            created_at=now,
            last_used_at=now,
            expires_at=now + self._refresh_ttl,
        )
        self._db.add(login)
        return IssuedRefresh(login, self._issue(login, generation=0))

    def _issue(self, login: LoginSession, *, generation: int) -> str:
        """Add the session's next refresh token; written with the rest at the next flush."""
        raw = new_token()
        self._db.add(
            RefreshToken(
                session_id=login.id,
                token_hash=hash_token(raw),
                generation=generation,
                expires_at=login.expires_at,
            )
        )
        return raw

    async def rotate(self, raw: str) -> IssuedRefresh:
        """Trade a refresh token for a new one in the same session.

        A token presented a second time revokes the whole session (it was probably stolen),
        except the immediate parent within the grace window: two tabs refreshing at once
        each get a valid token instead of signing the user out.
        """
        now = utcnow()
        row = await self._db.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw)))
        if row is None or row.expires_at <= now:
            raise TokenInvalidError("Refresh token is invalid or expired")
        login = await self._db.get(LoginSession, row.session_id, with_for_update=True)
        if login is not None and login.revoked_at is not None:
            raise SessionRevokedError("The session was signed out or revoked")
        if login is None or login.expires_at <= now:
            raise TokenInvalidError("Session has ended")
        claimed = await self._db.execute(
            update(RefreshToken)
            .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
            .values(used_at=now)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:  # type: ignore[attr-defined]
            login.refresh_generation = row.generation + 1
            generation = login.refresh_generation
        else:
            await self._db.refresh(row)
            in_grace = (
                row.used_at is not None
                and now - row.used_at <= self._grace
                and row.generation == login.refresh_generation - 1
            )
            if not in_grace:
                raise RefreshReusedError()
            generation = login.refresh_generation  # a sibling of the token the first tab received
        login.last_used_at = now
        return IssuedRefresh(login, self._issue(login, generation=generation))

    async def revoke_for_reuse(self, raw: str) -> LoginSession | None:
        """Revoke the session a reused refresh token belongs to; returns it for the audit record."""
        row = await self._db.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw)))
        login = await self._db.get(LoginSession, row.session_id, with_for_update=True) if row else None
        if login is not None and login.revoked_at is None:
            login.revoked_at = utcnow()
            await self._db.flush()
        return login

    async def revoke(self, session_id: uuid.UUID) -> None:
        await self._db.execute(
            update(LoginSession)
            .where(LoginSession.id == session_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )

    async def revoke_all(self, user_id: uuid.UUID, *, except_id: uuid.UUID | None = None) -> int:
        """End the user's sessions (but `except_id`); returns how many. Their sign-ins waiting for a
        second factor are `mfa.service.discard_challenges`'s to end."""
        stmt = update(LoginSession).where(LoginSession.user_id == user_id, LoginSession.revoked_at.is_(None))
        if except_id is not None:
            stmt = stmt.where(LoginSession.id != except_id)
        result = await self._db.execute(stmt.values(revoked_at=utcnow()))
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _active(self, user_id: uuid.UUID) -> Select[LoginSession]:
        return select(LoginSession).where(
            LoginSession.user_id == user_id,
            LoginSession.revoked_at.is_(None),
            LoginSession.expires_at > utcnow(),
        )

    async def list_active(self, user_id: uuid.UUID) -> list[LoginSession]:
        """Every active session of the user, newest first (the console's one page)."""
        return list((await self._db.scalars(self._active(user_id).order_by(LoginSession.id.desc()))).all())

    async def page_active(
        self, user_id: uuid.UUID, params: PageParams
    ) -> tuple[list[LoginSession], str | None]:
        """One page of the user's active sessions, newest first, and the next cursor."""
        return await fetch_page(self._db, self._active(user_id), LoginSession.id, params)

    async def revoke_own(self, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
        """Revoke one of the user's sessions; another user's (or an unknown) session is 404."""
        login = await self._db.get(LoginSession, session_id)
        if login is None or login.user_id != user_id or login.revoked_at is not None:
            raise NotFoundError("Session not found")
        login.revoked_at = utcnow()
        await self._db.flush()
