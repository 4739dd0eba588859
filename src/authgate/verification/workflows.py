"""Registration with its verification email, and the enumeration-safe variant (SPEC §4)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from authgate.config import Settings
from authgate.outbox.service import Outbox
from authgate.security.passwords import ClientGone
from authgate.users.errors import EmailTakenError
from authgate.users.models import User
from authgate.users.repository import UserRepository
from authgate.users.schemas import UserRegister
from authgate.users.service import UserService
from authgate.verification.notifications import public_link, user_locale
from authgate.verification.service import EmailVerificationService

LOGIN_PATH = "/ui/login"
FORGOT_PATH = "/ui/password/forgot"


class RegistrationWorkflow:
    def __init__(self, session: AsyncSession, users: UserService, settings: Settings) -> None:
        self._db, self._users, self._settings = session, users, settings
        self._emails = EmailVerificationService(session, settings)

    async def register(self, data: UserRegister, client_gone: ClientGone | None = None) -> User | None:
        """Create the account and send its verification email.

        With `FEATURES__ENUMERATION_SAFE_REGISTRATION` a taken email is not an error: the owner
        is emailed instead and the caller gets the same answer (None) after the same password hash.
        """
        if not self._settings.features.enumeration_safe_registration:
            user = await self._users.register(data, client_gone)
            await self._emails.send(user)
            return user
        try:
            user = await self._users.register(data, client_gone)
        except EmailTakenError:
            await (
                self._db.rollback()
            )  # nothing of ours was written; a unique-index race leaves a failed flush
            await self._notify_owner(data.email)
            return None
        await self._emails.send(user)
        return user

    async def _notify_owner(self, email: str) -> None:
        owner = await UserRepository(self._db).get_by_email(email)
        if owner is None or owner.deleted_at is not None:
            return
        await Outbox(self._db).enqueue(
            channel="email",
            template="account_exists",
            to=owner.email,
            locale=await user_locale(self._db, owner),
            context={
                "login_link": public_link(self._settings, LOGIN_PATH),
                "reset_link": public_link(self._settings, FORGOT_PATH),
            },
        )
