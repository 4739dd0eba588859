"""The second sign-in step: an `mfa_token` from the password step plus a TOTP or recovery code."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.auth.workflows import AuthWorkflow, IssuedTokens, record_failed_attempt
from authgate.config import Settings
from authgate.db import utcnow
from authgate.errors import AccountDisabledError
from authgate.mfa.errors import MfaInvalidError
from authgate.mfa.service import MfaService
from authgate.ratelimit.bruteforce import LoginGuard, mfa_identifier
from authgate.security.passwords import ClientGone, PasswordHasher
from authgate.users.models import User
from authgate.users.repository import UserRepository
from authgate.users.service import confirm_password
from authgate.verification.notifications import notify_mfa_changed


class MfaLoginWorkflow:
    def __init__(
        self,
        session: AsyncSession,
        factory: async_sessionmaker[AsyncSession],
        settings: Settings,
        auth: AuthWorkflow,
        mfa: MfaService,
    ) -> None:
        self._db, self._factory, self._auth, self._mfa = session, factory, auth, mfa
        self._guard = LoginGuard(settings.rate_limit)

    async def finish(self, raw_token: str, code: str) -> IssuedTokens:
        """Check the code for the challenge's user; the token is spent only by a success.

        Wrong codes count toward the same kind of brute-force wait as passwords (per user).
        """
        challenge = await self._mfa.open_challenge(raw_token)
        identifier = mfa_identifier(challenge.user_id)
        # No known-address pass here: only someone holding the password reaches this step, so the
        # lock-out-the-owner concern of the password step does not apply, and guessing codes must wait.
        await self._guard.check(self._db, identifier, None)
        user = await UserRepository(self._db).get(challenge.user_id)
        if user is None:
            raise MfaInvalidError("The MFA token is invalid or expired; sign in again")
        if not user.is_active:
            raise AccountDisabledError()
        method = await self._mfa.verify_code(user.id, code)
        if method is None:
            await self._record_failure(user.id, identifier)
            raise MfaInvalidError("The code is wrong or was used already")
        # Codes guessed in parallel may have made this user wait meanwhile: a right one then gets
        # the same 429 (and stays unused, as the request rolls back).
        await self._guard.check(self._db, identifier, None)
        challenge.used_at = utcnow()
        await self._guard.reset(self._db, identifier)
        return await self._auth.complete_login(user, mfa=method)

    async def _record_failure(self, user_id: uuid.UUID, identifier: str) -> None:
        # No known-address pass: guessing codes must wait wherever they come from (see `finish`).
        await record_failed_attempt(
            self._db,
            self._factory,
            self._guard,
            reason="mfa_invalid",
            user_id=user_id,
            identifier=identifier,
            spare_known_ips=False,
        )


async def enable_mfa(
    session: AsyncSession, settings: Settings, mfa: MfaService, user: User, code: str
) -> list[str]:
    """Confirm TOTP set-up with a code; the owner is emailed (`mfa_enabled`). Returns the recovery codes."""
    codes = await mfa.enable(user, code)
    await notify_mfa_changed(session, settings, user, enabled=True)
    return codes


async def disable_mfa(
    session: AsyncSession,
    settings: Settings,
    mfa: MfaService,
    passwords: PasswordHasher,
    user: User,
    password: str,
    code: str,
    client_gone: ClientGone | None = None,
) -> None:
    """Turn MFA off with the account password (403 `invalid_credentials` if wrong) and a TOTP or
    recovery code; the owner is emailed (`mfa_disabled`)."""
    await confirm_password(session, passwords, user.id, password, client_gone)
    await mfa.disable(user, code)
    await notify_mfa_changed(session, settings, user, enabled=False)
