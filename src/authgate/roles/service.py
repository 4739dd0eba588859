"""Role rules; for now the built-in roles, kept in step with the permission catalogue."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.roles.models import Role
from authgate.roles.permissions import BUILTIN_ROLES


async def ensure_builtin_roles(session: AsyncSession) -> None:
    """Create `admin` and `user` if missing and give `admin` the whole catalogue (it grows with releases)."""
    existing = {
        r.name: r for r in (await session.scalars(select(Role).where(Role.name.in_(BUILTIN_ROLES)))).all()
    }
    for name, (description, permissions) in BUILTIN_ROLES.items():
        role = existing.get(name)
        if role is None:
            session.add(
                Role(name=name, description=description, builtin=True, permissions=sorted(permissions))
            )
        elif name == "admin" and set(role.permissions) != permissions:
            role.permissions = sorted(permissions)
    await session.flush()
