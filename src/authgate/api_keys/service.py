"""API keys: `ag_<prefix>_<secret>`; the prefix finds the row, only SHA-256(secret) is stored."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.api_keys.errors import ApiKeyNotFoundError
from authgate.api_keys.models import ApiKey
from authgate.api_keys.schemas import ApiKeyCreate
from authgate.audit.service import Actor, AuditLog
from authgate.db import utcnow, write_aside
from authgate.errors import InvalidInputError, PermissionDeniedError
from authgate.pagination import PageParams, fetch_page
from authgate.roles.permissions import PERMISSIONS
from authgate.security.opaque import hash_token, new_token
from authgate.sessions.service import LAST_USED_RESOLUTION
from authgate.workspaces.repository import WorkspaceRepository

KEY_PREFIX = "ag_"
SECRET_BYTES = 32  # 256 bits


async def touch_api_key(factory: async_sessionmaker[AsyncSession], key_id: uuid.UUID, at: datetime) -> None:
    """Stamp a key's last use (at most once a minute); best effort, after the response."""
    stmt = (
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < at - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=at)
    )
    await write_aside(factory, stmt, failure="api_key_touch_failed", api_key_id=str(key_id))


def split_key(raw: str) -> tuple[str, str] | None:
    """`ag_<prefix>_<secret>` → (prefix, secret); None when the shape is wrong."""
    if not raw.startswith(KEY_PREFIX) or len(raw) > 128:
        return None
    prefix, sep, secret = raw[len(KEY_PREFIX) :].partition("_")
    if not sep or not prefix or not secret or len(prefix) > 16:
        return None
    return prefix, secret


def secret_matches(key: ApiKey, secret: str) -> bool:
    return secrets.compare_digest(key.secret_hash.encode(), hash_token(secret).encode())


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key: ApiKey
    raw: str


class ApiKeyService:
    def __init__(self, session: AsyncSession) -> None:
        self._db = session
        self._audit = AuditLog(session)

    async def create(self, owner_id: uuid.UUID, held: frozenset[str], data: ApiKeyCreate) -> IssuedKey:
        """Issue a key whose scopes the owner holds now (they are intersected again at every use)."""
        unknown = sorted(set(data.scopes) - set(PERMISSIONS))
        if unknown:
            raise InvalidInputError(f"Unknown permission: {', '.join(unknown)}", ("body", "scopes"))
        missing = sorted(set(data.scopes) - held)
        if missing:
            raise PermissionDeniedError(f"You do not hold: {', '.join(missing)}")
        if data.expires_at is not None and data.expires_at <= utcnow():
            raise InvalidInputError("expires_at must be in the future", ("body", "expires_at"))
        if data.workspace_id is not None:
            await self._check_membership(owner_id, data.workspace_id)
        prefix, secret = secrets.token_hex(6), new_token(SECRET_BYTES)
        key = ApiKey(
            user_id=owner_id,
            name=data.name,
            prefix=prefix,
            secret_hash=hash_token(secret),
            scopes=sorted(set(data.scopes)),
            workspace_id=data.workspace_id,
            expires_at=data.expires_at,
        )
        self._db.add(key)
        await self._db.flush()
        await self._audit.record(
            "api_key.created",
            actor=Actor.user(owner_id),
            target_type="api_key",
            target_id=key.id,
            data={"name": key.name, "scopes": key.scopes},
        )
        return IssuedKey(key, f"{KEY_PREFIX}{prefix}_{secret}")

    async def _check_membership(self, owner_id: uuid.UUID, workspace_id: uuid.UUID) -> None:
        """A key can be bound only to a live workspace its owner belongs to (others are not revealed)."""
        workspaces = WorkspaceRepository(self._db)
        workspace = await workspaces.get_by_ref(str(workspace_id))
        if workspace is None or await workspaces.get_member(workspace.id, owner_id) is None:
            raise InvalidInputError("Unknown workspace", ("body", "workspace_id"))

    async def list_for(self, owner_id: uuid.UUID, params: PageParams) -> tuple[list[ApiKey], str | None]:
        """One page of the owner's keys that are not revoked, newest first."""
        stmt = select(ApiKey).where(ApiKey.user_id == owner_id, ApiKey.revoked_at.is_(None))
        return await fetch_page(self._db, stmt, ApiKey.id, params)

    async def revoke(self, owner_id: uuid.UUID, key_id: uuid.UUID, actor: Actor) -> None:
        """Revoke one of the owner's keys; another user's (or an unknown) key is 404.

        The row lock makes revocations side by side run one after another: one 204, then 404s.
        """
        key = await self._db.get(ApiKey, key_id, with_for_update=True, populate_existing=True)
        if key is None or key.user_id != owner_id or key.revoked_at is not None:
            raise ApiKeyNotFoundError()
        key.revoked_at = utcnow()
        await self._db.flush()
        await self._audit.record("api_key.revoked", actor=actor, target_type="api_key", target_id=key.id)
