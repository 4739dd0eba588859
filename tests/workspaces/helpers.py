"""Builders for workspace tests: direct rows where HTTP is not the point, and a bound-key override."""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from datetime import timedelta
from typing import Annotated, Any

from fastapi import BackgroundTasks, Depends, FastAPI, Request
from httpx import AsyncClient
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.auth.dependencies import Principal, api_key_scheme, bearer_scheme, get_principal
from authgate.db import new_id, utcnow
from authgate.roles.models import Role, user_role
from authgate.security.opaque import hash_token
from authgate.users.models import User
from authgate.workspaces.models import Workspace, WorkspaceInvitation, WorkspaceMember

BOUND_HEADER = "X-Test-Bound-Workspace"


async def create_ws(client: AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Acme Inc")
    response = await client.post("/api/v1/workspaces", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def add_member(
    db: AsyncSession, workspace_id: str | uuid.UUID, user_id: str | uuid.UUID, role: str
) -> None:
    db.add(
        WorkspaceMember(workspace_id=uuid.UUID(str(workspace_id)), user_id=uuid.UUID(str(user_id)), role=role)
    )
    await db.commit()


async def deactivate(db: AsyncSession, user_id: str | uuid.UUID) -> None:
    await db.execute(update(User).where(User.id == uuid.UUID(str(user_id))).values(is_active=False))
    await db.commit()


async def verify_email(db: AsyncSession, user_id: str | uuid.UUID) -> None:
    await db.execute(update(User).where(User.id == uuid.UUID(str(user_id))).values(email_verified=True))
    await db.commit()


async def grant_admin(db: AsyncSession, user_id: str | uuid.UUID) -> None:
    role_id = await db.scalar(select(Role.id).where(Role.name == "admin"))
    await db.execute(insert(user_role).values(user_id=uuid.UUID(str(user_id)), role_id=role_id))
    await db.commit()


async def make_workspace_rows(
    db: AsyncSession, members: dict[str, str | uuid.UUID], *, deleted: bool = False
) -> tuple[Workspace, WorkspaceInvitation]:
    """A workspace with the given role → user members (one must be `owner`) and one pending invitation."""
    owner_id = uuid.UUID(str(members["owner"]))
    workspace = Workspace(id=new_id(), slug=f"ws-{secrets.token_hex(5)}", name="Walk", owner_id=owner_id)
    if deleted:
        workspace.deleted_at = utcnow()
    db.add(workspace)
    await db.flush()
    for role, user_id in members.items():
        db.add(WorkspaceMember(workspace_id=workspace.id, user_id=uuid.UUID(str(user_id)), role=role))
    now = utcnow()
    invitation = WorkspaceInvitation(
        workspace_id=workspace.id,
        email="pending@example.com",
        email_normalized="pending@example.com",
        role="viewer",
        token_hash=hash_token(secrets.token_urlsafe(16)),
        created_at=now,
        expires_at=now + timedelta(days=7),
    )
    db.add(invitation)
    await db.commit()
    return workspace, invitation


def install_bound_key_override(app: FastAPI) -> None:
    """Requests carrying `BOUND_HEADER` act as an API key of the same user bound to that workspace."""

    async def principal_override(
        request: Request,
        bearer: Annotated[str | None, Depends(bearer_scheme)],
        api_key: Annotated[str | None, Depends(api_key_scheme)],
        background: BackgroundTasks,
    ) -> Principal:
        principal = await get_principal(request, bearer, api_key, background)
        bound = request.headers.get(BOUND_HEADER)
        if bound is None:
            return principal
        return dataclasses.replace(
            principal, session_id=None, api_key_id=uuid.uuid4(), workspace_id=uuid.UUID(bound)
        )

    app.dependency_overrides[get_principal] = principal_override
