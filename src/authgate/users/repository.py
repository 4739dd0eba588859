"""User persistence: lookups by id, email or username, and inserts that map unique violations."""

from __future__ import annotations

import contextlib
import uuid

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload, selectinload, undefer
from sqlalchemy.orm.attributes import set_committed_value

from authgate.db import utcnow
from authgate.errors import ConflictError
from authgate.roles.models import Role, user_role
from authgate.roles.permissions import ADMIN_ROLE
from authgate.users.errors import EmailTakenError, PhoneTakenError, UsernameTakenError
from authgate.users.models import User


def normalize_email(email: str) -> str:
    """The form addresses are compared in: email-validator's normal form (Unicode NFC, the domain
    decoded from IDNA), trimmed and case-folded. Registration stores this, and sign-in, reset and
    invitations look up this, so `cafe\u0301@x.org` and `café@X.org` are one address. An address
    the validator refuses is only trimmed and case-folded (it matches no account)."""
    value = email.strip()
    if value.isascii() and "xn--" not in value.casefold():
        return value.casefold()  # nothing to compose or decode: the common case, without the validator's cost
    with contextlib.suppress(EmailNotValidError):
        value = validate_email(value, check_deliverability=False, test_environment=True).normalized
    return value.casefold()


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(
        self, user_id: uuid.UUID, *, include_deleted: bool = False, lock: bool = False
    ) -> User | None:
        """The user with their roles. With `lock`, the row is locked until the transaction ends
        (PostgreSQL; on SQLite a writing request holds the database's write lock already) and read
        afresh, so changes that read, decide and write (roles, deletion) run one after another."""
        stmt = select(User).options(selectinload(User.roles)).where(User.id == user_id)
        if not include_deleted:
            stmt = stmt.where(User.deleted_at.is_(None))
        if lock:
            stmt = stmt.with_for_update(of=User).execution_options(populate_existing=True)
        return await self.session.scalar(stmt)

    async def get_by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email_normalized == normalize_email(email)))

    async def get_by_username(self, username: str) -> User | None:
        return await self.session.scalar(select(User).where(User.username == username.lower()))

    async def stamp_login(self, user: User) -> None:
        """Record a sign-in. It is not an edit of the account: `updated_at` keeps its value."""
        now = utcnow()
        await self.session.execute(
            update(User)
            .where(User.id == user.id)
            .values(last_login_at=now, updated_at=User.updated_at)
            .execution_options(synchronize_session=False)
        )
        set_committed_value(user, "last_login_at", now)

    async def get_for_login(self, *, email: str | None = None, username: str | None = None) -> User | None:
        """The account for a sign-in attempt, with its password hash and roles, deleted ones excluded."""
        stmt = (
            select(User)
            .options(undefer(User.password_hash), joinedload(User.roles))  # one statement
            .where(User.deleted_at.is_(None))
        )
        if email is not None:
            stmt = stmt.where(User.email_normalized == normalize_email(email))
        else:
            stmt = stmt.where(User.username == (username or "").strip().lower())
        return (await self.session.execute(stmt)).unique().scalar_one_or_none()

    async def get_role(self, name: str) -> Role | None:
        return await self.session.scalar(select(Role).where(Role.name == name))

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.flush()
        return user

    async def flush(self) -> None:
        """Flush pending changes; the unique indexes are the real guard against duplicates."""
        try:
            await self.session.flush()
        except IntegrityError as exc:
            message = str(exc.orig).lower()
            if "email_normalized" in message:
                raise EmailTakenError() from exc
            if "username" in message:
                raise UsernameTakenError() from exc
            if "phone" in message:
                raise PhoneTakenError() from exc
            raise ConflictError() from exc

    async def another_active_admin(self, user_id: uuid.UUID) -> bool:
        """Whether an active account other than `user_id` holds the `admin` role. Locks that role's
        row first (PostgreSQL; SQLite's write lock does the same), so removals of two admins side
        by side run one after another and the second sees the first."""
        await self.session.execute(select(Role.id).where(Role.name == ADMIN_ROLE).with_for_update())
        stmt = (
            select(User.id)
            .join(user_role, user_role.c.user_id == User.id)
            .join(Role, Role.id == user_role.c.role_id)
            .where(Role.name == ADMIN_ROLE, User.id != user_id, User.is_active, User.deleted_at.is_(None))
            .limit(1)
        )
        return await self.session.scalar(stmt) is not None

    async def any_with_role(self, role_name: str) -> bool:
        stmt = (
            select(User.id)
            .join(user_role, user_role.c.user_id == User.id)
            .join(Role, Role.id == user_role.c.role_id)
            .where(Role.name == role_name, User.deleted_at.is_(None))
            .limit(1)
        )
        return await self.session.scalar(stmt) is not None
