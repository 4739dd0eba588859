"""Console pages for a workspace's members and invitations (SPEC §8), behind the same
`WorkspaceService.resolve` gate as every `{ws}` page (`pages_workspaces.workspace_page`).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from authgate.errors import AuthgateError, InvalidInputError
from authgate.ratelimit.dependencies import RateLimiterDep
from authgate.ui.console import (
    CheckedForm,
    FormErrors,
    SignedInConsole,
    errors_from_domain,
    errors_from_validation,
    redirect,
    retry_headers,
    text_field,
)
from authgate.ui.pages_common import next_link, page_params, parse_id, undo
from authgate.ui.pages_workspaces import (
    AdminPage,
    MemberPage,
    Reader,
    WorkspacePage,
    workspace_template,
)
from authgate.workspaces.dependencies import WorkspaceServiceDep
from authgate.workspaces.models import ASSIGNABLE_ROLES
from authgate.workspaces.schemas import InvitationCreate
from authgate.workspaces.service import WorkspaceService, count_invitation

router = APIRouter(prefix="/ui", include_in_schema=False)


# --- members -----------------------------------------------------------------------------------


async def _members(
    page: WorkspacePage,
    workspaces: WorkspaceService,
    cursor: str | None = None,
    errors: FormErrors | None = None,
) -> HTMLResponse:
    try:
        params = page_params(cursor)
    except InvalidInputError as exc:
        params, errors = page_params(None), errors or errors_from_domain(exc)
    rows, next_cursor = await workspaces.list_members(page.access, params)
    members = [
        {
            "user_id": m.user_id,
            "email": m.user.email,
            "full_name": m.user.full_name,
            "role": m.role,
            "joined_at": m.joined_at,
            "is_me": m.user_id == page.console.signed_in_user_id,
        }
        for m in rows
    ]
    context = {
        "ws": page.ws,
        "members": members,
        "next_href": next_link(f"{page.ws.href}/members", {}, next_cursor),
    }
    return workspace_template(page.console, "workspace_members.html", context, errors)


@router.get("/workspaces/{ws}/members")
async def members_page(
    page: Reader, workspaces: WorkspaceServiceDep, cursor: str | None = None
) -> HTMLResponse:
    """The members in the order they joined; admins change roles and remove members here."""
    return await _members(page, workspaces, cursor)


@router.post("/workspaces/{ws}/members/{user_id}/role", response_model=None)
async def change_member_role(
    user_id: str,
    console: SignedInConsole,
    form: CheckedForm,
    page: AdminPage,
    workspaces: WorkspaceServiceDep,
) -> Response:
    """Change a member's role (`WorkspaceService.change_role`: below your own, never to owner)."""
    target = parse_id(console, user_id, "Member not found")
    chosen = text_field(form, "role")
    role = next((r for r in ASSIGNABLE_ROLES if r == chosen), None)
    if role is None:
        error = InvalidInputError("Choose admin, member or viewer", ("body", "role"))
        return await _members(page, workspaces, errors=errors_from_domain(error))
    try:
        await workspaces.change_role(page.access, target, role)
    except AuthgateError as exc:
        await undo(console, page.access.workspace)
        return await _members(page, workspaces, errors=errors_from_domain(exc))
    return redirect(console, f"{page.ws.href}/members?notice=member_updated")


@router.post("/workspaces/{ws}/members/{user_id}/remove", response_model=None)
async def remove_member(
    user_id: str,
    console: SignedInConsole,
    _: CheckedForm,
    page: MemberPage,
    workspaces: WorkspaceServiceDep,
) -> Response:
    """Remove a member below you, or leave with your own id (the owner must transfer first)."""
    target = parse_id(console, user_id, "Member not found")
    try:
        await workspaces.remove_member(page.access, target)
    except AuthgateError as exc:
        await undo(console, page.access.workspace)
        return await _members(page, workspaces, errors=errors_from_domain(exc))
    if target == console.signed_in_user_id:
        return redirect(console, "/ui/workspaces?notice=left")
    return redirect(console, f"{page.ws.href}/members?notice=member_removed")


# --- invitations -------------------------------------------------------------------------------


async def _invitations(
    page: WorkspacePage,
    workspaces: WorkspaceService,
    cursor: str | None = None,
    *,
    errors: FormErrors | None = None,
    values: dict[str, str] | None = None,
    created: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    try:
        params = page_params(cursor)
    except InvalidInputError as exc:
        params, errors = page_params(None), errors or errors_from_domain(exc)
    rows, next_cursor = await workspaces.list_invitations(page.access, params)
    context = {
        "ws": page.ws,
        "invitations": rows,
        "next_href": next_link(f"{page.ws.href}/invitations", {}, next_cursor),
        "values": values or {"email": "", "role": "member"},
        "created": created,
    }
    return workspace_template(page.console, "workspace_invitations.html", context, errors, headers=headers)


@router.get("/workspaces/{ws}/invitations")
async def invitations_page(
    page: AdminPage, workspaces: WorkspaceServiceDep, cursor: str | None = None
) -> HTMLResponse:
    """Invitations with their status (admin or owner), and the form to invite an email address."""
    return await _invitations(page, workspaces, cursor)


@router.post("/workspaces/{ws}/invitations", response_model=None)
async def create_invitation(
    console: SignedInConsole,
    form: CheckedForm,
    page: AdminPage,
    workspaces: WorkspaceServiceDep,
    limiter: RateLimiterDep,
) -> Response:
    """Invite an email with a role below yours; the link is emailed and shown here once.

    Counted against `RATE_LIMIT__INVITATIONS_PER_USER` as the API's invitations are (429 page with
    `Retry-After` past it, nothing sent).
    """
    values = {"email": text_field(form, "email").strip(), "role": text_field(form, "role")}
    try:
        body = InvitationCreate.model_validate(values)
        await count_invitation(limiter, page.access.caller.user.id)
        invitation, token = await workspaces.invite(page.access, body)
    except ValidationError as exc:
        return await _invitations(page, workspaces, errors=errors_from_validation(exc), values=values)
    except AuthgateError as exc:
        await undo(console, page.access.workspace)
        errors = errors_from_domain(exc)
        if exc.code == "already_member":
            errors.fields["email"] = errors.summary
        return await _invitations(page, workspaces, errors=errors, values=values, headers=retry_headers(exc))
    created = {"email": invitation.email, "role": invitation.role, "link": workspaces.invitation_link(token)}
    return await _invitations(page, workspaces, created=created)


@router.post("/workspaces/{ws}/invitations/{invitation_id}/revoke", response_model=None)
async def revoke_invitation(
    invitation_id: str,
    console: SignedInConsole,
    _: CheckedForm,
    page: AdminPage,
    workspaces: WorkspaceServiceDep,
) -> Response:
    """Revoke an invitation (admin or owner); its link stops working."""
    target = parse_id(console, invitation_id, "Invitation not found")
    try:
        await workspaces.revoke_invitation(page.access, target)
    except AuthgateError as exc:
        await undo(console, page.access.workspace)
        return await _invitations(page, workspaces, errors=errors_from_domain(exc))
    return redirect(console, f"{page.ws.href}/invitations?notice=invitation_revoked")
