"""Administrators' view of the courier: which messages are waiting, sent, or dead (and why)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from authgate.auth.dependencies import AUTH_PROBLEMS, Principal, require_permission
from authgate.db import SessionDep
from authgate.errors import PermissionDeniedError, problem_schema
from authgate.outbox.models import MessageStatus
from authgate.outbox.schemas import OutboxMessageRead
from authgate.outbox.service import admin_page
from authgate.pagination import PageParamsDep
from authgate.schemas import Page

router = APIRouter(prefix="/api/v1/outbox-messages", tags=["outbox"])

OutboxReader = Annotated[Principal, Depends(require_permission("outbox:read"))]


@router.get("", responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError))
async def list_outbox_messages(
    _: OutboxReader,
    session: SessionDep,
    params: PageParamsDep,
    status: Annotated[
        MessageStatus | None, Query(description="Only messages in this state, e.g. `dead`")
    ] = None,
) -> Page[OutboxMessageRead]:
    """Queued, sent and dead messages, newest first (`outbox:read`). Bodies are never shown here.

    A message is `dead` when its transport refused it permanently or it failed `OUTBOX__MAX_ATTEMPTS`
    times; `last_error` says why.
    """
    rows, cursor = await admin_page(session, params, status=status)
    return Page[OutboxMessageRead](
        items=[OutboxMessageRead.model_validate(r) for r in rows], next_cursor=cursor
    )
