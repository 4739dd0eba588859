"""What the workspace and admin pages share: error pages raised from dependencies, permission gates,
their own notices, paging links.

A page dependency that refuses (a hidden workspace, a missing permission) raises `PageError`; the
handler installed by `install_page_errors` rolls nothing back itself (the request's session already
did) and answers the error page with the domain error's own status.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from authgate.auth.dependencies import require_permission
from authgate.errors import AuthgateError, InvalidInputError, NotFoundError
from authgate.pagination import PageParams
from authgate.ui.console import NOTICES, Console, SignedInConsole, errors_from_domain, render

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200  # as `PageParams` allows on the API


class PageError(Exception):
    """A domain error to answer with the error page (not a JSON problem) for this console request."""

    def __init__(self, console: Console, error: AuthgateError) -> None:
        super().__init__(error.detail or error.title)
        self.console = console
        self.error = error


def error_page(console: Console, error: AuthgateError) -> HTMLResponse:
    errors = errors_from_domain(error)
    return render(console, "error.html", {"errors": errors}, status=errors.status)


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)  # noqa: S101 - registered for this class only
    exc.console.refreshed = None  # the request's transaction (and any token rotation) was rolled back
    return error_page(exc.console, exc.error)


def install_page_errors(app: FastAPI) -> None:
    app.add_exception_handler(PageError, _page_error)


def permission_gate(permission: str) -> Callable[..., Awaitable[Console]]:
    """A page dependency admitting holders of `permission`: the API's own `require_permission` check."""
    check = require_permission(permission)

    async def gate(console: SignedInConsole) -> Console:
        try:
            await check(console.signed_in)
        except AuthgateError as exc:
            raise PageError(console, exc) from exc
        return console

    return gate


def holds(console: Console, permission: str) -> bool:
    """Whether to show a control; the service and the gate still decide on submit."""
    return console.principal is not None and permission in console.principal.permissions


def parse_id(console: Console, value: str, what: str = "Not found") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise PageError(console, NotFoundError(what)) from exc


def page_params(cursor: str | None, limit: str | None = None) -> PageParams:
    """Paging for a list page, with the API's bounds; a bad cursor or limit is `InvalidInputError` (422)."""
    size = PAGE_SIZE
    if limit:
        size = int(limit) if limit.isdigit() else 0
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidInputError(f"Between 1 and {MAX_PAGE_SIZE}", ("query", "limit"))
    return PageParams(limit=size, cursor=cursor or None)


def next_link(path: str, query: Mapping[str, Any], cursor: str | None) -> str | None:
    if cursor is None:
        return None
    kept = {k: v for k, v in query.items() if v not in (None, "", False)}
    return f"{path}?{urlencode({**kept, 'cursor': cursor})}"


def with_notices(console: Console, table: Mapping[str, str]) -> dict[str, str | None]:
    """The `notice` for a page: its feature's fixed table first, then the console's."""
    key = console.request.query_params.get("notice", "")
    return {"notice": table.get(key) or NOTICES.get(key)}


async def undo(console: Console, *rows: object) -> None:
    """Roll back a refused change, then re-read the rows the page goes on to use.

    A rollback expires every loaded row, and an expired row would lazy-load (not allowed under
    asyncio) when the page reads it. (The signed-in account is a snapshot and needs no refresh.)
    """
    await console.rollback()
    for row in rows:
        await console.db.refresh(row)
