"""The RFC 6749 side of `POST /api/v1/auth/token`: every refusal in the OAuth2 error shape.

OAuth2 client libraries parse `{"error": ..., "error_description": ...}` and nothing else, so the
token endpoint answers its bad requests that way, including those FastAPI would otherwise turn into
a problem+json 422 (a field over its length), those the request middleware refuses before
routing (a wrong content type, a NUL character), and "retry later" (429, 503).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.formparsers import MultiPartException

from authgate.errors import RateLimitedError, ServiceBusyError

TOKEN_PATH = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}  # RFC 6749 §5.1
PARAMETERS = ("grant_type", "username", "password", "refresh_token", "scope")


def oauth_error_body(error: str, description: str) -> bytes:
    return json.dumps({"error": error, "error_description": description}).encode()


def oauth_error(
    error: str,
    description: str,
    status_code: int = 400,
    headers: dict[str, str] | None = None,
    **members: str,
) -> JSONResponse:
    """An RFC 6749 §5.2 error; `members` are extra ones (RFC 6749 lets a response carry more)."""
    body = {"error": error, "error_description": description, **members}
    return JSONResponse(body, status_code, headers={**NO_STORE, **(headers or {})})


def _described(exc: RequestValidationError) -> str:
    first = exc.errors()[0] if exc.errors() else {}
    field = next((str(part) for part in reversed(first.get("loc", ())) if isinstance(part, str)), "")
    message = str(first.get("msg", "Invalid request"))
    return f"{field}: {message}" if field and field != "body" else message


class OAuth2Refusal(Exception):  # noqa: N818 - an answer, not a fault
    """An RFC 6749 answer that must also roll the request back; `answer_refusal` sends it."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


async def answer_refusal(request: Request, exc: Exception) -> Response:
    """The exception handler for `OAuth2Refusal` (registered by the app factory)."""
    assert isinstance(exc, OAuth2Refusal)  # noqa: S101 - registered for this class only
    return exc.response


class OAuth2TokenRoute(APIRoute):
    """A route whose refusals are RFC 6749 errors: a parameter sent twice (§3.2) or out of bounds."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                form = await request.form()  # parsed once: the handler below reads the same form
            except MultiPartException as exc:
                return oauth_error("invalid_request", exc.message)
            for name in PARAMETERS:
                if len(form.getlist(name)) > 1:
                    return oauth_error("invalid_request", f"{name}: sent more than once")
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return oauth_error("invalid_request", _described(exc))
            except (RateLimitedError, ServiceBusyError) as exc:
                # RFC 6749 has no error for "later": `temporarily_unavailable` (its §4.1.2.1
                # wording), with the status and `Retry-After` every HTTP client understands.
                # Raised, not returned, so the request's transaction rolls back (a refresh rotated
                # before the per-session limit ran out stays unrotated).
                detail = exc.detail or exc.title
                later = oauth_error(
                    "temporarily_unavailable", detail, exc.status, exc.response_headers(), code=exc.code
                )
                raise OAuth2Refusal(later) from exc

        return route
