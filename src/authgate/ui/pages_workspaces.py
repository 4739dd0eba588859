"""Console pages for workspaces (SPEC §8): list and create, overview (edit, transfer, delete) and
accepting an invitation; members and invitations are in `pages_workspace_members`. Every `{ws}` page resolves the workspace and the caller's role through
`WorkspaceService.resolve`, the same call the API's dependency makes: non-members get the 404 page,
roles that are too low the 403 page. The service decides every change; the role ranks only choose
which controls to show.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from authgate.errors import AuthgateError, InvalidInputError, SingleUseTokenInvalidError
from authgate.pagination import PageParams
from authgate.ui.console import (
    CheckedForm,
    Console,
    FormErrors,
    SignedInConsole,
    errors_from_domain,
    errors_from_validation,
    optional_field,
    redirect,
    render,
    text_field,
)
from authgate.ui.pages_common import PageError, next_link, page_params, undo, with_notices
from authgate.workspaces.dependencies import WorkspaceServiceDep, caller_of
from authgate.workspaces.models import ASSIGNABLE_ROLES, AssignableRole, WorkspaceRole
from authgate.workspaces.schemas import WorkspaceCreate, WorkspaceUpdate
from authgate.workspaces.service import ROLE_RANK, WorkspaceAccess, WorkspaceService

router = APIRouter(prefix="/ui", include_in_schema=False)

NOTICES = {
    "workspace_created": "The workspace was created. You are its owner.",
    "workspace_deleted": "The workspace was deleted.",
    "member_updated": "The member's role was changed.",
    "member_removed": "The member was removed.",
    "left": "You left the workspace.",
    "invitation_revoked": "The invitation was revoked.",
    "transferred": "Ownership was transferred. You are now an admin of the workspace.",
    "ownership_moved": "Ownership was transferred. The previous owner is now an admin.",
    "joined": "Welcome! You joined the workspace.",
}


@dataclass(frozen=True, slots=True)
class WorkspaceSnapshot:
    """What the pages show of a workspace; plain values survive the rollback after a refused change."""

    id: uuid.UUID
    slug: str
    name: str
    description: str
    owner_id: uuid.UUID
    created_at: datetime
    role: WorkspaceRole | None

    @property
    def href(self) -> str:
        return f"/ui/workspaces/{self.slug}"

    def at_least(self, role: WorkspaceRole) -> bool:
        return self.role is not None and ROLE_RANK[self.role] >= ROLE_RANK[role]

    def assignable(self) -> list[AssignableRole]:
        """Roles this caller may give (strictly below their own); display only."""
        mine = ROLE_RANK[self.role] if self.role else -1
        return [r for r in ASSIGNABLE_ROLES if ROLE_RANK[r] < mine]

    def manages(self, member_role: WorkspaceRole) -> bool:
        return self.at_least("admin") and ROLE_RANK[member_role] < ROLE_RANK[self.role or "viewer"]


@dataclass(frozen=True, slots=True)
class WorkspacePage:
    console: Console
    access: WorkspaceAccess
    ws: WorkspaceSnapshot


def _snapshot(access: WorkspaceAccess) -> WorkspaceSnapshot:
    w = access.workspace
    return WorkspaceSnapshot(w.id, w.slug, w.name, w.description, w.owner_id, w.created_at, access.role)


def workspace_page(minimum: WorkspaceRole, *, admin: bool = False) -> Callable[..., Awaitable[WorkspacePage]]:
    """Resolve `{ws}` for a page like the API's `workspace_access(minimum)`: 404 page, 403 page, or go."""

    async def dependency(ws: str, console: SignedInConsole, workspaces: WorkspaceServiceDep) -> WorkspacePage:
        try:
            access = await workspaces.resolve(ws, caller_of(console.signed_in), minimum=minimum, admin=admin)
        except AuthgateError as exc:
            raise PageError(console, exc) from exc
        return WorkspacePage(console, access, _snapshot(access))

    return dependency


Reader = Annotated[WorkspacePage, Depends(workspace_page("viewer", admin=True))]
MemberPage = Annotated[WorkspacePage, Depends(workspace_page("viewer"))]
AdminPage = Annotated[WorkspacePage, Depends(workspace_page("admin"))]
OwnerPage = Annotated[WorkspacePage, Depends(workspace_page("owner"))]
TransferPage = Annotated[WorkspacePage, Depends(workspace_page("owner", admin=True))]


def workspace_template(
    console: Console,
    template: str,
    context: dict[str, Any],
    errors: FormErrors | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    values = {**with_notices(console, NOTICES), **context, "errors": errors}
    return render(console, template, values, status=errors.status if errors else 200, headers=headers)


# --- my workspaces -----------------------------------------------------------------------------


async def _list_page(
    console: Console,
    workspaces: WorkspaceService,
    cursor: str | None,
    *,
    values: dict[str, str] | None = None,
    errors: FormErrors | None = None,
) -> HTMLResponse:
    try:
        params = page_params(cursor)
    except InvalidInputError as exc:
        params, errors = page_params(None), errors or errors_from_domain(exc)
    views, next_cursor = await workspaces.list_workspaces(
        caller_of(console.signed_in), params, everything=False
    )
    rows = [_snapshot(WorkspaceAccess(v.workspace, v.role, caller_of(console.signed_in))) for v in views]
    context = {
        "workspaces": rows,
        "next_href": next_link("/ui/workspaces", {}, next_cursor),
        "values": values or {},
    }
    return workspace_template(console, "workspaces.html", context, errors)


@router.get("/workspaces")
async def workspaces_page(
    console: SignedInConsole, workspaces: WorkspaceServiceDep, cursor: str | None = None
) -> HTMLResponse:
    """The workspaces the signed-in user belongs to, and the form to create one."""
    return await _list_page(console, workspaces, cursor)


@router.post("/workspaces", response_model=None)
async def create_workspace(
    console: SignedInConsole, form: CheckedForm, workspaces: WorkspaceServiceDep
) -> Response:
    """Create a workspace (`WorkspaceService.create`); the creator becomes its owner."""
    values = {name: text_field(form, name) for name in ("name", "slug", "description")}
    try:
        body = WorkspaceCreate(
            name=values["name"], slug=optional_field(form, "slug"), description=values["description"]
        )
        view = await workspaces.create(body, caller_of(console.signed_in))
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await undo(console)
        errors = errors_from_domain(exc)
        if exc.code == "slug_taken":
            errors.fields["slug"] = errors.summary
    else:
        return redirect(console, f"/ui/workspaces/{view.workspace.slug}?notice=workspace_created")
    return await _list_page(console, workspaces, None, values=values, errors=errors)


# --- overview: edit, transfer, delete ----------------------------------------------------------


async def _overview(
    page: WorkspacePage,
    workspaces: WorkspaceService,
    *,
    values: dict[str, str] | None = None,
    errors: FormErrors | None = None,
) -> HTMLResponse:
    ws = page.ws
    others: list[Any] = []
    # The owner hands over their workspace; a `workspaces:admin` holder one whose owner is gone.
    hands_over = ws.role == "owner" or await workspaces.admin_may_transfer(page.access)
    if hands_over:  # candidates: every member but the owner
        rows, _ = await workspaces.list_members(page.access, PageParams(limit=200))
        others = [m for m in rows if m.user_id != ws.owner_id]
    context = {
        "ws": ws,
        "hands_over": hands_over,
        "values": values or {"name": ws.name, "slug": ws.slug, "description": ws.description},
        "transfer_candidates": [
            (str(m.user_id), f"{m.user.full_name or m.user.email} ({m.role})") for m in others
        ],
    }
    return workspace_template(page.console, "workspace.html", context, errors)


@router.get("/workspaces/{ws}")
async def workspace_overview(page: Reader, workspaces: WorkspaceServiceDep) -> HTMLResponse:
    """A workspace's details; admins edit it here, the owner transfers or deletes it."""
    return await _overview(page, workspaces)


@router.post("/workspaces/{ws}", response_model=None)
async def update_workspace(
    console: SignedInConsole, form: CheckedForm, page: AdminPage, workspaces: WorkspaceServiceDep
) -> Response:
    """Rename the workspace or change its slug or description (admin or owner)."""
    values = {name: text_field(form, name) for name in ("name", "slug", "description")}
    try:
        slug = optional_field(form, "slug")  # blank: keep the slug
        body = WorkspaceUpdate(
            name=values["name"], description=values["description"], **({"slug": slug} if slug else {})
        )
        view = await workspaces.update(page.access, body)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await undo(console, page.access.workspace)
        errors = errors_from_domain(exc)
        if exc.code == "slug_taken":
            errors.fields["slug"] = errors.summary
    else:
        return redirect(console, f"/ui/workspaces/{view.workspace.slug}?notice=saved")
    return await _overview(page, workspaces, values=values, errors=errors)


@router.post("/workspaces/{ws}/transfer", response_model=None)
async def transfer_workspace(
    console: SignedInConsole, form: CheckedForm, page: TransferPage, workspaces: WorkspaceServiceDep
) -> Response:
    """Hand ownership to another member (the owner, or any `workspaces:admin` holder); the previous
    owner stays on as admin."""
    try:
        target = uuid.UUID(text_field(form, "user_id"))
    except ValueError:
        error: AuthgateError = InvalidInputError("Choose a member", ("body", "user_id"))
        return await _overview(page, workspaces, errors=errors_from_domain(error))
    try:
        await workspaces.transfer(page.access, target)
    except AuthgateError as exc:
        await undo(console, page.access.workspace)
        return await _overview(page, workspaces, errors=errors_from_domain(exc))
    notice = "transferred" if page.ws.role == "owner" else "ownership_moved"
    return redirect(console, f"{page.ws.href}?notice={notice}")


@router.post("/workspaces/{ws}/delete", response_model=None)
async def delete_workspace(
    console: SignedInConsole, form: CheckedForm, page: OwnerPage, workspaces: WorkspaceServiceDep
) -> Response:
    """Delete the workspace (owner only), confirmed by typing its slug."""
    if text_field(form, "confirm_slug").strip() != page.ws.slug:
        error = InvalidInputError("Type the workspace's slug to confirm", ("body", "confirm_slug"))
        return await _overview(page, workspaces, errors=errors_from_domain(error))
    await workspaces.delete(page.access)
    return redirect(console, "/ui/workspaces?notice=workspace_deleted")


# --- accepting an invitation -------------------------------------------------------------------

ACCEPT_HELP = {
    "token_invalid": "This invitation link is wrong, already used, revoked or expired. "
    "Ask the workspace's admins for a new invitation.",
    "email_not_verified": "Verify your email address first, then open the invitation link again.",
    "invitation_email_mismatch": "This invitation was sent to another email address. Sign in with "
    "that address's account, or ask for an invitation to yours.",
    "already_member": "You are already a member of this workspace.",
}


def _accept_error(console: Console, exc: AuthgateError) -> HTMLResponse:
    errors = errors_from_domain(exc)
    help_text = ACCEPT_HELP.get(exc.code)
    return render(
        console, "invitation_accept.html", {"errors": errors, "help": help_text}, status=errors.status
    )


def _token(value: str | None) -> str:
    token = (value or "").strip()
    return token if 0 < len(token) <= 256 else ""


@router.get("/invitations/accept")
async def accept_page(
    console: SignedInConsole, workspaces: WorkspaceServiceDep, token: str | None = None
) -> HTMLResponse:
    """Confirm joining the workspace an invitation link names (the link emailed to the invitee)."""
    raw = _token(token)
    try:
        if not raw:
            raise SingleUseTokenInvalidError()
        invitation, workspace = await workspaces.describe_invitation(raw)
    except AuthgateError as exc:
        return _accept_error(console, exc)
    context = {"token": raw, "workspace_name": workspace.name, "role": invitation.role}
    return render(console, "invitation_accept.html", context)


@router.post("/invitations/accept", response_model=None)
async def accept_submit(
    console: SignedInConsole, form: CheckedForm, workspaces: WorkspaceServiceDep
) -> Response:
    """Join the workspace (`WorkspaceService.accept`: single use, for your verified email)."""
    raw = _token(text_field(form, "token"))
    try:
        if not raw:
            raise SingleUseTokenInvalidError()
        _, workspace = await workspaces.accept(raw, caller_of(console.signed_in))
    except AuthgateError as exc:
        await console.rollback()
        return _accept_error(console, exc)
    return redirect(console, f"/ui/workspaces/{workspace.slug}?notice=joined")
