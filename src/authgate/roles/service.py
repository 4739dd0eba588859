"""Role rules: the built-in roles kept in step with the catalogue, and CRUD for custom roles."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.service import Actor, AuditLog
from authgate.errors import ConflictError, InvalidInputError, PermissionDeniedError
from authgate.pagination import PageParams, fetch_page
from authgate.roles.errors import RoleNotFoundError
from authgate.roles.models import Role, user_role
from authgate.roles.permissions import BUILTIN_ROLES, PERMISSIONS
from authgate.roles.schemas import RoleCreate, RoleUpdate


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


def check_grantable(permissions: set[str] | frozenset[str], held: frozenset[str]) -> None:
    """Nobody grants a permission they do not hold (403)."""
    missing = sorted(set(permissions) - held)
    if missing:
        raise PermissionDeniedError(f"You cannot grant permissions you do not hold: {', '.join(missing)}")


def check_known(permissions: list[str]) -> None:
    unknown = sorted(set(permissions) - set(PERMISSIONS))
    if unknown:
        raise InvalidInputError(f"Unknown permission: {', '.join(unknown)}", ("body", "permissions"))


class RoleService:
    def __init__(self, session: AsyncSession) -> None:
        self._db = session
        self._audit = AuditLog(session)

    async def list_page(self, params: PageParams) -> tuple[list[Role], str | None]:
        return await fetch_page(self._db, select(Role), Role.id, params, descending=False)

    async def get(self, name: str) -> Role:
        role = await self._db.scalar(select(Role).where(Role.name == name))
        if role is None:
            raise RoleNotFoundError()
        return role

    async def create(self, data: RoleCreate, *, actor: Actor, held: frozenset[str]) -> Role:
        check_known(data.permissions)
        check_grantable(set(data.permissions), held)
        if await self._db.scalar(select(Role.id).where(Role.name == data.name)) is not None:
            raise ConflictError("A role with this name exists")
        role = Role(name=data.name, description=data.description, permissions=sorted(set(data.permissions)))
        self._db.add(role)
        try:
            async with self._db.begin_nested():
                await self._db.flush()
        except IntegrityError as exc:  # a concurrent create of the same name
            raise ConflictError("A role with this name exists") from exc
        await self._audit.record(
            "role.created",
            actor=actor,
            target_type="role",
            target_id=role.id,
            data={"name": role.name, "permissions": role.permissions},
        )
        return role

    async def update(self, name: str, data: RoleUpdate, *, actor: Actor, held: frozenset[str]) -> Role:
        role = await self.get(name)
        changes = data.model_dump(exclude_unset=True, exclude_none=True)
        if "permissions" in changes:
            new = set(changes["permissions"])
            check_known(changes["permissions"])
            if role.builtin and new != set(role.permissions):
                raise ConflictError("Built-in roles keep their permissions")
            # Adding and removing are both grants: the caller must hold what changes.
            check_grantable(new ^ set(role.permissions), held)
            role.permissions = sorted(new)
        if "description" in changes:
            role.description = changes["description"]
        await self._db.flush()
        await self._audit.record(
            "role.updated",
            actor=actor,
            target_type="role",
            target_id=role.id,
            data={"name": role.name, "fields": sorted(changes)},
        )
        return role

    async def delete(self, name: str, *, force: bool, actor: Actor, held: frozenset[str]) -> None:
        role = await self.get(name)
        if role.builtin:
            raise ConflictError("Built-in roles cannot be deleted")
        in_use = await self._db.scalar(
            select(user_role.c.user_id).where(user_role.c.role_id == role.id).limit(1)
        )
        if in_use is not None and not force:
            raise ConflictError("The role is assigned to users; pass ?force=true to delete it anyway")
        if in_use is not None:
            check_grantable(set(role.permissions), held)  # taking permissions away from users
        await self._db.execute(delete(user_role).where(user_role.c.role_id == role.id))
        await self._db.delete(role)
        await self._db.flush()
        await self._audit.record(
            "role.deleted",
            actor=actor,
            target_type="role",
            target_id=role.id,
            data={"name": role.name, "forced": in_use is not None},
        )
