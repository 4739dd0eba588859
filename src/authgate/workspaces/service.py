"""Workspace rules: who may see and change what, slugs, the single owner, invitations."""

from __future__ import annotations

import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.service import Actor, AuditLog
from authgate.auth.service import Account
from authgate.db import new_id, utcnow
from authgate.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    SingleUseTokenInvalidError,
)
from authgate.outbox.service import Outbox
from authgate.pagination import PageParams, fetch_page
from authgate.ratelimit.service import LimitStatus, RateLimiter
from authgate.security.opaque import hash_token, new_token
from authgate.users.repository import normalize_email
from authgate.verification.errors import EmailNotVerifiedError
from authgate.workspaces.errors import (
    AlreadyMemberError,
    InvitationEmailMismatchError,
    LastOwnerError,
    SlugTakenError,
)
from authgate.workspaces.models import (
    AssignableRole,
    Workspace,
    WorkspaceInvitation,
    WorkspaceMember,
    WorkspaceRole,
)
from authgate.workspaces.repository import WorkspaceRepository
from authgate.workspaces.schemas import (
    SLUG_MAX,
    SLUG_MIN,
    InvitationCreate,
    WorkspaceCreate,
    WorkspaceUpdate,
    is_uuid_like,
)

ROLE_RANK: dict[WorkspaceRole, int] = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}
ADMIN_PERMISSION = "workspaces:admin"
INVITATION_TTL = timedelta(days=7)
SLUG_ATTEMPTS = 8


def slugify(name: str) -> str:
    """A valid slug base from a display name: ASCII letters and digits joined by single dashes."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    base = re.sub(r"[^a-z0-9]+", "-", ascii_name).strip("-")[: SLUG_MAX - 6].strip("-")
    if len(base) < SLUG_MIN:
        base = f"{base}-workspace" if base else "workspace"
    if is_uuid_like(base):
        base = f"ws-{base}"[: SLUG_MAX - 6].strip("-")
    return base


@dataclass(frozen=True, slots=True)
class Caller:
    """Who acts: the user, their global permissions and an API key's workspace binding, if any."""

    user: Account
    actor: Actor
    permissions: frozenset[str] = frozenset()
    bound_workspace_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class WorkspaceAccess:
    """A resolved workspace and the caller's role in it (None: not a member).

    `by_permission` is set when `workspaces:admin` let the caller in, not their role here.
    """

    workspace: Workspace
    role: WorkspaceRole | None
    caller: Caller
    by_permission: bool = False


@dataclass(frozen=True, slots=True)
class WorkspaceView:
    workspace: Workspace
    role: WorkspaceRole | None


async def count_invitation(limiter: RateLimiter, inviter_id: uuid.UUID) -> LimitStatus | None:
    """`INVITATIONS_PER_USER`: one invitation sent by this account (429 `rate_limited` past it).

    Counted per inviting account across all its workspaces, before anything is written, so a
    refused invitation queues no email. Each invitation emails an address the inviter chose,
    naming a workspace the inviter named: without a limit any account could mail anyone.
    """
    return await limiter.hit("invitations_per_user", f"user:{inviter_id}")


class WorkspaceService:
    def __init__(self, session: AsyncSession, *, public_url: str) -> None:
        self._db = session  # the unit of work: flushes, pages; queries live in the repository
        self._repo = WorkspaceRepository(session)
        self._audit = AuditLog(session)
        self._outbox = Outbox(session)
        self._public_url = public_url.rstrip("/")

    # --- access -------------------------------------------------------------------------------

    async def resolve(
        self, ref: str, caller: Caller, *, minimum: WorkspaceRole, admin: bool = False
    ) -> WorkspaceAccess:
        """The workspace named by id or slug and the caller's role; 404 unless a member, 403 if too low.

        Existence is never revealed: unknown, deleted, out-of-key-scope and not-a-member all answer
        the same 404 before any role is looked at. With `admin`, holders of `workspaces:admin` pass
        whatever their role (reading any workspace, handing one over).
        """
        workspace = await self._repo.get_by_ref(ref)
        if workspace is None:
            raise NotFoundError("Workspace not found")
        if caller.bound_workspace_id is not None and caller.bound_workspace_id != workspace.id:
            raise NotFoundError("Workspace not found")
        member = await self._repo.get_member(workspace.id, caller.user.id)
        role = member.role if member else None
        if role is not None and ROLE_RANK[role] >= ROLE_RANK[minimum]:
            return WorkspaceAccess(workspace, role, caller)
        if admin and ADMIN_PERMISSION in caller.permissions:
            return WorkspaceAccess(workspace, role, caller, by_permission=True)
        if member is None:
            raise NotFoundError("Workspace not found")
        raise PermissionDeniedError(f"This needs the {minimum} role in the workspace")

    # --- workspaces ---------------------------------------------------------------------------

    async def create(self, data: WorkspaceCreate, caller: Caller) -> WorkspaceView:
        """Create a workspace owned by the caller; a generated slug gets `-2`, `-3`... on collision."""
        if caller.bound_workspace_id is not None:
            raise PermissionDeniedError("An API key bound to a workspace cannot create workspaces")
        for attempt in range(SLUG_ATTEMPTS + 1):
            if data.slug is not None:
                candidate = data.slug
            else:
                candidate = await self._free_slug(slugify(data.name), randomise=attempt == SLUG_ATTEMPTS)
            workspace = Workspace(
                id=new_id(),
                slug=candidate,
                name=data.name,
                description=data.description,
                owner_id=caller.user.id,
            )
            owner = WorkspaceMember(user_id=caller.user.id, role="owner")
            if await self._repo.insert_workspace(workspace, owner):
                await self._audit.record(
                    "workspace.created",
                    actor=caller.actor,
                    target_type="workspace",
                    target_id=workspace.id,
                    data={"slug": workspace.slug, "name": workspace.name},
                )
                return WorkspaceView(workspace, "owner")
            if data.slug is not None:
                raise SlugTakenError()
        raise ConflictError("Could not find a free slug; give one explicitly")

    async def _free_slug(self, base: str, *, randomise: bool) -> str:
        if randomise:
            return f"{base}-{secrets.token_hex(3)}"
        taken = await self._repo.slugs_like(base)
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def list_query(self, caller: Caller, *, everything: bool) -> Select[Workspace]:
        if everything and ADMIN_PERMISSION not in caller.permissions:
            raise PermissionDeniedError(f"Missing permission: {ADMIN_PERMISSION}")
        stmt = self._repo.every() if everything else self._repo.mine(caller.user.id)
        if caller.bound_workspace_id is not None:
            stmt = stmt.where(Workspace.id == caller.bound_workspace_id)
        return stmt

    async def list_workspaces(
        self, caller: Caller, params: PageParams, *, everything: bool
    ) -> tuple[list[WorkspaceView], str | None]:
        """The caller's workspaces, or with `everything` (admins) all live ones; newest first."""
        stmt = self.list_query(caller, everything=everything)
        rows, cursor = await fetch_page(self._db, stmt, Workspace.id, params)
        roles = await self._repo.roles_of(caller.user.id, [w.id for w in rows])
        return [WorkspaceView(w, roles.get(w.id)) for w in rows], cursor

    async def update(self, access: WorkspaceAccess, data: WorkspaceUpdate) -> WorkspaceView:
        workspace = access.workspace
        changes: dict[str, Any] = {}
        for field in ("name", "description", "slug"):
            value = getattr(data, field)
            if value is not None and value != getattr(workspace, field):
                changes[field] = value
        if not changes:
            return WorkspaceView(workspace, access.role)
        for field, value in changes.items():
            setattr(workspace, field, value)
        if not await self._repo.flush_slug_change():
            raise SlugTakenError()
        await self._audit.record(
            "workspace.updated",
            actor=access.caller.actor,
            target_type="workspace",
            target_id=workspace.id,
            data={"changed": sorted(changes)},
        )
        return WorkspaceView(workspace, access.role)

    async def delete(self, access: WorkspaceAccess) -> None:
        """Soft delete: the workspace disappears for everyone; its slug stays reserved."""
        access.workspace.deleted_at = utcnow()
        await self._db.flush()
        await self._audit.record(
            "workspace.deleted",
            actor=access.caller.actor,
            target_type="workspace",
            target_id=access.workspace.id,
            data={"slug": access.workspace.slug},
        )

    # --- members ------------------------------------------------------------------------------

    async def list_members(
        self, access: WorkspaceAccess, params: PageParams
    ) -> tuple[list[WorkspaceMember], str | None]:
        stmt = self._repo.members(access.workspace.id)
        rows, cursor = await fetch_page(self._db, stmt, WorkspaceMember.id, params, descending=False)
        return rows, cursor

    async def _lock_as_member(self, access: WorkspaceAccess) -> WorkspaceRole:
        """Lock the workspace, then re-read the caller's role in it.

        The role the route resolved may be stale by the time the lock is granted (a concurrent
        demotion, removal or transfer), so decisions use the re-read one.
        """
        await self._repo.lock(access.workspace.id)
        me = await self._repo.get_member(access.workspace.id, access.caller.user.id, fresh=True)
        if me is None:
            raise NotFoundError("Workspace not found")
        return me.role

    async def _locked(
        self, access: WorkspaceAccess, user_id: uuid.UUID
    ) -> tuple[WorkspaceRole, WorkspaceMember]:
        """Lock the workspace, then re-read the caller's role and the target member."""
        my_role = await self._lock_as_member(access)
        target = await self._repo.get_member(access.workspace.id, user_id, fresh=True)
        if target is None:
            raise NotFoundError("Member not found")
        return my_role, target

    async def change_role(
        self, access: WorkspaceAccess, user_id: uuid.UUID, role: AssignableRole
    ) -> WorkspaceMember:
        """Admins manage members below themselves only; nobody becomes owner except by transfer."""
        my_role, target = await self._locked(access, user_id)
        my_rank = ROLE_RANK[my_role]
        if my_rank < ROLE_RANK["admin"]:
            raise PermissionDeniedError("This needs the admin role in the workspace")
        if target.role == "owner":
            if target.user_id == access.caller.user.id:
                raise LastOwnerError("Transfer ownership before changing your own role")
            raise PermissionDeniedError("Only members below your own role can be managed")
        if ROLE_RANK[target.role] >= my_rank or ROLE_RANK[role] >= my_rank:
            raise PermissionDeniedError("Only members below your own role can be managed")
        if target.role != role:
            old = target.role
            target.role = role
            await self._db.flush()
            await self._audit.record(
                "member.role_changed",
                actor=access.caller.actor,
                target_type="user",
                target_id=target.user_id,
                data={"workspace_id": str(access.workspace.id), "from": old, "to": role},
            )
        await self._load_user(target)
        return target

    async def _load_user(self, member: WorkspaceMember) -> None:
        await self._db.refresh(member, ["user"])

    async def remove_member(self, access: WorkspaceAccess, user_id: uuid.UUID) -> None:
        """Remove someone below you, or leave yourself (the owner cannot leave: transfer first)."""
        my_role, target = await self._locked(access, user_id)
        leaving = target.user_id == access.caller.user.id
        if target.role == "owner":
            if leaving:
                raise LastOwnerError("Transfer ownership before leaving the workspace")
            raise PermissionDeniedError("Only members below your own role can be removed")
        if not leaving and (
            ROLE_RANK[my_role] < ROLE_RANK["admin"] or ROLE_RANK[target.role] >= ROLE_RANK[my_role]
        ):
            raise PermissionDeniedError("Only members below your own role can be removed")
        await self._repo.delete_member(target)
        await self._audit.record(
            "member.left" if leaving else "member.removed",
            actor=access.caller.actor,
            target_type="user",
            target_id=user_id,
            data={"workspace_id": str(access.workspace.id), "role": target.role},
        )

    async def transfer(self, access: WorkspaceAccess, user_id: uuid.UUID) -> WorkspaceView:
        """Make another member, with an account in good standing, the owner; the previous owner stays
        on as admin.

        The owner hands over their own workspace. A holder of `workspaces:admin` may hand over one
        whose owner's account is deactivated or deleted, so it has someone to manage it again (and
        the purge can erase a deleted owner); an active owner's workspace stays theirs to give.
        """
        workspace, caller = access.workspace, access.caller
        await self._repo.lock(workspace.id)
        if not access.by_permission and user_id == caller.user.id:
            raise InvalidInputError("You already own this workspace", ("body", "user_id"))
        owner = await self._repo.get_owner(workspace.id)
        if access.by_permission:
            if await self._repo.in_good_standing(owner.user_id):
                raise PermissionDeniedError("The owner's account is active: only the owner can hand it over")
        elif owner.user_id != caller.user.id:  # lost it to a concurrent transfer
            raise PermissionDeniedError("This needs the owner role in the workspace")
        if user_id == owner.user_id:
            raise InvalidInputError("This member already owns the workspace", ("body", "user_id"))
        target = await self._repo.get_member(workspace.id, user_id, fresh=True)
        if target is None:
            raise InvalidInputError("The new owner must be a member of the workspace", ("body", "user_id"))
        if not await self._repo.in_good_standing(user_id):
            raise InvalidInputError("The new owner's account is deactivated or deleted", ("body", "user_id"))
        # Demote first and flush: the one-owner index is checked row by row.
        owner.role = "admin"
        await self._db.flush()
        target.role = "owner"
        workspace.owner_id = user_id
        await self._db.flush()
        await self._audit.record(
            "workspace.transferred",
            actor=caller.actor,
            target_type="workspace",
            target_id=workspace.id,
            data={"from": str(owner.user_id), "to": str(user_id)},
        )
        if caller.user.id == user_id:
            return WorkspaceView(workspace, "owner")
        return WorkspaceView(workspace, "admin" if caller.user.id == owner.user_id else access.role)

    async def admin_may_transfer(self, access: WorkspaceAccess) -> bool:
        """Whether a `workspaces:admin` holder may hand this workspace over (its owner is gone)."""
        return ADMIN_PERMISSION in access.caller.permissions and not await self._repo.in_good_standing(
            access.workspace.owner_id
        )

    # --- invitations --------------------------------------------------------------------------

    async def invite(
        self, access: WorkspaceAccess, data: InvitationCreate
    ) -> tuple[WorkspaceInvitation, str]:
        """Invite an email with a role below the inviter's; a new invitation replaces a pending one.

        Under the workspace lock, so invitations side by side to one address leave one pending.
        """
        my_rank = ROLE_RANK[await self._lock_as_member(access)]
        if ROLE_RANK[data.role] >= my_rank:
            raise PermissionDeniedError("You can only invite with a role below your own")
        email_normalized = normalize_email(data.email)
        if await self._repo.member_by_email(access.workspace.id, email_normalized):
            raise AlreadyMemberError("Someone with this email is already a member")
        now = utcnow()
        replaced = await self._repo.pending_for_email(access.workspace.id, email_normalized, now)
        if any(ROLE_RANK[old.role] >= my_rank for old in replaced):
            raise PermissionDeniedError("A pending invitation for this email has a role at or above your own")
        for old in replaced:
            old.revoked_at = now
        token = new_token()
        invitation = WorkspaceInvitation(
            workspace_id=access.workspace.id,
            email=data.email,
            email_normalized=email_normalized,
            role=data.role,
            token_hash=hash_token(token),
            invited_by_id=access.caller.user.id,
            created_at=now,
            expires_at=now + INVITATION_TTL,
        )
        self._db.add(invitation)
        await self._db.flush()
        inviter = access.caller.user.full_name or access.caller.user.email
        await self._outbox.enqueue(
            channel="email",
            template="workspace_invitation",
            to=data.email,
            context={
                "workspace_name": access.workspace.name,
                "inviter": inviter,
                "link": self.invitation_link(token),
                "role": data.role,
            },
        )
        await self._audit.record(
            "invitation.created",
            actor=access.caller.actor,
            target_type="invitation",
            target_id=invitation.id,
            data={
                "workspace_id": str(access.workspace.id),
                "email": email_normalized,
                "role": data.role,
                "replaced": [str(old.id) for old in replaced],
            },
        )
        return invitation, token

    def invitation_link(self, token: str) -> str:
        """The console page where the invitee accepts (the emailed link)."""
        return f"{self._public_url}/ui/invitations/accept?token={token}"

    async def describe_invitation(self, token: str) -> tuple[WorkspaceInvitation, Workspace]:
        """A pending invitation and its live workspace; anything else is 400 `token_invalid`."""
        invitation = await self._repo.get_invitation_by_hash(hash_token(token))
        if invitation is None or invitation.status != "pending":
            raise SingleUseTokenInvalidError()
        workspace = await self._repo.get_by_ref(str(invitation.workspace_id))
        if workspace is None:
            raise SingleUseTokenInvalidError()
        return invitation, workspace

    async def list_invitations(
        self, access: WorkspaceAccess, params: PageParams
    ) -> tuple[list[WorkspaceInvitation], str | None]:
        stmt = self._repo.invitations(access.workspace.id)
        rows, cursor = await fetch_page(self._db, stmt, WorkspaceInvitation.id, params)
        return rows, cursor

    async def revoke_invitation(self, access: WorkspaceAccess, invitation_id: uuid.UUID) -> None:
        """Revoke a pending invitation with a role below your own; revoking twice is harmless, an
        accepted one cannot be revoked."""
        my_role = await self._lock_as_member(access)
        invitation = await self._repo.get_invitation(access.workspace.id, invitation_id)
        if invitation is None:
            raise NotFoundError("Invitation not found")
        if ROLE_RANK[invitation.role] >= ROLE_RANK[my_role]:
            raise PermissionDeniedError("Only invitations with a role below your own can be revoked")
        if invitation.accepted_at is not None:
            raise ConflictError("The invitation was already accepted")
        if invitation.revoked_at is not None:
            return
        invitation.revoked_at = utcnow()
        await self._db.flush()
        await self._audit.record(
            "invitation.revoked",
            actor=access.caller.actor,
            target_type="invitation",
            target_id=invitation.id,
            data={"workspace_id": str(access.workspace.id), "email": invitation.email_normalized},
        )

    async def accept(self, token: str, caller: Caller) -> tuple[WorkspaceMember, Workspace]:
        """Join with an invitation: single use, unexpired, for the caller's verified email."""
        if caller.bound_workspace_id is not None:
            raise PermissionDeniedError("An API key bound to a workspace cannot accept invitations")
        invitation, workspace = await self.describe_invitation(token)
        now = utcnow()
        if not caller.user.email_verified:
            raise EmailNotVerifiedError("Verify your email address before accepting an invitation")
        if normalize_email(caller.user.email) != invitation.email_normalized:
            raise InvitationEmailMismatchError()
        # The workspace first, as every membership change takes it (a revoke or a new invitation
        # beside this accept would otherwise lock the two rows in the other order), re-read: it
        # may have been deleted meanwhile.
        await self._repo.lock(workspace.id)
        if workspace.deleted_at is not None:
            raise SingleUseTokenInvalidError()
        # Then consume: of racing requests only the winner goes on, so the losers all answer
        # `token_invalid`. A refusal below rolls the consumption back with the request.
        if not await self._repo.consume_invitation(invitation.id, caller.user.id, now):
            raise SingleUseTokenInvalidError()
        if await self._repo.get_member(workspace.id, caller.user.id) is not None:
            raise AlreadyMemberError()
        member = await self._repo.add_member(
            WorkspaceMember(
                workspace_id=workspace.id, user_id=caller.user.id, role=invitation.role, joined_at=now
            )
        )
        await self._audit.record(
            "invitation.accepted",
            actor=caller.actor,
            target_type="invitation",
            target_id=invitation.id,
            data={"workspace_id": str(workspace.id), "user_id": str(caller.user.id), "role": invitation.role},
        )
        return member, workspace
