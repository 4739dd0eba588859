"""Workspaces, members, invitations and ownership transfer (SPEC §8).

Every route under `/workspaces/{ws}` resolves the workspace and the caller's role through one
dependency (`dependencies.workspace_access`): a non-member gets 404 for everything, a member whose
role is too low 403. `tests/workspaces/test_isolation.py` walks every such route to keep it so.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from authgate.auth.dependencies import AUTH_PROBLEMS
from authgate.bodies import NoBody
from authgate.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    SingleUseTokenInvalidError,
    problem_schema,
)
from authgate.pagination import PageParamsDep
from authgate.ratelimit.dependencies import RateLimiterDep
from authgate.ratelimit.errors import RateLimitExceededError
from authgate.schemas import Page
from authgate.verification.errors import EmailNotVerifiedError
from authgate.workspaces.dependencies import (
    CallerDep,
    WorkspaceAdmin,
    WorkspaceMemberAccess,
    WorkspaceOwner,
    WorkspaceOwnerOrAdmin,
    WorkspaceReader,
    WorkspaceServiceDep,
)
from authgate.workspaces.errors import (
    AlreadyMemberError,
    InvitationEmailMismatchError,
    LastOwnerError,
    SlugTakenError,
)
from authgate.workspaces.models import WorkspaceInvitation, WorkspaceMember
from authgate.workspaces.schemas import (
    InvitationAccept,
    InvitationCreate,
    InvitationCreated,
    InvitationRead,
    MemberRead,
    MembershipRead,
    MemberUpdate,
    TransferRequest,
    WorkspaceCreate,
    WorkspaceRead,
    WorkspaceUpdate,
)
from authgate.workspaces.service import WorkspaceView, count_invitation

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])
invitations_router = APIRouter(prefix="/api/v1/invitations", tags=["workspaces"])

# Problems of every `{ws}` route: hidden or unknown workspace, role too low.
WS_PROBLEMS = (*AUTH_PROBLEMS, NotFoundError, PermissionDeniedError)


def _read(view: WorkspaceView) -> WorkspaceRead:
    w = view.workspace
    return WorkspaceRead(
        id=w.id,
        slug=w.slug,
        name=w.name,
        description=w.description,
        owner_id=w.owner_id,
        my_role=view.role,
        created_at=w.created_at,
        updated_at=w.updated_at,
    )


def _member(m: WorkspaceMember) -> MemberRead:
    return MemberRead(
        user_id=m.user_id,
        email=m.user.email,
        full_name=m.user.full_name,
        role=m.role,
        joined_at=m.joined_at,
    )


def _invitation(i: WorkspaceInvitation) -> InvitationRead:
    return InvitationRead.model_validate(i)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, SlugTakenError, InvalidInputError),
)
async def create_workspace(
    body: WorkspaceCreate, caller: CallerDep, workspaces: WorkspaceServiceDep
) -> WorkspaceRead:
    """Create a workspace; you become its owner.

    Without `slug` one is made from the name (`Acme Inc` → `acme-inc`, then `acme-inc-2`, ... when taken).
    A given slug that is taken answers 409 `slug_taken`. Slugs of deleted workspaces stay reserved.
    """
    return _read(await workspaces.create(body, caller))


@router.get("", responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError))
async def list_workspaces(
    caller: CallerDep,
    workspaces: WorkspaceServiceDep,
    page: PageParamsDep,
    all_: Annotated[
        bool,
        Query(alias="all", description="Every live workspace, not only yours; needs `workspaces:admin`"),
    ] = False,
) -> Page[WorkspaceRead]:
    """The workspaces you belong to, newest first.

    Administrators holding `workspaces:admin` list every workspace with `?all=true` (`my_role` is null
    where they are not a member) and may read any workspace and its members with
    `GET /workspaces/{ws}` and `GET /workspaces/{ws}/members`.
    An API key bound to a workspace sees only that one.
    """
    items, cursor = await workspaces.list_workspaces(caller, page, everything=all_)
    return Page[WorkspaceRead](items=[_read(v) for v in items], next_cursor=cursor)


@router.get("/{ws}", responses=problem_schema(*WS_PROBLEMS))
async def read_workspace(access: WorkspaceReader) -> WorkspaceRead:
    """A workspace you belong to (any role), by id or slug. Non-members get 404, as do deleted workspaces."""
    return _read(WorkspaceView(access.workspace, access.role))


@router.patch("/{ws}", responses=problem_schema(*WS_PROBLEMS, SlugTakenError))
async def update_workspace(
    body: WorkspaceUpdate, access: WorkspaceAdmin, workspaces: WorkspaceServiceDep
) -> WorkspaceRead:
    """Rename a workspace or change its slug or description (admin or owner)."""
    return _read(await workspaces.update(access, body))


@router.delete(
    "/{ws}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*WS_PROBLEMS),
)
async def delete_workspace(
    access: WorkspaceOwner, workspaces: WorkspaceServiceDep, _body: NoBody
) -> Response:
    """Delete a workspace (owner only). It disappears for every member; its slug stays reserved."""
    await workspaces.delete(access)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{ws}/members", responses=problem_schema(*WS_PROBLEMS))
async def list_members(
    access: WorkspaceReader, workspaces: WorkspaceServiceDep, page: PageParamsDep
) -> Page[MemberRead]:
    """The members of a workspace, in the order they joined (any member may read)."""
    rows, cursor = await workspaces.list_members(access, page)
    return Page[MemberRead](items=[_member(m) for m in rows], next_cursor=cursor)


@router.patch("/{ws}/members/{user_id}", responses=problem_schema(*WS_PROBLEMS, LastOwnerError))
async def update_member(
    user_id: uuid.UUID, body: MemberUpdate, access: WorkspaceAdmin, workspaces: WorkspaceServiceDep
) -> MemberRead:
    """Change a member's role (admin or owner). Admins manage members below themselves only, and the
    new role must be below theirs too; `owner` is reached only by `POST /transfer`. The owner
    demoting themselves answers 409 `last_owner`.
    """
    return _member(await workspaces.change_role(access, user_id, body.role))


@router.delete(
    "/{ws}/members/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*WS_PROBLEMS, LastOwnerError),
)
async def remove_member(
    user_id: uuid.UUID,
    access: WorkspaceMemberAccess,
    workspaces: WorkspaceServiceDep,
    _body: NoBody,
) -> Response:
    """Remove a member below you (admin or owner), or leave the workspace with your own user id.

    The owner cannot leave (409 `last_owner`): transfer ownership first.
    """
    await workspaces.remove_member(access, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{ws}/transfer", responses=problem_schema(*WS_PROBLEMS, InvalidInputError))
async def transfer_workspace(
    body: TransferRequest, access: WorkspaceOwnerOrAdmin, workspaces: WorkspaceServiceDep
) -> WorkspaceRead:
    """Hand ownership to another member; the previous owner stays on as admin. A target who is not a
    member, or already the owner, is 422.

    The new owner's account must be active. The owner transfers their own workspace. Holders of
    `workspaces:admin` may transfer one whose owner's account is deactivated or deleted, without being
    a member (403 while the owner's account is active).
    """
    return _read(await workspaces.transfer(access, body.user_id))


@router.post(
    "/{ws}/invitations",
    status_code=status.HTTP_201_CREATED,
    responses=problem_schema(*WS_PROBLEMS, AlreadyMemberError, RateLimitExceededError),
)
async def create_invitation(
    body: InvitationCreate,
    access: WorkspaceAdmin,
    workspaces: WorkspaceServiceDep,
    limiter: RateLimiterDep,
    response: Response,
) -> InvitationCreated:
    """Invite an email address with a role below your own (admin or owner).

    The invitee is emailed a link with a single-use token, valid 7 days; the token is also in this
    response, once. A new invitation for the same email replaces a pending one. Inviting someone
    who is already a member is 409 `already_member`.

    Each account sends at most `RATE_LIMIT__INVITATIONS_PER_USER` invitations (20 an hour by
    default, over all its workspaces); past that 429 `rate_limited` with `Retry-After`, and
    nothing is sent.
    """
    limit_status = await count_invitation(limiter, access.caller.user.id)
    if limit_status is not None:
        response.headers.update(limit_status.headers())
    invitation, token = await workspaces.invite(access, body)
    return InvitationCreated(**_invitation(invitation).model_dump(), token=token)


@router.get("/{ws}/invitations", responses=problem_schema(*WS_PROBLEMS))
async def list_invitations(
    access: WorkspaceAdmin, workspaces: WorkspaceServiceDep, page: PageParamsDep
) -> Page[InvitationRead]:
    """The workspace's invitations, newest first, with their status (admin or owner); never their tokens."""
    rows, cursor = await workspaces.list_invitations(access, page)
    return Page[InvitationRead](items=[_invitation(i) for i in rows], next_cursor=cursor)


@router.delete(
    "/{ws}/invitations/{invitation_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*WS_PROBLEMS, ConflictError),
)
async def revoke_invitation(
    invitation_id: uuid.UUID,
    access: WorkspaceAdmin,
    workspaces: WorkspaceServiceDep,
    _body: NoBody,
) -> Response:
    """Revoke an invitation (admin or owner); its token stops working. An accepted one is 409."""
    await workspaces.revoke_invitation(access, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@invitations_router.post(
    "/accept",
    responses=problem_schema(
        *AUTH_PROBLEMS,
        SingleUseTokenInvalidError,
        EmailNotVerifiedError,
        InvitationEmailMismatchError,
        PermissionDeniedError,
        AlreadyMemberError,
    ),
)
async def accept_invitation(
    body: InvitationAccept, caller: CallerDep, workspaces: WorkspaceServiceDep
) -> MembershipRead:
    """Join a workspace with an invitation token.

    Your email must be verified (403 `email_not_verified`) and equal, in any letter case, to the
    invited one (403 `invitation_email_mismatch`). A used, revoked or expired token is 400
    `token_invalid`; if you are already a member, 409 `already_member`.
    """
    member, workspace = await workspaces.accept(body.token.get_secret_value(), caller)
    return MembershipRead(
        user_id=member.user_id,
        email=caller.user.email,
        full_name=caller.user.full_name,
        role=member.role,
        joined_at=member.joined_at,
        workspace_id=workspace.id,
        workspace_slug=workspace.slug,
        workspace_name=workspace.name,
    )
