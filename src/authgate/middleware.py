"""Pure ASGI middleware: request id, security headers, body checks, access log and metrics.

One middleware does all of it so the per-request path stays a single wrapper (no
BaseHTTPMiddleware, which copies bodies and runs handlers in another task).

Body checks: the size limit (413) and the content type (415), and text carrying a NUL character
(422) in the path, the query or a JSON or form body. PostgreSQL cannot store NUL in text, and no
field here has a use for it, so it is refused at the door, alike on both engines. The OAuth2 token
endpoint gets the last two as RFC 6749's 400 `invalid_request`, the only error shape its clients read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from typing import Any, NamedTuple

import structlog
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from authgate.auth.oauth2 import TOKEN_PATH, oauth_error_body
from authgate.config import Settings
from authgate.errors import (
    AuthgateError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    problem_body,
)
from authgate.logging import RequestContext, set_request_context
from authgate.ops.metrics import observe_request

log = structlog.get_logger("authgate.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_DOCS_PATHS = ("/docs", "/redoc")
# Sign-out answers also tell the browser to drop this origin's cache and storage. Not "cookies": that
# one clears every cookie of the registrable domain, signing the user out of the sibling apps on
# other subdomains too; authgate's own cookies are expired by name.
_LOGOUT_PATHS = frozenset({"/api/v1/auth/logout", "/api/v1/auth/logout-all"})
# After a sign-out. Not "cookies": that clears every cookie of the registrable domain, signing the
# user out of sibling apps; authgate's own cookies are expired by name (docs/spec-notes.md).
CLEAR_SITE_DATA = '"cache", "storage"'
_API_CSP = b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_CONSOLE_PREFIX = "/ui/"
_CONSOLE_STATIC = "/ui/static/"
# The web console: same-origin styles and forms only, no scripts at all.
_CONSOLE_CSP = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'"
)
_DOCS_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis.com; "
    b"img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    b"font-src 'self' https://fonts.gstatic.com; worker-src 'self' blob:; frame-ancestors 'none'"
)


class _BodyRejectedError(Exception):
    """Raised from `receive` when the body breaks a rule; the middleware answers `state["rejected"]`."""


_NO_CONTENT_DROPS = frozenset({b"content-type", b"content-length"})
_NO_STORE = ((b"cache-control", b"no-store"), (b"pragma", b"no-cache"))
_FORM_PATHS = ("/api/v1/auth/token", "/api/v1/auth/introspect")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a request its client abandoned, in metrics and logs
_UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Refusal(NamedTuple):
    status: int
    content_type: bytes
    body: bytes
    headers: tuple[tuple[bytes, bytes], ...] = ()


def _refusal(path: str, error: AuthgateError, **extra: Any) -> _Refusal:
    """A request refused before routing: the error's problem, or `invalid_request` on the token
    endpoint. A body over the limit stays a 413 problem everywhere: it is refused before anything
    is parsed."""
    detail = error.detail or error.title
    if path == TOKEN_PATH and error.status != 413:
        return _Refusal(400, b"application/json", oauth_error_body("invalid_request", detail), _NO_STORE)
    members = {**error.extensions, **extra}
    problem = problem_body(
        status=error.status, code=error.code, title=error.title, detail=detail, instance=path, **members
    )
    return _Refusal(error.status, b"application/problem+json", json.dumps(problem).encode())


def _too_large(path: str, limit: int) -> _Refusal:
    return _refusal(path, PayloadTooLargeError(f"The request body is larger than {limit} bytes"))


def _nul_character(path: str, where: str) -> _Refusal:
    return _refusal(
        path,
        InvalidInputError("Text must not contain NUL characters", (where,)),
        errors=[{"loc": [where], "msg": "must not contain NUL characters", "type": "nul_character"}],
    )


def _expected_media_type(path: str) -> str:
    if path.endswith("/avatar"):
        return "multipart/form-data"
    if path in _FORM_PATHS or path.startswith(_CONSOLE_PREFIX):
        return "application/x-www-form-urlencoded"
    return "application/json"


def _media_type(content_type: str | None) -> str:
    """`application/json; charset=utf-8` -> `application/json`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


_RAW_NUL = b"\x00"
# One JSON escape: `\uXXXX` or a backslash and one character. Scanning escape by escape tells the
# NUL escape `\u0000` from the text `\\u0000` (an escaped backslash, then "u0000").
_JSON_ESCAPE = re.compile(rb"\\(?:u[0-9A-Fa-f]{4}|[^u])")
_JSON_NUL = b"\\u0000"


class _NulScanner:
    """Finds a NUL character written in a text body, however the body is cut into chunks.

    JSON: the escape `\u0000`, or a raw NUL byte (also what JSON sent as UTF-16 or UTF-32, which
    the parser would read, is full of). Forms: `%00` or a raw NUL byte. Multipart (the OAuth2-style
    form endpoints only; uploads are binary): a raw NUL byte.
    """

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._carry = b""  # an escape or marker cut off at the end of the previous chunk

    @classmethod
    def for_body(cls, path: str, content_type: str | None) -> _NulScanner | None:
        media = _media_type(content_type)
        if _is_json(media):
            return cls("json")
        if media == "application/x-www-form-urlencoded":
            return cls("form")
        if media == "multipart/form-data" and path in _FORM_PATHS:
            return cls("multipart")
        return None

    def found_in(self, chunk: bytes) -> bool:
        if _RAW_NUL in chunk:
            return True
        if self._kind == "multipart":
            return False
        seen = self._carry + chunk
        if self._kind == "form":
            self._carry = seen[-2:]
            return b"%00" in seen
        end = 0
        for escape in _JSON_ESCAPE.finditer(seen):
            if escape.group() == _JSON_NUL:
                return True
            end = escape.end()
        cut = seen.find(b"\\", end)  # a backslash whose escape the next chunk completes
        self._carry = seen[cut:] if cut != -1 and len(seen) - cut < len(_JSON_NUL) else b""
        return False


def _media_type_allowed(path: str, content_type: str | None) -> bool:
    """JSON under /api, except on the OAuth2-style endpoints, which take forms like the /ui console;
    multipart for uploads."""
    media = _media_type(content_type)
    if _is_json(media):
        return path not in _FORM_PATHS and not path.startswith(_CONSOLE_PREFIX)
    if media == "application/x-www-form-urlencoded":
        return path in _FORM_PATHS or path.startswith(_CONSOLE_PREFIX)
    if media == "multipart/form-data":
        return path.endswith("/avatar") or path in _FORM_PATHS
    return False


class _ApiTemplates:
    """The path template of an API request refused before routing, so metrics and logs name the
    route as for any other answer. Paths no route serves stay `<unmatched>` (bounded labels)."""

    def __init__(self) -> None:
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def of(self, scope: Scope) -> str | None:
        app = scope.get("app")
        if app is None or not hasattr(app, "openapi"):
            return None
        if self._compiled is None:  # in the order the router tries them: `/users/me` before `/users/{id}`
            self._compiled = [(compile_path(path)[0], path) for path in app.openapi()["paths"]]
        path = scope["path"]
        return next((template for regex, template in self._compiled if regex.match(path)), None)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_body = settings.max_body_bytes
        self.max_upload = settings.max_upload_bytes + 64 * 1024  # multipart framing
        headers: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"cross-origin-resource-policy", b"same-site"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
            (b"x-permitted-cross-domain-policies", b"none"),
        ]
        if settings.secure_cookies:
            headers.append((b"strict-transport-security", b"max-age=63072000; includeSubDomains"))
        self.security_headers = headers
        self._templates = _ApiTemplates()

    def _limit_for(self, path: str) -> int:
        return self.max_upload if path.endswith("/avatar") else self.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # HEAD is answered as GET without the body (RFC 9110 §9.3.2): monitors and `curl -I` use it.
        # The app gets a copy; the server keeps its own scope and so still sends no body.
        method: str = scope["method"]
        head = method == "HEAD"
        if head:
            scope = {**scope, "method": "GET"}
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        client = scope.get("client")
        set_request_context(
            RequestContext(request_id, client[0] if client else None, _header(scope, b"user-agent"))
        )
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        path: str = scope["path"]
        limit = self._limit_for(path)
        state: dict[str, Any] = {"status": 500, "started": False, "received": 0, "rejected": None}
        if "\x00" in path or b"%00" in scope["query_string"]:
            where = "path" if "\x00" in path else "query"
            refusal = _nul_character(path, where)
            await self._send_refusal(send, request_id, refusal)
            self._finish(scope, refusal.status, started, method)
            return

        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await self._send_refusal(send, request_id, _too_large(path, limit))
            self._finish(scope, 413, started, method)
            return
        has_body = (declared or 0) > 0 or _header(scope, b"transfer-encoding") is not None
        if (
            has_body
            and scope["method"] in _UNSAFE_METHODS
            and path.startswith(("/api/", _CONSOLE_PREFIX))
            and not _media_type_allowed(path, _header(scope, b"content-type"))
        ):
            refusal = _refusal(
                path, UnsupportedMediaTypeError(f"Send the body as {_expected_media_type(path)}")
            )
            await self._send_refusal(send, request_id, refusal)
            self._finish(scope, refusal.status, started, method)
            return

        nul = _NulScanner.for_body(path, _header(scope, b"content-type")) if has_body else None

        async def checked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunk: bytes = message.get("body", b"")
                state["received"] += len(chunk)
                if state["received"] > limit:
                    state["rejected"] = _too_large(path, limit)
                    raise _BodyRejectedError
                if nul is not None and nul.found_in(chunk):
                    state["rejected"] = _nul_character(path, "body")
                    raise _BodyRejectedError
            return message

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                if state["rejected"]:
                    return  # replaced by the problem below
                state["started"] = True
                state["status"] = message["status"]
                headers = list(message.get("headers", []))
                if message["status"] == 204:  # no content: no type, no length (RFC 9110 §8.6, §15.3.5)
                    headers = [h for h in headers if h[0].lower() not in _NO_CONTENT_DROPS]
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(self.security_headers)
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", _csp_for(path)))
                if b"cache-control" not in names and _is_private(path):
                    headers.append((b"cache-control", b"no-store"))
                if not path.startswith(_DOCS_PATHS):  # the docs pages load their scripts from a CDN
                    headers.append((b"cross-origin-embedder-policy", b"require-corp"))
                if path in _LOGOUT_PATHS and 200 <= message["status"] < 300:
                    headers.append((b"clear-site-data", CLEAR_SITE_DATA.encode()))
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                if state["rejected"]:
                    return
                if head:
                    message = {**message, "body": b""}
            await send(message)

        # A declared length within the limit needs no counting; a text body is still read for NUL.
        checked = declared is None or nul is not None
        try:
            with contextlib.suppress(_BodyRejectedError):  # answered with the problem below
                await self.app(scope, checked_receive if checked else receive, send_wrapper)
            if state["rejected"] and not state["started"]:
                refusal = state["rejected"]
                await self._send_refusal(send, request_id, refusal)
                state["status"] = refusal.status
        except asyncio.CancelledError:  # the client went away or the server stops: not a server error
            if not state["started"]:
                state["status"] = CLIENT_CLOSED_REQUEST
            raise
        finally:  # an unhandled error (already answered 500 by Starlette) is counted and logged too
            self._finish(scope, state["status"], started, method)

    async def _send_refusal(self, send: Send, request_id: str, refusal: _Refusal) -> None:
        status, content_type, body, extra = refusal
        headers = [
            *extra,
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id.encode()),
            (b"connection", b"close"),
            *self.security_headers,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _finish(self, scope: Scope, status: int, started: float, method: str) -> None:
        elapsed = time.perf_counter() - started
        route = scope.get("route")
        # Requests refused before routing (413, 415, a NUL character) have no route yet: looked up.
        template = getattr(route, "path", None) or self._templates.of(scope) or "<unmatched>"
        observe_request(method, template, status, elapsed)
        if status >= 500:
            log.error("request", method=method, route=template, status=status, ms=round(elapsed * 1000, 1))
        else:
            log.debug("request", method=method, route=template, status=status, ms=round(elapsed * 1000, 1))


def _csp_for(path: str) -> bytes:
    if path.startswith(_DOCS_PATHS):
        return _DOCS_CSP
    if path == "/ui" or path.startswith(_CONSOLE_PREFIX):
        return _CONSOLE_CSP
    return _API_CSP


def _is_private(path: str) -> bool:
    """API answers and console pages carry personal data: never stored by caches (the CSS may be)."""
    if path.startswith(_CONSOLE_STATIC):
        return False
    return path.startswith(("/api/", _CONSOLE_PREFIX)) or path == "/ui"


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return str(value.decode("latin-1"))[:512]
    return None


def _incoming_request_id(scope: Scope) -> str | None:
    text = _header(scope, b"x-request-id")
    return text if text is not None and _VALID_REQUEST_ID.match(text) else None


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
