from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from authgate.schemas import APIModel, refuse_null

RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]{1,63}$")]
Permission = Annotated[str, StringConstraints(max_length=64)]


class PermissionRead(APIModel):
    name: str
    description: str


class RoleRead(APIModel):
    name: str
    description: str
    permissions: list[str]
    builtin: bool


class RoleCreate(APIModel):
    name: RoleName
    description: Annotated[str, StringConstraints(max_length=200)] = ""
    permissions: list[Permission] = Field(default_factory=list, max_length=100)


class RoleUpdate(APIModel):
    """Fields to change; left out, a field keeps its value (null is 422)."""

    description: Annotated[str, StringConstraints(max_length=200)] | None = None
    permissions: list[Permission] | None = Field(default=None, max_length=100)

    _not_null = refuse_null("description", "permissions")


class RoleAssignment(APIModel):
    roles: list[RoleName] = Field(max_length=50)
