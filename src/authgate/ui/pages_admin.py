"""Console pages for administrators: users (SPEC §6); roles and the audit log are in `pages_admin_roles`.

Each admin page is gated by the permission its API route needs, checked with the API's own
`require_permission` (403 page otherwise; the nav hides the item). Changes go through
`UserAdminService` and `RoleService`, which enforce the rest: nobody manages an account holding
permissions they lack, nobody grants what they do not hold, built-in roles stay as they are.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from authgate.audit.service import Actor
from authgate.errors import AuthgateError, InvalidInputError
from authgate.pagination import PageParams
from authgate.roles.dependencies import RoleServiceDep
from authgate.roles.schemas import RoleAssignment
from authgate.roles.service import RoleService
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
from authgate.ui.pages_common import (
    PageError,
    holds,
    next_link,
    page_params,
    parse_id,
    permission_gate,
    undo,
    with_notices,
)
from authgate.users.admin_service import UserAdminService, UserFilters
from authgate.users.dependencies import UserAdminServiceDep
from authgate.users.repository import normalize_email
from authgate.users.schemas import UserEmailChange, UserRead, UserUpdateAdmin

router = APIRouter(prefix="/ui/admin", include_in_schema=False)

UsersRead = Annotated[Console, Depends(permission_gate("users:read"))]
UsersWrite = Annotated[Console, Depends(permission_gate("users:write"))]
UsersDelete = Annotated[Console, Depends(permission_gate("users:delete"))]
RolesAssign = Annotated[Console, Depends(permission_gate("roles:assign"))]
RolesRead = Annotated[Console, Depends(permission_gate("roles:read"))]
RolesManage = Annotated[Console, Depends(permission_gate("roles:manage"))]
AuditRead = Annotated[Console, Depends(permission_gate("audit:read"))]

NOTICES = {
    "user_deleted": "The user was deleted. Their sessions and API keys stopped working.",
    "user_restored": "The user was restored. Their old sessions stay signed out.",
    "roles_saved": "The user's roles were saved. They apply from the user's next request.",
    "role_created": "The role was created.",
    "role_deleted": "The role was deleted.",
}


def admin_template(
    console: Console, template: str, context: dict[str, Any], errors: FormErrors | None = None
) -> HTMLResponse:
    values = {**with_notices(console, NOTICES), **context, "errors": errors}
    return render(console, template, values, status=errors.status if errors else 200)


def actor_of(console: Console) -> Actor:
    return Actor.user(console.signed_in_user_id)


# --- users -------------------------------------------------------------------------------------


class UserSearch(BaseModel):
    """The list page's filters, with the API's limits (`GET /api/v1/users`)."""

    model_config = ConfigDict(extra="ignore")

    q: str | None = Field(default=None, max_length=320)
    is_active: bool | None = None
    role: str | None = Field(default=None, max_length=64)
    deleted: bool = False


@router.get("/users")
async def users_page(console: UsersRead, admin: UserAdminServiceDep, request: Request) -> HTMLResponse:
    """Users, newest first: search by email, username or name prefix; filter by state and role."""
    raw = {k: v for k, v in request.query_params.items() if v != "" and k in UserSearch.model_fields}
    errors: FormErrors | None = None
    try:
        search = UserSearch.model_validate(raw)
        params = page_params(request.query_params.get("cursor"), request.query_params.get("limit"))
    except ValidationError as exc:
        search, params, errors = UserSearch(), page_params(None), errors_from_validation(exc)
    except InvalidInputError as exc:
        search, params, errors = UserSearch.model_validate(raw), page_params(None), errors_from_domain(exc)
    filters = UserFilters(q=search.q, is_active=search.is_active, role=search.role, deleted=search.deleted)
    rows, cursor = await admin.list_page(filters, params)
    query = {**search.model_dump(), "limit": request.query_params.get("limit")}
    context = {
        "users": [UserRead.model_validate(u) for u in rows],
        "deleted": filters.deleted,  # the list holds deleted accounts only, or none
        "values": {k: request.query_params.get(k, "") for k in ("q", "is_active", "role", "deleted")},
        "next_href": next_link("/ui/admin/users", query, cursor),
    }
    return admin_template(console, "admin_users.html", context, errors)


async def _user_page(
    console: Console,
    admin: UserAdminService,
    roles: RoleService,
    user_id: uuid.UUID,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:
    try:
        user = await admin.get(user_id, include_deleted=True)
    except AuthgateError as exc:
        raise PageError(console, exc) from exc
    all_roles: list[str] = []
    if holds(console, "roles:assign"):
        rows, _ = await roles.list_page(PageParams(limit=200))
        all_roles = [r.name for r in rows]
    read = UserRead.model_validate(user)
    context = {
        "user": read,
        "deleted": user.deleted_at is not None,
        "all_roles": all_roles,
        "values": values
        or {
            "email": read.email,
            "username": read.username or "",
            "full_name": read.full_name or "",
            "phone": read.phone or "",
            "is_active": read.is_active,
            "email_verified": read.email_verified,
        },
        "can": {p: holds(console, p) for p in ("users:write", "users:delete", "roles:assign")},
    }
    return admin_template(console, "admin_user.html", context, errors)


@router.get("/users/{user_id}")
async def user_page(
    user_id: str, console: UsersRead, admin: UserAdminServiceDep, roles: RoleServiceDep
) -> HTMLResponse:
    """One user: details, and what the viewer may change (fields, roles, delete or restore)."""
    return await _user_page(console, admin, roles, parse_id(console, user_id, "User not found"))


@router.post("/users/{user_id}", response_model=None)
async def update_user(
    user_id: str,
    console: SignedInConsole,
    form: CheckedForm,
    _: UsersWrite,
    admin: UserAdminServiceDep,
    roles: RoleServiceDep,
) -> Response:
    """Change username, full name, phone, active and verified (`UserAdminService.update`), and the
    email address (`change_email`), in one transaction.

    A new email address starts unverified: the box, ticked for the old address, is not carried over.
    """
    target = parse_id(console, user_id, "User not found")
    fields = ("email", "username", "full_name", "phone")
    values: dict[str, Any] = {name: text_field(form, name) for name in fields}
    values |= {flag: text_field(form, flag) == "true" for flag in ("is_active", "email_verified")}
    email, username = optional_field(form, "email"), optional_field(form, "username")  # empty: kept
    held = console.signed_in.permissions
    try:
        current = await admin.get(target)
        new_email = email is not None and normalize_email(email) != current.email_normalized
        body = UserUpdateAdmin(
            full_name=optional_field(form, "full_name"),
            phone=optional_field(form, "phone"),
            is_active=values["is_active"],
            **({"username": username} if username is not None else {}),
            **({} if new_email else {"email_verified": values["email_verified"]}),
        )
        respelled = email is not None and email.strip() != current.email
        change = UserEmailChange(email=email) if new_email or respelled else None
        await admin.update(target, body, actor=actor_of(console), held=held)
        if change is not None:
            await admin.change_email(target, change, actor=actor_of(console), held=held)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await undo(console)
        errors = errors_from_domain(exc)
    else:
        return redirect(console, f"/ui/admin/users/{target}?notice=saved")
    return await _user_page(console, admin, roles, target, errors, values)


@router.post("/users/{user_id}/roles", response_model=None)
async def set_user_roles(
    user_id: str,
    console: SignedInConsole,
    form: CheckedForm,
    _: RolesAssign,
    admin: UserAdminServiceDep,
    roles: RoleServiceDep,
) -> Response:
    """Replace the user's roles (`UserAdminService.set_roles`: only roles granting what you hold)."""
    target = parse_id(console, user_id, "User not found")
    names = [n for n in form.getlist("roles") if isinstance(n, str)]
    try:
        body = RoleAssignment(roles=names)
        await admin.set_roles(target, body.roles, actor=actor_of(console), held=console.signed_in.permissions)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await undo(console)
        errors = errors_from_domain(exc)
    else:
        return redirect(console, f"/ui/admin/users/{target}?notice=roles_saved")
    return await _user_page(console, admin, roles, target, errors)


@router.post("/users/{user_id}/delete", response_model=None)
async def delete_user(
    user_id: str,
    console: SignedInConsole,
    _form: CheckedForm,
    _: UsersDelete,
    admin: UserAdminServiceDep,
    roles: RoleServiceDep,
) -> Response:
    """Soft-delete the user: sessions and API keys end at once; restore undoes it."""
    target = parse_id(console, user_id, "User not found")
    try:
        await admin.delete(target, actor=actor_of(console), held=console.signed_in.permissions)
    except AuthgateError as exc:
        await undo(console)
        return await _user_page(console, admin, roles, target, errors_from_domain(exc))
    return redirect(console, f"/ui/admin/users/{target}?notice=user_deleted")


@router.post("/users/{user_id}/restore", response_model=None)
async def restore_user(
    user_id: str,
    console: SignedInConsole,
    _form: CheckedForm,
    _: UsersWrite,
    admin: UserAdminServiceDep,
    roles: RoleServiceDep,
) -> Response:
    """Restore a soft-deleted user."""
    target = parse_id(console, user_id, "User not found")
    try:
        await admin.restore(target, actor=actor_of(console), held=console.signed_in.permissions)
    except AuthgateError as exc:
        await undo(console)
        return await _user_page(console, admin, roles, target, errors_from_domain(exc))
    return redirect(console, f"/ui/admin/users/{target}?notice=user_restored")
