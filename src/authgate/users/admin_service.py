"""User administration (SPEC §6): list, create, change, soft delete, restore, roles; self-service delete.

Soft delete keeps the row, and with it the email address and username, until the purge after
the retention period (SPEC §6: the email is freed then); until that purge, registering the address
again is 409 `email_taken`, and a restore gives the account back whole.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, selectinload

from authgate.api_keys.models import ApiKey
from authgate.audit.service import Actor, AuditLog
from authgate.auth.service import Account
from authgate.config import Settings
from authgate.db import utcnow
from authgate.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    TokenInvalidError,
)
from authgate.mfa.service import discard_challenges
from authgate.outbox.service import Outbox
from authgate.pagination import PageParams, encode_cursor
from authgate.roles.models import Role, user_role
from authgate.roles.permissions import ADMIN_ROLE, USER_ROLE
from authgate.roles.service import check_grantable
from authgate.security.passwords import ClientGone, PasswordHasher
from authgate.sessions.models import LoginSession
from authgate.users.errors import EmailTakenError, LastAdminError
from authgate.users.models import User, fold_name
from authgate.users.repository import UserRepository, normalize_email
from authgate.users.schemas import UserCreateAdmin, UserEmailChange, UserUpdateAdmin
from authgate.users.service import UserService, confirm_password
from authgate.verification.notifications import SecurityNotifier


@dataclass(frozen=True, slots=True)
class UserFilters:
    q: str | None = None
    is_active: bool | None = None
    role: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    deleted: bool = False


def uuid7_floor(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 that could be generated at `moment` (ids sort by their embedded time);
    before 1970, the smallest of all."""
    return uuid.UUID(int=max(0, int(moment.timestamp() * 1000)) << 80)


class UserAdminService:
    def __init__(self, session: AsyncSession, passwords: PasswordHasher, settings: Settings) -> None:
        self._db, self._passwords, self._settings = session, passwords, settings
        self._users = UserRepository(session)
        self._audit = AuditLog(session)
        self._accounts = UserService(
            self._users,
            passwords,
            self._audit,
            notifier=SecurityNotifier(session, settings),
        )

    async def list_page(self, filters: UserFilters, params: PageParams) -> tuple[list[User], str | None]:
        """One page of users, newest first, shaped so every filter stays index-served at 1M users.

        The keyset is the id (UUIDv7, creation order). Two filters change the ordering column so
        PostgreSQL can walk an index instead of scanning the primary key past non-matching rows:
        `role` orders by `user_role.user_id` (index `(role_id, user_id)`), `created_before` by
        `(created_at, id)` (index on `created_at`). `created_after` also bounds the id, since an
        id is never older than its row's `created_at`.
        """
        stmt = select(User).options(selectinload(User.roles))
        stmt = stmt.where(User.deleted_at.is_not(None) if filters.deleted else User.deleted_at.is_(None))
        if filters.q:
            q = filters.q.strip()
            # Addresses and names are stored case-folded beside the originals, so both engines
            # compare the same way.
            stmt = stmt.where(
                or_(
                    User.email_normalized.startswith(q.casefold(), autoescape=True),
                    User.username.startswith(q.lower(), autoescape=True),
                    User.full_name_folded.startswith(fold_name(q), autoescape=True),
                )
            )
        if filters.is_active is not None:
            stmt = stmt.where(User.is_active.is_(filters.is_active))
        key: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID] = User.id
        if filters.role is not None:
            role_id = await self._db.scalar(select(Role.id).where(Role.name == filters.role))
            if role_id is None:
                return [], None
            stmt = stmt.join(user_role, (user_role.c.user_id == User.id) & (user_role.c.role_id == role_id))
            key = user_role.c.user_id
        if filters.created_after is not None:
            stmt = stmt.where(
                User.created_at >= filters.created_after, User.id >= uuid7_floor(filters.created_after)
            )
        if filters.created_before is not None:
            stmt = stmt.where(User.created_at < filters.created_before)
            if params.after is not None:
                anchor = await self._db.scalar(select(User.created_at).where(User.id == params.after))
                if anchor is None:
                    raise InvalidInputError("Invalid cursor", ("query", "cursor"))
                stmt = stmt.where(
                    or_(User.created_at < anchor, and_(User.created_at == anchor, User.id < params.after))
                )
            stmt = stmt.order_by(User.created_at.desc(), User.id.desc())
        else:
            if params.after is not None:
                stmt = stmt.where(key < params.after)
            stmt = stmt.order_by(key.desc())
        rows = list((await self._db.scalars(stmt.limit(params.limit + 1))).unique().all())
        has_more = len(rows) > params.limit
        rows = rows[: params.limit]
        return rows, encode_cursor(rows[-1].id) if has_more and rows else None

    async def get(self, user_id: uuid.UUID, *, include_deleted: bool = False, lock: bool = False) -> User:
        user = await self._users.get(user_id, include_deleted=include_deleted, lock=lock)
        if user is None:
            raise NotFoundError("User not found")
        return user

    async def create(self, data: UserCreateAdmin, *, inviter: Account, actor: Actor) -> User:
        """Create an account with the `user` role; without a password, email an invitation."""
        digest = None
        if data.password is not None:
            password = data.password.get_secret_value()
            digest = await self._passwords.hash_new(password, user_inputs=[data.email, data.username])
        user = await self._accounts.create(
            email=data.email,
            password_hash=digest,
            roles=[USER_ROLE],
            username=data.username,
            full_name=data.full_name,
            phone=data.phone,
            email_verified=data.email_verified,
        )
        if digest is None:
            # No reset token is minted here: the link leads to "forgot password" for this address,
            # so the invitee sets a password through the normal single-use-token flow.
            query = urlencode({"email": user.email})
            link = f"{self._settings.public_url.rstrip('/')}/ui/password/forgot?{query}"
            await Outbox(self._db).enqueue(
                channel="email",
                template="user_invite",
                to=user.email,
                context={"link": link, "inviter": inviter.full_name or inviter.email},
            )
        await self._audit.record(
            "user.registered",
            actor=actor,
            target_type="user",
            target_id=user.id,
            data={"by_admin": True, "invited": digest is None},
        )
        return user

    def _check_manageable(self, target: User, held: frozenset[str]) -> None:
        """Nobody manages an account that holds permissions they lack (no deactivating a stronger admin)."""
        if not target.permissions <= held:
            raise PermissionDeniedError("The user holds permissions you do not have")

    async def update(
        self, user_id: uuid.UUID, data: UserUpdateAdmin, *, actor: Actor, held: frozenset[str]
    ) -> User:
        deactivating = data.is_active is False
        user = await self.get(user_id, lock=deactivating)  # the last-admin count reads the others
        self._check_manageable(user, held)
        if deactivating:
            await self._keep_an_admin(user)
        changes = data.model_dump(exclude_unset=True)
        return await self._accounts.apply_changes(user, changes, actor=actor, by_admin=True)

    async def change_email(
        self, user_id: uuid.UUID, data: UserEmailChange, *, actor: Actor, held: frozenset[str]
    ) -> User:
        """Give an account a new email address (409 `email_taken` while any account holds it). It
        starts unverified unless `email_verified` vouches for it; links sent to the old address stop
        working, and the old address, if verified, is alerted (`email_changed`).

        Under the row lock: verification and reset links are checked against the address under it.
        """
        user = await self.get(user_id, lock=True)
        self._check_manageable(user, held)
        changes = data.model_dump(exclude_unset=True)  # a new address starts unverified unless vouched for
        if changes["email"] == user.email:
            del changes["email"]  # written as it is stored: nothing to change, nothing to record
        return await self._accounts.apply_changes(user, changes, actor=actor, by_admin=True)

    async def delete(self, user_id: uuid.UUID, *, actor: Actor, held: frozenset[str]) -> None:
        user = await self.get(user_id, lock=True)  # deletes side by side: one wins, the others 404
        self._check_manageable(user, held)
        await self._keep_an_admin(user)
        await self._soft_delete(user, actor)

    async def delete_me(self, user: User, password: str, client_gone: ClientGone | None = None) -> None:
        """Self-service delete, confirmed with the current password (403 `invalid_credentials`)."""
        await confirm_password(self._db, self._passwords, user.id, password, client_gone)
        if await self._users.get(user.id, lock=True) is None:
            # Deleted meanwhile by a request beside this one: answer as the next request would, the
            # caller's session being revoked with the account.
            raise TokenInvalidError("The session has ended")
        await self._keep_an_admin(user)
        await self._soft_delete(user, Actor.user(user.id))

    async def _keep_an_admin(self, user: User) -> None:
        """409 `last_admin` when taking this account away would leave no active account holding
        the `admin` role (call with the account's row locked)."""
        holds_admin = ADMIN_ROLE in user.role_names and user.is_active
        if holds_admin and not await self._users.another_active_admin(user.id):
            raise LastAdminError()

    async def _soft_delete(self, user: User, actor: Actor) -> None:
        """Mark deleted and end every session and API key at once; the address stays taken."""
        now = utcnow()
        user.deleted_at = now
        await self._users.flush()
        await discard_challenges(self._db, user.id)  # before the sessions: see `discard_challenges`
        await self._db.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user.id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self._db.execute(
            update(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=now)
        )
        await self._audit.record("user.deleted", actor=actor, target_type="user", target_id=user.id)

    async def restore(self, user_id: uuid.UUID, *, actor: Actor, held: frozenset[str]) -> User:
        """Undo a soft delete, until the purge erases the account (then 404).

        An account deleted by an earlier release had its normalised address replaced by a
        placeholder; the restore puts the address back, or answers 409 `email_taken` when another
        account holds it meanwhile.
        """
        user = await self.get(user_id, include_deleted=True, lock=True)
        if user.deleted_at is None:
            return user
        self._check_manageable(user, held)
        holder = await self._users.get_by_email(user.email)
        if holder is not None and holder.id != user.id:
            raise EmailTakenError()
        user.deleted_at = None
        user.email_normalized = normalize_email(user.email)
        await self._users.flush()
        await self._audit.record("user.restored", actor=actor, target_type="user", target_id=user.id)
        return user

    async def set_roles(
        self, user_id: uuid.UUID, names: list[str], *, actor: Actor, held: frozenset[str]
    ) -> User:
        """Replace the user's roles; every role added or removed must grant only what the caller holds.

        The row lock makes replacements side by side run one after another: the last one wins whole.
        """
        user = await self.get(user_id, lock=True)
        wanted = sorted(set(names))
        rows = list((await self._db.scalars(select(Role).where(Role.name.in_(wanted)))).all())
        unknown = sorted(set(wanted) - {r.name for r in rows})
        if unknown:
            raise InvalidInputError(f"Unknown role: {', '.join(unknown)}", ("body", "roles"))
        current = {r.name: r for r in user.roles}
        changed = [r for r in rows if r.name not in current] + [
            r for n, r in current.items() if n not in set(wanted)
        ]
        check_grantable({p for r in changed for p in r.permissions}, held)
        if ADMIN_ROLE in current and ADMIN_ROLE not in wanted:
            await self._keep_an_admin(user)
        user.roles = sorted(rows, key=lambda r: r.name)
        await self._users.flush()
        await self._audit.record(
            "user.roles.changed",
            actor=actor,
            target_type="user",
            target_id=user.id,
            data={"before": sorted(current), "after": wanted},
        )
        return user
