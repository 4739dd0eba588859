"""Domain errors and their single mapping to RFC 9457 `application/problem+json`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from authgate.logging import get_request_id

PROBLEM_TYPE_BASE = "https://authgate.dev/problems/"
log = structlog.get_logger("authgate.errors")


class AuthgateError(Exception):
    """Base of every error a service may raise; each subclass fixes status, code and title."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, detail: str | None = None, **extensions: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail
        self.extensions = extensions

    def response_headers(self) -> dict[str, str]:
        return dict(self.headers)


class NotAuthenticatedError(AuthgateError):
    status, code, title = 401, "not_authenticated", "Authentication required"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class InvalidCredentialsError(AuthgateError):
    status, code, title = 401, "invalid_credentials", "Invalid credentials"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": "Bearer"}


class WrongPasswordError(AuthgateError):
    """The signed-in user's own password was wrong on a sensitive change (SPEC §12: 403)."""

    status, code, title = 403, "invalid_credentials", "Current password is incorrect"


class TokenExpiredError(AuthgateError):
    status, code, title = 401, "token_expired", "Token expired"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class TokenInvalidError(AuthgateError):
    status, code, title = 401, "token_invalid", "Token invalid"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class SessionRevokedError(AuthgateError):
    status, code, title = 401, "session_revoked", "Session revoked"
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class RefreshReusedError(AuthgateError):
    status, code, title = 401, "refresh_reused", "Refresh token reused; the session was revoked"


class SingleUseTokenInvalidError(AuthgateError):
    """A wrong, expired or used single-use token; which of the three is not revealed."""

    status, code, title = 400, "token_invalid", "Token is invalid or expired"


class AccountDisabledError(AuthgateError):
    status, code, title = 403, "account_disabled", "Account disabled"


class ForwardAuthDisabledError(AccountDisabledError):
    """Forward-auth answers 200 or 401 only (SPEC §9): a deactivated account is 401 there."""

    status = 401
    headers: ClassVar[dict[str, str]] = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class PermissionDeniedError(AuthgateError):
    status, code, title = 403, "permission_denied", "Permission denied"


class CSRFError(AuthgateError):
    status, code, title = 403, "csrf_failed", "CSRF token missing or invalid"


class NotFoundError(AuthgateError):
    status, code, title = 404, "not_found", "Not found"


class ConflictError(AuthgateError):
    status, code, title = 409, "conflict", "Conflict"


class InvalidInputError(AuthgateError):
    """A business-rule rejection of otherwise well-formed input (422, like schema errors)."""

    status, code, title = 422, "validation_error", "Validation error"

    def __init__(
        self, detail: str, loc: tuple[str | int, ...] = ("body",), type_: str = "value_error"
    ) -> None:
        super().__init__(detail, errors=[{"loc": list(loc), "msg": detail, "type": type_}])


class PayloadTooLargeError(AuthgateError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaTypeError(AuthgateError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class RateLimitedError(AuthgateError):
    status, code, title = 429, "rate_limited", "Too many requests"

    def __init__(self, retry_after: int, detail: str | None = None) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = max(1, retry_after)

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class SigningUnavailableError(AuthgateError):
    """This process cannot open the current signing key (its SECRET_KEY is not the one the key was
    made with): it verifies tokens but signs none until it is restarted with the right secret."""

    status, code, title = 503, "signing_unavailable", "Signing unavailable"


class ServiceBusyError(AuthgateError):
    status, code, title = 503, "service_busy", "Service busy, retry shortly"

    def __init__(self, retry_after: int = 1) -> None:
        super().__init__(None, retry_after=retry_after)
        self.retry_after = retry_after

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def problem_body(
    *, status: int, code: str, title: str, detail: str | None, instance: str, **extensions: Any
) -> dict[str, Any]:
    """An RFC 9457 problem with authgate's members (`code`, `request_id`), as every error is sent."""
    return {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail or title,
        "instance": instance,
        "code": code,
        "request_id": get_request_id(),
        **extensions,
    }


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    body = problem_body(
        status=status, code=code, title=title, detail=detail, instance=request.url.path, **extensions
    )
    return JSONResponse(body, status_code=status, headers=headers, media_type="application/problem+json")


async def _authgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthgateError)  # noqa: S101 - registered for this class only
    return problem_response(
        request,
        status=exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        headers=exc.response_headers(),
        **exc.extensions,
    )


def _json_safe(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return str(value)


def _message(error: Any) -> str:
    """Pydantic's message, except where it speaks of a secret's length in "items"."""
    ctx = error.get("ctx") or {}
    if error["type"] == "json_invalid":
        return "Malformed JSON body"
    if ctx.get("field_type") == "Value":  # a length constraint on a SecretStr: count characters
        if error["type"] == "too_short":
            return f"String should have at least {ctx['min_length']} characters"
        if error["type"] == "too_long":
            return f"String should have at most {ctx['max_length']} characters"
    return str(error["msg"])


def _invalid(
    request: Request, errors: list[dict[str, Any]], detail: str = "The request is not valid"
) -> JSONResponse:
    """The 422 `validation_error` problem, with its `errors` list."""
    return problem_response(
        request, status=422, code="validation_error", title="Validation error", detail=detail, errors=errors
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # noqa: S101 - registered for this class only
    errors = [{"loc": _json_safe(e["loc"]), "msg": _message(e), "type": e["type"]} for e in exc.errors()]
    return _invalid(request, errors)


_HTTP_CODES = {
    400: ("bad_request", "Bad request"),
    401: ("not_authenticated", "Authentication required"),
    403: ("permission_denied", "Permission denied"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    413: ("payload_too_large", "Payload too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
}


_METHODS = ("DELETE", "GET", "PATCH", "POST", "PUT")


_SERVES_NOTHING = "serves_nothing"
F = TypeVar("F", bound=Callable[..., Any])


def serves_nothing(endpoint: F) -> F:
    """Mark a catch-all endpoint (the "no such page" answer of a whole prefix): a method it matches
    is not a method the path is served with."""
    setattr(endpoint, _SERVES_NOTHING, True)
    return endpoint


def allowed_methods(request: Request) -> str:
    """Every method the path is served with (RFC 9110 §15.5.6). Starlette names only those of the
    first route whose path matched, while several routes may share a path (GET and POST /users).
    Asked of the router itself, method by method, so included routers answer too (405s only)."""
    routes = [
        route
        for route in request.app.router.routes
        if not getattr(getattr(route, "endpoint", None), _SERVES_NOTHING, False)
    ]

    def served(method: str) -> bool:
        scope = {**request.scope, "method": method}
        return any(route.matches(scope)[0] is Match.FULL for route in routes)

    methods = {method for method in _METHODS if served(method)}
    if "GET" in methods:
        methods.add("HEAD")  # answered as GET without the body, by the request middleware
    return ", ".join(sorted(methods))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)  # noqa: S101 - registered for this class only
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError | RecursionError):
        # A JSON body that is not text (RFC 8259 §8.1: UTF-8), or nested deeper than the parser
        # goes: malformed JSON like any other.
        message = (
            "JSON must be UTF-8 text"
            if isinstance(exc.__cause__, UnicodeDecodeError)
            else "nested too deeply"
        )
        return _invalid(request, [{"loc": ["body"], "msg": message, "type": "json_invalid"}])
    code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "HTTP error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != title else None
    headers = dict(exc.headers) if exc.headers else {}
    if exc.status_code == 405 and (allowed := allowed_methods(request)):
        headers["Allow"] = allowed  # else the raiser's own (a mounted app such as the static files)
    return problem_response(
        request, status=exc.status_code, code=code, title=title, detail=detail, headers=headers or None
    )


async def _unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", path=request.url.path)
    # Starlette answers this one outside the middleware stack, so the request id is added here.
    request_id = get_request_id()
    headers = {"X-Request-ID": request_id} if request_id else None
    return problem_response(
        request, status=500, code="internal_error", title="Internal server error", headers=headers
    )


# PostgreSQL refusing the text itself (a NUL, or a character the database encoding lacks). The
# middleware refuses NUL at the door; this is the backstop for any way in it does not see.
_BAD_TEXT_SQLSTATES = frozenset({"22021", "22P05"})  # character_not_in_repertoire, untranslatable_character


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)  # noqa: S101 - registered for this class only
    if getattr(exc.orig, "sqlstate", None) in _BAD_TEXT_SQLSTATES:
        unstorable = {"loc": ["body"], "msg": "contains characters that cannot be stored", "type": "bad_text"}
        return _invalid(request, [unstorable], "Text contains characters that cannot be stored")
    return await _unhandled_error(request, exc)


def register_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AuthgateError, _authgate_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unhandled_error)


def problem_schema(*errors: type[AuthgateError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries for the problems a route can answer."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(
            err.status,
            {
                "description": "",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
            },
        )
        sep = "; " if entry["description"] else ""
        entry["description"] += f"{sep}{err.title} (`{err.code}`)"
    return out
