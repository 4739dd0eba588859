"""Access-token resolution shared by request authentication, introspection, forward-auth and the console.

Every authenticated request asks the same question — who is behind these verified claims, and is
their session still open? — so the answer is one prebuilt statement (user, session and roles) read
into a plain, immutable `Account`, without the ORM's identity map or a unit of work around it:

* **SQLite** answers on the event loop's own thread, through a read-only connection of the reader's
  own. An indexed lookup in WAL mode costs tens of microseconds and never waits for a writer; the
  trip to aiosqlite's thread and back (BEGIN, SELECT, COMMIT) costs tens of times more.
* **PostgreSQL** answers from a small asyncpg pool of the reader's own, with the statement prepared
  once per connection and no BEGIN/COMMIT around it: one round trip.
* **A caller-provided session factory** (the test suite runs each test inside one rolled-back
  transaction) is read through that factory, so uncommitted test data stays visible.

Handlers that change the caller's account load the ORM `User` in their own transaction.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authgate.db import SqliteReadOnly, utcnow
from authgate.errors import AccountDisabledError, SessionRevokedError, TokenInvalidError
from authgate.roles.models import Role, user_role
from authgate.security.tokens import AccessClaims
from authgate.sessions.models import LoginSession
from authgate.users.models import User


@dataclass(frozen=True, slots=True)
class Account:
    """The caller's user row and roles as read for this request; a snapshot, never written back."""

    id: uuid.UUID
    email: str
    email_verified: bool
    username: str | None
    full_name: str | None
    phone: str | None
    phone_verified: bool
    is_active: bool
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None
    role_names: tuple[str, ...]
    permissions: frozenset[str]

    @classmethod
    def of(cls, user: User) -> Account:
        """The snapshot of an ORM user loaded with its roles (API keys, a console refresh)."""
        return cls(
            **{name: getattr(user, name) for name in _USER_FIELDS},
            role_names=tuple(user.role_names),
            permissions=user.permissions,
        )


# The fields of `Account` that are columns of the user row, read under the same names.
_USER_FIELDS = tuple(
    field.name for field in fields(Account) if field.name not in {"role_names", "permissions"}
)


@dataclass(frozen=True, slots=True)
class Access:
    """An open session and its signed-in account."""

    account: Account
    session_id: uuid.UUID
    session_last_used_at: datetime


_u, _s, _r = User.__table__.c, LoginSession.__table__.c, Role.__table__.c
# One row per role: the user's columns, the session's state, then the role. `_access_from_rows`
# reads them in this order.
_ACCESS_QUERY = (
    select(
        *(_u[name] for name in _USER_FIELDS),
        _s.expires_at,
        _s.revoked_at,
        _s.last_used_at,
        _r.name,
        _r.permissions,
    )
    .select_from(User.__table__)
    .join(LoginSession.__table__, _s.user_id == _u.id)
    .outerjoin(user_role, user_role.c.user_id == _u.id)
    .outerjoin(Role.__table__, _r.id == user_role.c.role_id)
    .where(_u.id == bindparam("user_id"), _s.id == bindparam("session_id"), _u.deleted_at.is_(None))
    .order_by(_r.name)
)


def _access_from_rows(session_id: uuid.UUID, rows: Sequence[Iterable[Any]]) -> Access:
    """Check the session and the user's state, then fold the one-row-per-role result into an Access."""
    if not rows:
        raise TokenInvalidError("The token's user or session does not exist")
    first = tuple(rows[0])
    user = dict(zip(_USER_FIELDS, first, strict=False))
    expires_at, revoked_at, last_used_at = first[len(_USER_FIELDS) : len(_USER_FIELDS) + 3]
    if revoked_at is not None or expires_at <= utcnow():
        raise SessionRevokedError()
    if not user["is_active"]:
        raise AccountDisabledError()
    roles: list[str] = []
    permissions: set[str] = set()
    for row in rows:
        *_, role_name, role_permissions = row
        if role_name is not None:
            roles.append(role_name)
            permissions.update(role_permissions or ())
    account = Account(**user, role_names=tuple(roles), permissions=frozenset(permissions))
    return Access(account=account, session_id=session_id, session_last_used_at=last_used_at)


class AccessReader(ABC):
    """Runs `_ACCESS_QUERY`; the subclasses differ only in how the statement reaches the database."""

    async def resolve(self, claims: AccessClaims) -> Access:
        """The open session and account behind verified claims, or the 401/403 that says why not.

        A revoked or expired session, a deleted or deactivated user all fail here, so they take
        effect on the next request rather than when the token expires.
        """
        rows = await self._rows({"user_id": claims.user_id, "session_id": claims.session_id})
        return _access_from_rows(claims.session_id, rows)

    @abstractmethod
    async def _rows(self, params: dict[str, uuid.UUID]) -> Sequence[Iterable[Any]]: ...

    async def close(self) -> None:
        return None


class SessionAccessReader(AccessReader):
    """Through the application's session factory: the portable path, and the one tests isolate."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory

    async def _rows(self, params: dict[str, uuid.UUID]) -> Sequence[Iterable[Any]]:
        async with self._factory() as session:  # closing ends the read
            return (await session.execute(_ACCESS_QUERY, params)).all()


class SqliteAccessReader(AccessReader):
    """The statement on the event loop's thread, through a read-only connection of its own."""

    def __init__(self, reads: SqliteReadOnly) -> None:
        self.reads = reads

    async def _rows(self, params: dict[str, uuid.UUID]) -> Sequence[Iterable[Any]]:
        return self.reads.all(_ACCESS_QUERY, params)

    async def close(self) -> None:
        self.reads.close()


class PostgresAccessReader(AccessReader):
    """A small asyncpg pool with the statement prepared per connection, outside any transaction."""

    def __init__(self, engine: AsyncEngine, max_size: int) -> None:
        # The engine's own connect arguments (host, TLS, ...), as SQLAlchemy would pass them.
        self._connect_args = engine.dialect.create_connect_args(engine.url)
        compiled = _ACCESS_QUERY.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._order = tuple(compiled.positiontup or ())
        self._max_size = max_size
        self._pool: Any = None  # asyncpg.Pool, opened on first use
        self._opening = asyncio.Lock()

    async def _open(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]  # only with PostgreSQL

        async with self._opening:
            if self._pool is None:
                args, options = self._connect_args
                accepted = inspect.signature(asyncpg.connect).parameters  # not SQLAlchemy's own options
                self._pool = await asyncpg.create_pool(
                    *args,
                    min_size=1,
                    max_size=self._max_size,
                    init=_decode_json,
                    **{name: value for name, value in options.items() if name in accepted},
                )
        return self._pool

    async def _rows(self, params: dict[str, uuid.UUID]) -> Sequence[Iterable[Any]]:
        pool = self._pool or await self._open()
        rows: Sequence[Iterable[Any]] = await pool.fetch(self._sql, *(params[name] for name in self._order))
        return rows

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _decode_json(conn: Any) -> None:
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


def create_access_reader(
    factory: async_sessionmaker[AsyncSession], engine: AsyncEngine | None, pool_size: int
) -> AccessReader:
    """The direct reader for the engine the factory is bound to; the factory itself otherwise."""
    # A factory bound elsewhere (one connection holding a test's transaction) is read through itself.
    bound_to_engine: bool = engine is not None and factory.kw.get("bind") is engine
    if engine is None or not bound_to_engine:
        return SessionAccessReader(factory)
    if SqliteReadOnly.usable_for(engine):
        return SqliteAccessReader(SqliteReadOnly(engine.url))
    if engine.dialect.name == "postgresql":
        return PostgresAccessReader(engine, pool_size)
    return SessionAccessReader(factory)
