"""Builders for permission tests: grant roles directly in the database, make custom roles, issue keys."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from httpx import AsyncClient
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.roles.models import Role, user_role
from authgate.users.models import User
from tests.factories import signed_in

_roles = itertools.count(1)


async def grant(db: AsyncSession, user_id: str, *roles: str) -> None:
    for name in roles:
        role_id = await db.scalar(select(Role.id).where(Role.name == name))
        await db.execute(insert(user_role).values(user_id=uuid.UUID(user_id), role_id=role_id))
    await db.commit()


async def make_role(db: AsyncSession, *permissions: str) -> str:
    name = f"custom-{next(_roles)}"
    db.add(Role(name=name, description="test", permissions=sorted(permissions)))
    await db.commit()
    return name


async def signed_in_with(
    client: AsyncClient, db: AsyncSession, *permissions: str, **overrides: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """A new user holding exactly `permissions` (through a fresh custom role), and bearer headers."""
    user, headers = await signed_in(client, **overrides)
    await grant(db, user["id"], await make_role(db, *permissions))
    return user, headers


async def admin(client: AsyncClient, db: AsyncSession) -> tuple[dict[str, Any], dict[str, str]]:
    user, headers = await signed_in(client)
    await grant(db, user["id"], "admin")
    return user, headers


async def account(db: AsyncSession, user_id: str) -> User:
    db.expire_all()
    user = await db.get(User, uuid.UUID(user_id))
    assert user is not None
    return user


async def issue_key(client: AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/api-keys", json={"name": "k", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())
