"""Console pages for roles and the audit log (SPEC §7, §9), gated like their API routes."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from authgate.audit.repository import AuditFilter, AuditRepository
from authgate.db import SessionDep
from authgate.errors import AuthgateError, ConflictError, InvalidInputError
from authgate.pagination import PageParams
from authgate.roles.dependencies import RoleServiceDep
from authgate.roles.models import Role
from authgate.roles.permissions import PERMISSIONS
from authgate.roles.schemas import RoleCreate, RoleUpdate
from authgate.roles.service import RoleService
from authgate.ui.console import (
    CheckedForm,
    Console,
    FormErrors,
    SignedInConsole,
    errors_from_domain,
    errors_from_validation,
    redirect,
    text_field,
)
from authgate.ui.pages_admin import (
    AuditRead,
    RolesManage,
    RolesRead,
    actor_of,
    admin_template,
)
from authgate.ui.pages_common import PageError, holds, next_link, page_params, undo

router = APIRouter(prefix="/ui/admin", include_in_schema=False)


# --- roles -------------------------------------------------------------------------------------


def _permission_names(form: Any) -> list[str]:
    return [n for n in form.getlist("permissions") if isinstance(n, str)]


async def _roles_page(
    console: Console,
    roles: RoleService,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
) -> HTMLResponse:
    rows, _ = await roles.list_page(PageParams(limit=200))
    context = {
        "roles": rows,
        "permissions": sorted(PERMISSIONS.items()),
        "values": values or {"name": "", "description": "", "permissions": []},
        "can_manage": holds(console, "roles:manage"),
    }
    return admin_template(console, "admin_roles.html", context, errors)


@router.get("/roles")
async def roles_page(console: RolesRead, roles: RoleServiceDep) -> HTMLResponse:
    """Every role with its permissions; holders of `roles:manage` create roles here."""
    return await _roles_page(console, roles)


@router.post("/roles", response_model=None)
async def create_role(
    console: SignedInConsole, form: CheckedForm, _: RolesManage, roles: RoleServiceDep
) -> Response:
    """Create a role (`RoleService.create`: known permissions you hold, a new name)."""
    values = {
        "name": text_field(form, "name").strip(),
        "description": text_field(form, "description"),
        "permissions": _permission_names(form),
    }
    try:
        body = RoleCreate.model_validate(values)
        role = await roles.create(body, actor=actor_of(console), held=console.signed_in.permissions)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await undo(console)
        errors = errors_from_domain(exc)
        if exc.code == "conflict":
            errors.fields["name"] = errors.summary
    else:
        return redirect(console, f"/ui/admin/roles/{role.name}?notice=role_created")
    return await _roles_page(console, roles, errors, values)


async def _role(console: Console, roles: RoleService, name: str) -> Role:
    try:
        return await roles.get(name)
    except AuthgateError as exc:
        raise PageError(console, exc) from exc


async def _role_page(
    console: Console,
    roles: RoleService,
    name: str,
    errors: FormErrors | None = None,
    *,
    confirm_force: bool = False,
) -> HTMLResponse:
    role = await _role(console, roles, name)
    context = {
        "role": role,
        "permissions": sorted(PERMISSIONS.items()),
        "can_manage": holds(console, "roles:manage"),
        "confirm_force": confirm_force,
    }
    return admin_template(console, "admin_role.html", context, errors)


@router.get("/roles/{name}")
async def role_page(name: str, console: RolesRead, roles: RoleServiceDep) -> HTMLResponse:
    """One role: its permissions as checkboxes for `roles:manage` holders (built-in roles keep theirs)."""
    return await _role_page(console, roles, name)


@router.post("/roles/{name}", response_model=None)
async def update_role(
    name: str, console: SignedInConsole, form: CheckedForm, _: RolesManage, roles: RoleServiceDep
) -> Response:
    """Change the description and, for custom roles, the permissions (`RoleService.update`)."""
    changes: dict[str, Any] = {"description": text_field(form, "description")}
    if text_field(form, "has_permissions") == "true":  # built-in roles' forms carry no checkboxes
        changes["permissions"] = _permission_names(form)
    try:
        body = RoleUpdate.model_validate(changes)
        await roles.update(name, body, actor=actor_of(console), held=console.signed_in.permissions)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await undo(console)
        errors = errors_from_domain(exc)
    else:
        return redirect(console, f"/ui/admin/roles/{name}?notice=saved")
    return await _role_page(console, roles, name, errors)


@router.post("/roles/{name}/delete", response_model=None)
async def delete_role(
    name: str, console: SignedInConsole, form: CheckedForm, _: RolesManage, roles: RoleServiceDep
) -> Response:
    """Delete a custom role; one still assigned asks for a confirmation (`force`) first."""
    force = text_field(form, "force") == "true"
    try:
        await roles.delete(name, force=force, actor=actor_of(console), held=console.signed_in.permissions)
    except AuthgateError as exc:
        await undo(console)
        role = await _role(console, roles, name)
        confirm = isinstance(exc, ConflictError) and not force and not role.builtin
        return await _role_page(console, roles, name, errors_from_domain(exc), confirm_force=confirm)
    return redirect(console, "/ui/admin/roles?notice=role_deleted")


# --- audit log ---------------------------------------------------------------------------------


class AuditSearch(BaseModel):
    """The audit page's filters, with the API's limits (`GET /api/v1/audit-events`)."""

    model_config = ConfigDict(extra="ignore")

    action: str | None = Field(default=None, max_length=64)
    actor_id: uuid.UUID | None = None
    target_id: uuid.UUID | None = None


@router.get("/audit")
async def audit_page(console: AuditRead, session: SessionDep, request: Request) -> HTMLResponse:
    """The audit log, newest first, with each event's chain hash (shortened)."""
    raw = {
        k: v.strip() for k, v in request.query_params.items() if v.strip() and k in AuditSearch.model_fields
    }
    errors: FormErrors | None = None
    try:
        search = AuditSearch.model_validate(raw)
        params = page_params(request.query_params.get("cursor"), request.query_params.get("limit"))
    except ValidationError as exc:
        search, params, errors = AuditSearch(), page_params(None), errors_from_validation(exc)
    except InvalidInputError as exc:
        search, params, errors = AuditSearch.model_validate(raw), page_params(None), errors_from_domain(exc)
    flt = AuditFilter(
        action=search.action,
        actor_id=str(search.actor_id) if search.actor_id else None,
        target_id=str(search.target_id) if search.target_id else None,
    )
    rows, cursor = await AuditRepository(session).page(flt, params)
    events = [
        {
            "event": e,
            "data": json.dumps(e.data, sort_keys=True, ensure_ascii=False) if e.data else "",
        }
        for e in rows
    ]
    context = {
        "events": events,
        "values": {k: request.query_params.get(k, "") for k in ("action", "actor_id", "target_id")},
        "next_href": next_link(
            "/ui/admin/audit", {**search.model_dump(), "limit": request.query_params.get("limit")}, cursor
        ),
    }
    return admin_template(console, "admin_audit.html", context, errors)
