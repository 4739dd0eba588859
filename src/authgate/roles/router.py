"""Permissions and roles (SPEC §7)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from authgate.auth.dependencies import AUTH_PROBLEMS, CurrentUser, Principal, require_permission
from authgate.bodies import NoBody
from authgate.errors import ConflictError, InvalidInputError, PermissionDeniedError, problem_schema
from authgate.pagination import NamePageParamsDep, PageParamsDep, page_by_name
from authgate.roles.dependencies import RoleServiceDep
from authgate.roles.errors import RoleNotFoundError
from authgate.roles.permissions import PERMISSIONS
from authgate.roles.schemas import PermissionRead, RoleCreate, RoleRead, RoleUpdate
from authgate.schemas import Page

router = APIRouter(prefix="/api/v1", tags=["roles"])

RolesReadDep = Annotated[Principal, Depends(require_permission("roles:read"))]
RolesManageDep = Annotated[Principal, Depends(require_permission("roles:manage"))]
DENIED = problem_schema(*AUTH_PROBLEMS, PermissionDeniedError)


@router.get("/permissions", responses=problem_schema(*AUTH_PROBLEMS))
async def list_permissions(_: CurrentUser, page: NamePageParamsDep) -> Page[PermissionRead]:
    """The permission catalogue (fixed in code), in name order."""
    items, cursor = page_by_name(PERMISSIONS.items(), lambda entry: entry[0], page)
    return Page[PermissionRead](
        items=[PermissionRead(name=name, description=text) for name, text in items], next_cursor=cursor
    )


@router.get("/roles", responses=DENIED)
async def list_roles(_: RolesReadDep, roles: RoleServiceDep, page: PageParamsDep) -> Page[RoleRead]:
    """Every role, oldest first. Needs `roles:read`."""
    items, cursor = await roles.list_page(page)
    return Page[RoleRead](items=[RoleRead.model_validate(r) for r in items], next_cursor=cursor)


@router.post(
    "/roles",
    status_code=status.HTTP_201_CREATED,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, ConflictError, InvalidInputError),
)
async def create_role(body: RoleCreate, principal: RolesManageDep, roles: RoleServiceDep) -> RoleRead:
    """Create a role. Needs `roles:manage` and every permission it grants (403); unknown permission → 422;
    a duplicate name → 409 `conflict`."""
    role = await roles.create(body, actor=principal.actor, held=principal.permissions)
    return RoleRead.model_validate(role)


@router.get(
    "/roles/{name}", responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, RoleNotFoundError)
)
async def read_role(name: str, _: RolesReadDep, roles: RoleServiceDep) -> RoleRead:
    """One role by name. Needs `roles:read`."""
    return RoleRead.model_validate(await roles.get(name))


@router.patch(
    "/roles/{name}",
    responses=problem_schema(
        *AUTH_PROBLEMS, PermissionDeniedError, RoleNotFoundError, ConflictError, InvalidInputError
    ),
)
async def update_role(
    name: str, body: RoleUpdate, principal: RolesManageDep, roles: RoleServiceDep
) -> RoleRead:
    """Change a role's description or permissions. Needs `roles:manage` and every permission added or
    removed; built-in roles keep their permissions (409). Takes effect on the holders' next request."""
    role = await roles.update(name, body, actor=principal.actor, held=principal.permissions)
    return RoleRead.model_validate(role)


@router.delete(
    "/roles/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, RoleNotFoundError, ConflictError),
)
async def delete_role(
    name: str,
    principal: RolesManageDep,
    roles: RoleServiceDep,
    _body: NoBody,
    force: Annotated[bool, Query(description="Delete even when users hold the role")] = False,
) -> None:
    """Delete a custom role. Built-in roles → 409; a role still assigned → 409 unless `?force=true`."""
    await roles.delete(name, force=force, actor=principal.actor, held=principal.permissions)
