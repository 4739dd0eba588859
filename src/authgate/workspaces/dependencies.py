"""The one dependency every workspace route uses: resolve `{ws}` (id or slug) and the caller's role."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path

from authgate.auth.dependencies import CurrentUser, Principal
from authgate.db import SessionDep
from authgate.deps import SettingsDep
from authgate.workspaces.models import WorkspaceRole
from authgate.workspaces.service import Caller, WorkspaceAccess, WorkspaceService


async def get_workspace_service(session: SessionDep, settings: SettingsDep) -> WorkspaceService:
    return WorkspaceService(session, public_url=settings.public_url)


WorkspaceServiceDep = Annotated[WorkspaceService, Depends(get_workspace_service)]


def caller_of(principal: Principal) -> Caller:
    return Caller(
        user=principal.account,
        actor=principal.actor,
        permissions=principal.permissions,
        bound_workspace_id=principal.workspace_id,
    )


async def get_caller(principal: CurrentUser) -> Caller:
    return caller_of(principal)


CallerDep = Annotated[Caller, Depends(get_caller)]


def workspace_access(
    minimum: WorkspaceRole, *, admin: bool = False
) -> Callable[..., Awaitable[WorkspaceAccess]]:
    """A dependency admitting members with at least `minimum` (404 for non-members, 403 when too low).

    With `admin`, holders of `workspaces:admin` pass too, whatever their role in the workspace.
    """

    async def dependency(
        ws: Annotated[str, Path(description="The workspace's id or slug")],
        caller: CallerDep,
        workspaces: WorkspaceServiceDep,
    ) -> WorkspaceAccess:
        return await workspaces.resolve(ws, caller, minimum=minimum, admin=admin)

    dependency.__name__ = f"workspace_{minimum}{'_or_admin' if admin else ''}"
    return dependency


WorkspaceReader = Annotated[WorkspaceAccess, Depends(workspace_access("viewer", admin=True))]
WorkspaceMemberAccess = Annotated[WorkspaceAccess, Depends(workspace_access("viewer"))]
WorkspaceAdmin = Annotated[WorkspaceAccess, Depends(workspace_access("admin"))]
WorkspaceOwner = Annotated[WorkspaceAccess, Depends(workspace_access("owner"))]
WorkspaceOwnerOrAdmin = Annotated[WorkspaceAccess, Depends(workspace_access("owner", admin=True))]
