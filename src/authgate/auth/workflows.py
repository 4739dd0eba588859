"""Sign-in use cases that span users, sessions, tokens and the audit log."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.audit.service import ANONYMOUS, Actor, AuditLog
from authgate.config import Settings
from authgate.db import end_read
from authgate.errors import (
    AccountDisabledError,
    InvalidCredentialsError,
    RefreshReusedError,
    TokenInvalidError,
)
from authgate.mfa.errors import MfaRequiredError
from authgate.mfa.service import MfaPending, MfaService, discard_challenges
from authgate.ops.metrics import LOGINS
from authgate.pagination import PageParams
from authgate.ratelimit.bruteforce import (
    AccountThrottledError,
    LoginGuard,
    account_identifier,
    login_identifier,
)
from authgate.security.passwords import ClientGone, PasswordHasher
from authgate.security.tokens import TokenService
from authgate.sessions.models import LoginSession
from authgate.sessions.service import IssuedRefresh, SessionService
from authgate.users.models import User
from authgate.users.repository import UserRepository
from authgate.verification.errors import EmailNotVerifiedError
from authgate.verification.notifications import SecurityNotifier

log = structlog.get_logger("authgate.auth")


async def record_failed_attempt(
    request_session: AsyncSession,
    factory: async_sessionmaker[AsyncSession],
    guard: LoginGuard,
    *,
    reason: str,
    user_id: uuid.UUID | None,
    identifier: str | None,
    spare_known_ips: bool = True,
) -> None:
    """Record a rejected sign-in step (a password or an MFA code): the audit event and, with an
    `identifier`, one more failure toward its wait. Raises 429 instead when parallel failures made
    the identifier wait meanwhile (then nothing is counted, and the event says `throttled`).

    Its own short transaction: the request's is rolled back with the error, and the record of a
    rejected attempt must survive that. The request's ends first: after the answer-time check it
    may hold SQLite's write lock, which the short transaction needs. The throttle row is locked
    before the audit chain, in the order a success takes them.
    """
    await request_session.rollback()
    LOGINS.labels("failed").inc()
    log.info("login_failed", reason=reason, user_id=str(user_id) if user_id else None)
    waiting = None
    async with factory() as own, own.begin():
        if identifier is not None:
            known = user_id if spare_known_ips else None
            waiting = await guard.record_failure(own, identifier, known)
        data: dict[str, object] = {"reason": reason}
        if waiting is not None:
            data["throttled"] = True  # answered 429: it came in while the account had to wait
        await AuditLog(own).record(
            "auth.login.failed",
            actor=Actor.user(user_id) if user_id else ANONYMOUS,
            target_type="user" if user_id else None,
            target_id=user_id,
            data=data,
        )
    if waiting is not None:
        raise AccountThrottledError(retry_after=waiting)


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    user: User
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


class AuthWorkflow:
    def __init__(
        self,
        session: AsyncSession,
        factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        passwords: PasswordHasher,
        tokens: TokenService,
    ) -> None:
        self._db, self._factory, self._settings = session, factory, settings
        self._passwords, self._tokens = passwords, tokens
        self._users = UserRepository(session)
        self._sessions = SessionService(
            session, refresh_ttl=settings.refresh_token_ttl, reuse_grace=settings.refresh_reuse_grace
        )
        self._audit = AuditLog(session)
        self._guard = LoginGuard(settings.rate_limit)

    async def login(
        self,
        *,
        email: str | None,
        username: str | None,
        password: str,
        client_gone: ClientGone | None = None,
        allow_mfa: bool = True,
    ) -> IssuedTokens | MfaPending:
        """Check the password and open a session; unknown accounts cost the same hash as known ones.

        With MFA on, a correct password yields an `MfaPending` challenge instead of tokens (or
        `MfaRequiredError` where there is no second step, `allow_mfa=False`).
        """
        user = await self._users.get_for_login(email=email, username=username)
        # Failures count per account, whichever identifier names it; per identifier for unknown ones.
        identifier = account_identifier(user.id) if user else login_identifier(email, username)
        await self._guard.check(self._db, identifier, user.id if user else None)  # 429 while it must wait
        await end_read(self._db)  # no pooled connection is held while the hash runs
        valid, new_hash = await self._passwords.verify(
            password, user.password_hash if user else None, client_gone
        )
        if user is None or not valid:
            reason = "unknown_account" if user is None else "wrong_password"
            await self._record_failure(user, reason, identifier)
            raise InvalidCredentialsError("Invalid email, username or password")
        # Parallel attempts may have made the account wait while this one hashed: then the right
        # password gets the same 429 as a wrong one would.
        has_failures = await self._guard.check(self._db, identifier, user.id)
        if not user.is_active:
            await self._record_failure(user, "account_disabled", identifier)
            raise AccountDisabledError()
        if self._settings.features.require_verified_email and not user.email_verified:
            await self._record_failure(user, "email_not_verified")
            raise EmailNotVerifiedError()
        if new_hash is not None:
            user.password_hash = new_hash  # bcrypt or outdated Argon2 parameters: upgraded on the way in
        if has_failures:
            await self._guard.reset(self._db, identifier)
        if user.mfa_enabled:
            if not allow_mfa:
                raise MfaRequiredError()
            return await MfaService(self._db, self._settings.secret()).issue_challenge(user.id)
        return await self.complete_login(user)

    async def complete_login(self, user: User, *, mfa: str | None = None) -> IssuedTokens:
        """Open a session for a user who has proved who they are (password, and the MFA step if on)."""
        await self._users.stamp_login(user)
        issued = await self._sessions.start(user.id)
        await self._audit.record(
            "auth.login.succeeded",
            actor=Actor.user(user.id),
            target_type="session",
            target_id=issued.session.id,
            data={"mfa": mfa} if mfa else None,
        )
        await SecurityNotifier(self._db, self._settings).sign_in(user)  # remembers the device; alerts if new
        LOGINS.labels("succeeded").inc()
        return await self._tokens_for(user, issued)

    async def _record_failure(self, user: User | None, reason: str, identifier: str | None = None) -> None:
        user_id = user.id if user else None  # read before the rollback expires the row
        await record_failed_attempt(
            self._db, self._factory, self._guard, reason=reason, user_id=user_id, identifier=identifier
        )

    async def refresh(self, raw_refresh: str) -> IssuedTokens:
        """Rotate a refresh token; a reused one revokes its whole session (outside the grace window)."""
        try:
            issued = await self._sessions.rotate(raw_refresh)
        except RefreshReusedError:
            await self._revoke_after_reuse(raw_refresh)
            raise
        user = await self._users.get(issued.session.user_id)
        if user is None:
            raise TokenInvalidError("The session's user no longer exists")
        if not user.is_active:
            raise AccountDisabledError()
        return await self._tokens_for(user, issued)

    async def _revoke_after_reuse(self, raw_refresh: str) -> None:
        # The request transaction rolls back with the 401, so the revocation and its audit record
        # are written in their own transaction. Roll back first: ours holds the session row's lock.
        await self._db.rollback()
        async with self._factory() as own, own.begin():
            sessions = SessionService(
                own,
                refresh_ttl=self._settings.refresh_token_ttl,
                reuse_grace=self._settings.refresh_reuse_grace,
            )
            login = await sessions.revoke_for_reuse(raw_refresh)
            if login is not None:
                await AuditLog(own).record(
                    "auth.refresh.reused",
                    actor=Actor.user(login.user_id),
                    target_type="session",
                    target_id=login.id,
                )
                log.warning("refresh_reused", session_id=str(login.id))

    async def logout(
        self, user_id: uuid.UUID, session_id: uuid.UUID | None, actor: Actor | None = None
    ) -> None:
        """End the caller's session. `actor`: the API key that called, if one did (it has no session:
        the event then names the account)."""
        if session_id is not None:
            await self._sessions.revoke(session_id)
            target: tuple[str, uuid.UUID] = ("session", session_id)
        else:
            target = ("user", user_id)
        await self._audit.record(
            "auth.logout", actor=actor or Actor.user(user_id), target_type=target[0], target_id=target[1]
        )

    async def logout_all(self, user_id: uuid.UUID, actor: Actor | None = None) -> None:
        await discard_challenges(self._db, user_id)  # first: a sign-in finishing now waits, then is revoked
        count = await self._sessions.revoke_all(user_id)
        await self._audit.record(
            "auth.logout",
            actor=actor or Actor.user(user_id),
            target_type="user",
            target_id=user_id,
            data={"all_sessions": True, "revoked": count},
        )

    async def revoke_session(
        self, user_id: uuid.UUID, session_id: uuid.UUID, actor: Actor | None = None
    ) -> None:
        await self._sessions.revoke_own(user_id, session_id)
        await self._audit.record(
            "session.revoked", actor=actor or Actor.user(user_id), target_type="session", target_id=session_id
        )

    async def list_sessions(self, user_id: uuid.UUID) -> list[LoginSession]:
        return await self._sessions.list_active(user_id)

    async def page_sessions(
        self, user_id: uuid.UUID, params: PageParams
    ) -> tuple[list[LoginSession], str | None]:
        return await self._sessions.page_active(user_id, params)

    async def _tokens_for(self, user: User, issued: IssuedRefresh) -> IssuedTokens:
        await self._tokens.refresh_keys(self._db)  # sign with a key rotated elsewhere within a second
        access = self._tokens.issue_access(
            user.id, issued.session.id, user.role_names, " ".join(sorted(user.permissions))
        )
        return IssuedTokens(
            user=user,
            access_token=access,
            refresh_token=issued.refresh_token,
            expires_in=int(self._settings.access_token_ttl.total_seconds()),
            session_id=issued.session.id,
        )
