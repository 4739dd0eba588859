"""Registration with its verification email, and the enumeration-safe variant (SPEC §4)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from authgate.config import Settings
from authgate.outbox.service import Outbox
from authgate.security.passwords import ClientGone
from authgate.users.errors import EmailTakenError, UsernameTakenError
from authgate.users.models import User
from authgate.users.repository import UserRepository
from authgate.users.schemas import UserRegister
from authgate.users.service import UserService
from authgate.verification.notifications import public_link, user_locale
from authgate.verification.service import REGISTER_PATH, EmailVerificationService

LOGIN_PATH = "/ui/login"
FORGOT_PATH = "/ui/password/forgot"


class RegistrationWorkflow:
    def __init__(self, session: AsyncSession, users: UserService, settings: Settings) -> None:
        self._db, self._users, self._settings = session, users, settings
        self._emails = EmailVerificationService(session, settings)

    async def register(self, data: UserRegister, client_gone: ClientGone | None = None) -> User | None:
        """Create the account and send its verification email.

        With `FEATURES__ENUMERATION_SAFE_REGISTRATION` a taken email or username is not an error:
        the caller gets the same answer (None) after the same password hash, and the mailbox says
        what happened (to the owner of a taken email; to the address given, when only the username
        was taken), so only whoever reads that mailbox learns it.
        """
        if not self._settings.features.enumeration_safe_registration:
            user = await self._users.register(data, client_gone)
            await self._emails.send(user)
            return user
        try:
            user = await self._users.register(data, client_gone)
        except (EmailTakenError, UsernameTakenError) as taken:
            await (
                self._db.rollback()
            )  # nothing of ours was written; a unique-index race leaves a failed flush
            if isinstance(taken, EmailTakenError):
                await self._notify_owner(data.email)
            else:
                await self._notify_username_taken(data)
            return None
        await self._emails.send(user)
        return user

    async def _notify_username_taken(self, data: UserRegister) -> None:
        await Outbox(self._db).enqueue(
            channel="email",
            template="username_taken",
            to=data.email,
            context={"username": data.username, "register_link": public_link(self._settings, REGISTER_PATH)},
        )

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
