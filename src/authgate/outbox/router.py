"""The development inbox (SPEC §5, §12): what the courier sent or will send, read from the outbox.

Present only when ENV is development or test; elsewhere both paths answer 404 like any unknown route.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from authgate.db import SessionDep
from authgate.deps import SettingsDep
from authgate.errors import NotFoundError, problem_schema
from authgate.outbox.schemas import InboxItem, InboxRead
from authgate.outbox.service import inbox_page, rendered
from authgate.pagination import PageParamsDep

router = APIRouter(prefix="/dev", tags=["development"])

_pages = Environment(
    loader=PackageLoader("authgate.outbox", "templates"), autoescape=select_autoescape(default=True)
)
# The page itself uses inline styles only; each HTML email is shown in a sandboxed frame.
_INBOX_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"


async def require_dev_tools(settings: SettingsDep) -> None:
    if not settings.exposes_dev_tools:
        raise NotFoundError()


DevTools = Annotated[None, Depends(require_dev_tools)]


async def _items(session: SessionDep, params: PageParamsDep) -> InboxRead:
    rows, cursor = await inbox_page(session, params)
    items = []
    for row in rows:
        body = rendered(row)
        items.append(
            InboxItem(
                id=row.id,
                channel="sms" if row.channel == "sms" else "email",
                to=row.recipient,
                subject=body.subject,
                text=body.text,
                html=body.html,
                status=row.status,
                created_at=row.created_at,
            )
        )
    return InboxRead(items=items, next_cursor=cursor)


InboxDep = Annotated[InboxRead, Depends(_items)]


@router.get("/inbox.json", responses=problem_schema(NotFoundError))
async def inbox_json(_: DevTools, inbox: InboxDep) -> InboxRead:
    """Outbox messages, newest first, with rendered subject, text and HTML (development and test only)."""
    return inbox


@router.get("/inbox", response_class=HTMLResponse, responses=problem_schema(NotFoundError))
async def inbox_html(_: DevTools, inbox: InboxDep) -> HTMLResponse:
    """The same messages as an HTML page (development and test only)."""
    page = _pages.get_template("_inbox_page.html").render(items=inbox.items, next_cursor=inbox.next_cursor)
    return HTMLResponse(page, headers={"Content-Security-Policy": _INBOX_CSP, "Cache-Control": "no-store"})
