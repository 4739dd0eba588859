"""Request-scoped providers of the role service, for the API and the console alike."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from authgate.db import SessionDep
from authgate.roles.service import RoleService


async def get_role_service(session: SessionDep) -> RoleService:
    return RoleService(session)


RoleServiceDep = Annotated[RoleService, Depends(get_role_service)]
