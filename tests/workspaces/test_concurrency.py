"""Races on the real engines: one invitation token accepted at once, one name slugged at once.

These tests commit for real (their own sessionmaker on the `engine`, not the per-test savepoint),
so they create their own rows, restore the audit chain head and delete what they made.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated

import pytest
from fastapi import FastAPI, Header
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from authgate.audit.models import AuditChainHead, AuditEvent
from authgate.auth.dependencies import Principal, get_principal
from authgate.auth.service import Account
from authgate.db import SessionDep, create_sessionmaker, new_id, utcnow
from authgate.main import create_app
from authgate.security.opaque import hash_token
from authgate.users.models import User
from authgate.workspaces.models import Workspace, WorkspaceInvitation, WorkspaceMember
from tests.conftest import make_settings

RACERS = 6


class RealWorld:
    """Committed rows on the real engine and their removal afterwards."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self.factory = factory
        self.user_ids: list[uuid.UUID] = []
        self.head: tuple[int, str] | None = None

    async def start(self) -> None:
        async with self.factory() as s:
            head = await s.get(AuditChainHead, 1)
            self.head = (head.last_seq, head.last_hash) if head else None

    async def user(self, *, verified: bool = True) -> User:
        token = secrets.token_hex(6)
        user = User(
            id=new_id(),
            email=f"race-{token}@example.com",
            email_normalized=f"race-{token}@example.com",
            email_verified=verified,
        )
        async with self.factory() as s, s.begin():
            s.add(user)
        self.user_ids.append(user.id)
        return user

    async def cleanup(self) -> None:
        async with self.factory() as s, s.begin():
            ws_ids = select(Workspace.id).where(Workspace.owner_id.in_(self.user_ids))
            await s.execute(delete(WorkspaceInvitation).where(WorkspaceInvitation.workspace_id.in_(ws_ids)))
            await s.execute(delete(WorkspaceMember).where(WorkspaceMember.workspace_id.in_(ws_ids)))
            await s.execute(delete(Workspace).where(Workspace.owner_id.in_(self.user_ids)))
            await s.execute(delete(User).where(User.id.in_(self.user_ids)))
            # The audit log is append-only for the service; the test rewinds the chain it extended.
            seq = self.head[0] if self.head else 0
            await s.execute(delete(AuditEvent).where(AuditEvent.seq > seq))
            head = await s.get(AuditChainHead, 1)
            if self.head is None and head is not None:
                await s.delete(head)
            elif head is not None and self.head is not None:
                head.last_seq, head.last_hash = self.head


@pytest.fixture
async def real(engine: AsyncEngine) -> AsyncIterator[RealWorld]:
    world = RealWorld(create_sessionmaker(engine))
    await world.start()
    try:
        yield world
    finally:
        await world.cleanup()


@pytest.fixture
async def real_client(engine: AsyncEngine, real: RealWorld) -> AsyncIterator[AsyncClient]:
    """An app on the real sessionmaker; `X-Test-User` names the caller (authentication is not under test)."""
    settings = make_settings(engine.url.render_as_string(hide_password=False))
    app: FastAPI = create_app(settings, sessionmaker=real.factory, engine=engine)

    async def principal(session: SessionDep, x_test_user: Annotated[str, Header()]) -> Principal:
        user = await session.scalar(
            select(User).options(selectinload(User.roles)).where(User.id == uuid.UUID(x_test_user))
        )
        assert user is not None
        return Principal(account=Account.of(user), session_id=None, permissions=user.permissions)

    app.dependency_overrides[get_principal] = principal
    async with AsyncClient(transport=ASGITransport(app=app), base_url="https://test") as c:
        yield c


async def test_concurrent_accepts_of_one_token_exactly_one_wins(
    real: RealWorld, real_client: AsyncClient
) -> None:
    owner = await real.user()
    guest = await real.user()
    token = secrets.token_urlsafe(32)
    workspace = Workspace(id=new_id(), slug=f"race-{secrets.token_hex(5)}", name="Race", owner_id=owner.id)
    async with real.factory() as s, s.begin():
        s.add(workspace)
        await s.flush()
        s.add(WorkspaceMember(workspace_id=workspace.id, user_id=owner.id, role="owner"))
        s.add(
            WorkspaceInvitation(
                workspace_id=workspace.id,
                email=guest.email,
                email_normalized=guest.email_normalized,
                role="member",
                token_hash=hash_token(token),
                expires_at=utcnow() + timedelta(days=7),
            )
        )
    responses = await asyncio.gather(
        *(
            real_client.post(
                "/api/v1/invitations/accept", json={"token": token}, headers={"X-Test-User": str(guest.id)}
            )
            for _ in range(RACERS)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (RACERS - 1), [r.text for r in responses]
    assert all(r.json()["code"] == "token_invalid" for r in responses if r.status_code == 400)
    async with real.factory() as s:
        members = (
            await s.scalars(select(WorkspaceMember).where(WorkspaceMember.workspace_id == workspace.id))
        ).all()
        accepted = await s.scalar(
            select(AuditEvent).where(
                AuditEvent.action == "invitation.accepted",
                AuditEvent.data["workspace_id"].as_string() == str(workspace.id),
            )
        )
    assert sorted(m.role for m in members) == ["member", "owner"]
    assert accepted is not None


async def test_concurrent_creates_with_one_name_get_distinct_slugs(
    real: RealWorld, real_client: AsyncClient
) -> None:
    owner = await real.user()
    name = f"Race {secrets.token_hex(4)}"
    base = name.lower().replace(" ", "-")
    responses = await asyncio.gather(
        *(
            real_client.post(
                "/api/v1/workspaces", json={"name": name}, headers={"X-Test-User": str(owner.id)}
            )
            for _ in range(RACERS)
        )
    )
    assert [r.status_code for r in responses] == [201] * RACERS, [r.text for r in responses]
    slugs = {r.json()["slug"] for r in responses}
    assert slugs == {base} | {f"{base}-{n}" for n in range(2, RACERS + 1)}
    async with real.factory() as s:
        owners = (
            await s.scalars(
                select(WorkspaceMember.role).join(Workspace).where(Workspace.owner_id == owner.id)
            )
        ).all()
    assert owners == ["owner"] * RACERS
