"""Workspace persistence: lookups by id or slug, memberships, invitations; `flush()` only."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from authgate.errors import ConflictError
from authgate.users.models import User
from authgate.workspaces.errors import AlreadyMemberError
from authgate.workspaces.models import Workspace, WorkspaceInvitation, WorkspaceMember, WorkspaceRole
from authgate.workspaces.schemas import SLUG_MAX, is_uuid_like


class WorkspaceRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_ref(self, ref: str) -> Workspace | None:
        """A live (not deleted) workspace by id or slug; slugs never parse as UUIDs, so they cannot clash."""
        if is_uuid_like(ref):
            condition = Workspace.id == uuid.UUID(ref)
        elif len(ref) <= SLUG_MAX:
            condition = Workspace.slug == ref
        else:
            return None
        return await self.session.scalar(select(Workspace).where(condition, Workspace.deleted_at.is_(None)))

    async def lock(self, workspace_id: uuid.UUID) -> None:
        """Serialise membership changes of a workspace (row lock on PostgreSQL; SQLite locks anyway).

        The row is read afresh: the request loaded it before the lock was granted, and a change
        committed meanwhile (a transfer's `owner_id`) must not be overwritten with its stale value.
        """
        await self.session.execute(
            select(Workspace)
            .where(Workspace.id == workspace_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )

    async def slugs_like(self, base: str) -> set[str]:
        stmt = select(Workspace.slug).where(
            or_(Workspace.slug == base, Workspace.slug.startswith(f"{base}-"))
        )
        return set((await self.session.scalars(stmt)).all())

    async def insert_workspace(self, workspace: Workspace, owner: WorkspaceMember) -> bool:
        """Insert in a SAVEPOINT; False when the slug was taken meanwhile (the unique index is the guard)."""
        try:
            async with self.session.begin_nested():
                self.session.add(workspace)
                await self.session.flush()
                owner.workspace_id = workspace.id
                self.session.add(owner)
                await self.session.flush()
        except IntegrityError as exc:
            if "slug" in str(exc.orig).lower():
                return False
            raise
        return True

    async def flush_slug_change(self) -> bool:
        try:
            async with self.session.begin_nested():
                await self.session.flush()
        except IntegrityError as exc:
            if "slug" in str(exc.orig).lower():
                return False
            raise
        return True

    def mine(self, user_id: uuid.UUID) -> Select[Workspace]:
        return (
            select(Workspace)
            .join(WorkspaceMember, WorkspaceMember.workspace_id == Workspace.id)
            .where(WorkspaceMember.user_id == user_id, Workspace.deleted_at.is_(None))
        )

    def every(self) -> Select[Workspace]:
        return select(Workspace).where(Workspace.deleted_at.is_(None))

    async def roles_of(
        self, user_id: uuid.UUID, workspace_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, WorkspaceRole]:
        if not workspace_ids:
            return {}
        stmt = select(WorkspaceMember.workspace_id, WorkspaceMember.role).where(
            WorkspaceMember.user_id == user_id, WorkspaceMember.workspace_id.in_(workspace_ids)
        )
        return {row[0]: row[1] for row in (await self.session.execute(stmt)).all()}

    async def get_member(
        self, workspace_id: uuid.UUID, user_id: uuid.UUID, *, fresh: bool = False
    ) -> WorkspaceMember | None:
        """One membership; `fresh` re-reads the row even if the session already holds it."""
        stmt = select(WorkspaceMember).where(
            WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == user_id
        )
        if fresh:
            stmt = stmt.execution_options(populate_existing=True)
        return await self.session.scalar(stmt)

    async def get_owner(self, workspace_id: uuid.UUID) -> WorkspaceMember:
        """The owner's membership, re-read (a workspace always has exactly one)."""
        stmt = select(WorkspaceMember).where(
            WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.role == "owner"
        )
        return (await self.session.scalars(stmt.execution_options(populate_existing=True))).one()

    async def in_good_standing(self, user_id: uuid.UUID) -> bool:
        """The account is active and not deleted."""
        stmt = select(User.id).where(User.id == user_id, User.is_active.is_(True), User.deleted_at.is_(None))
        return await self.session.scalar(stmt) is not None

    async def member_by_email(self, workspace_id: uuid.UUID, email_normalized: str) -> bool:
        stmt = (
            select(WorkspaceMember.id)
            .join(User, User.id == WorkspaceMember.user_id)
            .where(
                WorkspaceMember.workspace_id == workspace_id,
                User.email_normalized == email_normalized,
                User.deleted_at.is_(None),  # as in the members list
            )
        )
        return await self.session.scalar(stmt) is not None

    def members(self, workspace_id: uuid.UUID) -> Select[WorkspaceMember]:
        return (
            select(WorkspaceMember)
            .join(User, User.id == WorkspaceMember.user_id)
            .options(joinedload(WorkspaceMember.user))
            .where(WorkspaceMember.workspace_id == workspace_id, User.deleted_at.is_(None))
        )

    async def add_member(self, member: WorkspaceMember) -> WorkspaceMember:
        try:
            async with self.session.begin_nested():
                self.session.add(member)
                await self.session.flush()
        except IntegrityError as exc:
            message = str(exc.orig).lower()
            if "user_id" in message or "uq_workspace_member_workspace_id" in message:
                raise AlreadyMemberError() from exc
            raise ConflictError() from exc
        return member

    async def delete_member(self, member: WorkspaceMember) -> None:
        await self.session.delete(member)
        await self.session.flush()

    def invitations(self, workspace_id: uuid.UUID) -> Select[WorkspaceInvitation]:
        return select(WorkspaceInvitation).where(WorkspaceInvitation.workspace_id == workspace_id)

    async def get_invitation(
        self, workspace_id: uuid.UUID, invitation_id: uuid.UUID
    ) -> WorkspaceInvitation | None:
        stmt = select(WorkspaceInvitation).where(
            WorkspaceInvitation.id == invitation_id, WorkspaceInvitation.workspace_id == workspace_id
        )
        return await self.session.scalar(stmt)

    async def get_invitation_by_hash(self, token_hash: str) -> WorkspaceInvitation | None:
        return await self.session.scalar(
            select(WorkspaceInvitation).where(WorkspaceInvitation.token_hash == token_hash)
        )

    async def pending_for_email(
        self, workspace_id: uuid.UUID, email_normalized: str, now: datetime
    ) -> list[WorkspaceInvitation]:
        stmt = select(WorkspaceInvitation).where(
            WorkspaceInvitation.workspace_id == workspace_id,
            WorkspaceInvitation.email_normalized == email_normalized,
            WorkspaceInvitation.accepted_at.is_(None),
            WorkspaceInvitation.revoked_at.is_(None),
            WorkspaceInvitation.expires_at > now,
        )
        return list((await self.session.scalars(stmt)).all())

    async def consume_invitation(self, invitation_id: uuid.UUID, user_id: uuid.UUID, now: datetime) -> bool:
        """Mark a pending invitation accepted; exactly one of several concurrent callers gets True.

        A conditional UPDATE: on PostgreSQL the second writer waits for the first's row lock and then
        finds the condition false; SQLite's write lock serialises the transactions outright.
        """
        stmt = (
            update(WorkspaceInvitation)
            .where(
                WorkspaceInvitation.id == invitation_id,
                WorkspaceInvitation.accepted_at.is_(None),
                WorkspaceInvitation.revoked_at.is_(None),
                WorkspaceInvitation.expires_at > now,
            )
            .values(accepted_at=now, accepted_by_id=user_id)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(stmt)
        return bool(result.rowcount == 1)  # type: ignore[attr-defined]
