"""Workspace request and response bodies."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from authgate.schemas import APIModel, Email, Secret, refuse_null
from authgate.workspaces.models import AssignableRole, InvitationStatus, WorkspaceRole

SLUG_RE = re.compile(r"^[a-z0-9](-?[a-z0-9])*$")
SLUG_MIN, SLUG_MAX = 3, 48


def is_uuid_like(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _slug(value: str) -> str:
    if not SLUG_RE.match(value):
        raise ValueError(
            "lower-case letters and digits, single '-' between them, starting and ending alphanumeric"
        )
    if is_uuid_like(value):  # the path accepts an id or a slug: a slug must never read as an id
        raise ValueError("a slug cannot have the form of a UUID")
    return value


Slug = Annotated[str, StringConstraints(min_length=SLUG_MIN, max_length=SLUG_MAX), AfterValidator(_slug)]
WorkspaceName = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
Description = Annotated[str, StringConstraints(max_length=2000)]


class WorkspaceCreate(APIModel):
    name: WorkspaceName
    slug: Slug | None = Field(
        default=None,
        description="3–48 characters `^[a-z0-9](-?[a-z0-9])*$`; generated from the name when absent",
    )
    description: Description = ""


class WorkspaceUpdate(APIModel):
    """Fields to change; left out, a field keeps its value (null is 422; `""` clears the description)."""

    name: WorkspaceName | None = None
    slug: Slug | None = None
    description: Description | None = None

    _not_null = refuse_null("name", "slug", "description")


class WorkspaceRead(APIModel):
    id: uuid.UUID
    slug: str
    name: str
    description: str
    owner_id: uuid.UUID
    my_role: WorkspaceRole | None = Field(
        description="The caller's role; null when a `workspaces:admin` reads a workspace they are not in"
    )
    created_at: datetime
    updated_at: datetime


class MemberRead(APIModel):
    user_id: uuid.UUID
    email: str
    full_name: str | None
    role: WorkspaceRole
    joined_at: datetime


class MemberUpdate(APIModel):
    role: AssignableRole


class TransferRequest(APIModel):
    user_id: uuid.UUID


class MembershipRead(MemberRead):
    """A member item (as in the members list) with the workspace it belongs to."""

    workspace_id: uuid.UUID
    workspace_slug: str
    workspace_name: str


class InvitationCreate(APIModel):
    email: Email
    role: AssignableRole = "member"


class InvitationRead(APIModel):
    id: uuid.UUID
    workspace_id: uuid.UUID
    email: str
    role: AssignableRole
    status: InvitationStatus
    invited_by_id: uuid.UUID | None
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None


class InvitationCreated(InvitationRead):
    token: str = Field(
        description="The single-use invitation token; shown only in this response and the email"
    )


class InvitationAccept(APIModel):
    token: Secret = Field(min_length=1, max_length=256)
