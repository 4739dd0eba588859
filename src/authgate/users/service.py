"""Account rules: registration, self-service changes, the first admin."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.service import Actor, AuditLog
from authgate.db import end_read
from authgate.errors import InvalidInputError, WrongPasswordError
from authgate.profiles.models import new_profile_rows
from authgate.roles.permissions import ADMIN_ROLE, USER_ROLE
from authgate.security.passwords import ClientGone, PasswordHasher
from authgate.users.errors import EmailTakenError, UsernameTakenError
from authgate.users.models import User
from authgate.users.repository import UserRepository, normalize_email
from authgate.users.schemas import UserRegister, UserUpdateMe

if TYPE_CHECKING:
    from authgate.users.transfer import ImportedUser
    from authgate.verification.notifications import SecurityNotifier


async def confirm_password(
    session: AsyncSession,
    passwords: PasswordHasher,
    user_id: uuid.UUID,
    password: str,
    client_gone: ClientGone | None = None,
) -> str | None:
    """Check a signed-in user's current password before a sensitive change (403
    `invalid_credentials` if wrong) and return the stored hash it matched.

    The hash is read afresh, and no pooled connection (nor SQLite's write lock) is held while it
    is checked: the read transaction ends first, as for a sign-in.
    """
    stored = await session.scalar(select(User.password_hash).where(User.id == user_id))
    await end_read(session)
    valid, _ = await passwords.verify(password, stored, client_gone)
    if not valid:
        raise WrongPasswordError()
    return stored


class UserService:
    def __init__(
        self,
        users: UserRepository,
        passwords: PasswordHasher,
        audit: AuditLog,
        *,
        notifier: SecurityNotifier | None,
    ) -> None:
        self._users, self._passwords, self._audit = users, passwords, audit
        self._notifier = notifier  # security alerts; None only for the command line's bulk work

    async def register(self, data: UserRegister, client_gone: ClientGone | None = None) -> User:
        """Create an account with the `user` role. The password is hashed before any database work."""
        password = data.password.get_secret_value()
        digest = await self._passwords.hash_new(
            password, user_inputs=[data.email, data.username], client_gone=client_gone
        )
        user = await self.create(
            email=data.email,
            password_hash=digest,
            username=data.username,
            full_name=data.full_name,
            phone=data.phone,
            roles=[USER_ROLE],
        )
        await self._audit.record(
            "user.registered", actor=Actor.user(user.id), target_type="user", target_id=user.id
        )
        return user

    async def create(
        self,
        *,
        email: str,
        password_hash: str | None,
        roles: list[str],
        username: str | None = None,
        full_name: str | None = None,
        phone: str | None = None,
        email_verified: bool = False,
        phone_verified: bool = False,
        is_active: bool = True,
    ) -> User:
        """Insert a user; duplicates answer `email_taken` / `username_taken`, also under races.
        A role name no role has is refused (`InvalidInputError` naming it), not dropped."""
        if await self._users.get_by_email(email) is not None:
            raise EmailTakenError()
        if username is not None and await self._users.get_by_username(username) is not None:
            raise UsernameTakenError()
        found = {name: await self._users.get_role(name) for name in dict.fromkeys(roles)}
        unknown = sorted(name for name, role in found.items() if role is None)
        if unknown:
            raise InvalidInputError(f"Unknown role: {', '.join(unknown)}", ("body", "roles"))
        role_rows = [role for role in found.values() if role is not None]
        user = User(
            email=email.strip(),
            email_normalized=normalize_email(email),
            username=username,
            full_name=full_name,
            phone=phone,
            password_hash=password_hash,
            email_verified=email_verified,
            phone_verified=phone_verified,
            is_active=is_active,
            roles=role_rows,
        )
        await self._users.add(user)
        self._users.session.add_all(new_profile_rows(user.id))  # every user has a profile and settings
        await self._users.flush()
        return user

    async def create_imported(self, row: ImportedUser) -> User:
        """An account from an import file (its hash kept as is, deactivated if it was), recorded as
        `user.registered` by the system in the same transaction; roles beyond the default `user`
        and a deactivation are part of the event."""
        user = await self.create(
            email=row.email,
            password_hash=row.password_hash,
            roles=row.roles,
            username=row.username,
            full_name=row.full_name,
            phone=row.phone,
            email_verified=row.email_verified,
            phone_verified=row.phone_verified and row.phone is not None,
            is_active=row.is_active,
        )
        data: dict[str, object] = {"imported": True}
        if set(row.roles) != {USER_ROLE}:
            data["roles"] = sorted(set(row.roles))
        if not row.is_active:
            data["is_active"] = False
        await self._audit.record(
            "user.registered", actor=Actor.system(), target_type="user", target_id=user.id, data=data
        )
        return user

    async def update_me(self, user: User, data: UserUpdateMe, *, actor: Actor | None = None) -> User:
        """Change the caller's own username, name or phone; a changed phone needs verifying again.
        `actor`: an API key of the user's when one made the change (the user by default)."""
        changes = data.model_dump(exclude_unset=True)
        return await self.apply_changes(user, changes, actor=actor or Actor.user(user.id))

    async def apply_changes(
        self, user: User, changes: dict[str, object], *, actor: Actor, by_admin: bool = False
    ) -> User:
        """Write account fields: emails and usernames stay unique, a new email address or phone is
        unverified, and the owner is alerted where a change could lock them out.

        Records `user.updated` with the names (never the values) of the fields that changed.
        """
        changes, previous_email = dict(changes), None
        if "email" in changes and normalize_email(str(changes["email"])) != user.email_normalized:
            other = await self._users.get_by_email(str(changes["email"]))
            if other is not None and other.id != user.id:
                raise EmailTakenError()
            # Told of the change only if it was proven the owner's: an unverified one may be a typo,
            # a stranger's address that must not learn the new one.
            previous_email = user.email if user.email_verified else None
            changes.setdefault("email_verified", False)  # the new address is not proven yet
        if "username" in changes and changes["username"] != user.username:
            other = await self._users.get_by_username(str(changes["username"]))
            if other is not None and other.id != user.id:
                raise UsernameTakenError()
        # Replacing or removing a verified number is a change that could lock the owner out: alert.
        verified_phone_dropped = False
        if "phone" in changes and changes["phone"] != user.phone:
            verified_phone_dropped = user.phone is not None and user.phone_verified
            user.phone_verified = False
        for field, value in changes.items():
            setattr(user, field, value)
        if "email" in changes:
            user.email_normalized = normalize_email(user.email)
        await self._users.flush()
        if changes:
            data: dict[str, object] = {"fields": sorted(changes)}
            if by_admin:
                data["by_admin"] = True
            await self._audit.record(
                "user.updated", actor=actor, target_type="user", target_id=user.id, data=data
            )
        if self._notifier is not None:
            if previous_email is not None:
                await self._notifier.email_changed(user, previous_email)
            if verified_phone_dropped:
                await self._notifier.phone_changed(user)
        return user

    async def ensure_admin(self, email: str, password: str) -> tuple[User, bool]:
        """The first admin: created with the `admin` role unless that email exists already.

        The password meets the policy registration applies (`InvalidInputError` saying why if not).
        """
        existing = await self._users.get_by_email(email)
        if existing is not None:
            return existing, False
        digest = await self._passwords.hash_new(password, user_inputs=[email])
        user = await self.create(
            email=email, password_hash=digest, roles=[ADMIN_ROLE, USER_ROLE], email_verified=True
        )
        await self._audit.record(
            "user.registered",
            actor=Actor.system(),
            target_type="user",
            target_id=user.id,
            data={"admin": True},
        )
        return user, True
