"""The audit log over HTTP (SPEC §9): the full log for auditors, and each user's own security events."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from authgate.audit.repository import AuditFilter, AuditRepository
from authgate.audit.schemas import AuditEventRead
from authgate.auth.dependencies import AUTH_PROBLEMS, CurrentUser, Principal, require_permission
from authgate.db import SessionDep
from authgate.errors import InvalidInputError, PermissionDeniedError, problem_schema
from authgate.pagination import PageParamsDep
from authgate.schemas import Page, Timestamp

router = APIRouter(prefix="/api/v1/audit-events", tags=["audit"])
me_router = APIRouter(prefix="/api/v1/users/me/security-events", tags=["users"])

AuditReaderDep = Annotated[Principal, Depends(require_permission("audit:read"))]


def get_audit_filter(
    actor_id: Annotated[uuid.UUID | None, Query(description="Who acted (a user or API key id)")] = None,
    action: Annotated[
        str | None, Query(max_length=64, description="Exact action, e.g. `auth.login.failed`")
    ] = None,
    target_id: Annotated[uuid.UUID | None, Query(description="The id of what was acted on")] = None,
    since: Annotated[
        Timestamp | None, Query(description="Occurred at or after (ISO 8601; UTC unless an offset is given)")
    ] = None,
    until: Annotated[
        Timestamp | None, Query(description="Occurred before (ISO 8601; UTC unless an offset is given)")
    ] = None,
) -> AuditFilter:
    return AuditFilter(
        actor_id=str(actor_id) if actor_id else None,
        action=action,
        target_id=str(target_id) if target_id else None,
        since=since,
        until=until,
    )


AuditFilterDep = Annotated[AuditFilter, Depends(get_audit_filter)]


@router.get("", responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, InvalidInputError))
async def list_audit_events(
    _: AuditReaderDep, flt: AuditFilterDep, page: PageParamsDep, session: SessionDep
) -> Page[AuditEventRead]:
    """The audit log, newest first; every filter given must match.

    Each event carries its chain `hash`; `authgate audit verify` checks the whole chain.
    """
    rows, cursor = await AuditRepository(session).page(flt, page)
    return Page[AuditEventRead](items=[AuditEventRead.model_validate(r) for r in rows], next_cursor=cursor)


@me_router.get("", responses=problem_schema(*AUTH_PROBLEMS, InvalidInputError))
async def list_my_security_events(
    principal: CurrentUser, page: PageParamsDep, session: SessionDep
) -> Page[AuditEventRead]:
    """Your own sign-ins (and failed attempts), sign-outs, session, password and MFA changes, newest first."""
    rows, cursor = await AuditRepository(session).security_page(principal.user_id, page)
    return Page[AuditEventRead](items=[AuditEventRead.model_validate(r) for r in rows], next_cursor=cursor)
