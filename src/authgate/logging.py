"""structlog set-up and the request-id context shared by logs, problems and audit events."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from dataclasses import dataclass

import structlog


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Who is calling, as far as the transport tells: copied into sessions and audit events."""

    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None


_EMPTY_CONTEXT = RequestContext()
_context: ContextVar[RequestContext] = ContextVar(
    "authgate_request_context",
    default=_EMPTY_CONTEXT,
)

# Keys whose values are never written to a log line, whatever a caller passes.
_SECRET_KEYS = frozenset(
    {
        "password",
        "new_password",
        "current_password",
        "token",
        "access_token",
        "refresh_token",
        "secret",
        "code",
        "authorization",
        "cookie",
        "key",
        "password_hash",
        "token_hash",
    }
)


def get_request_id() -> str | None:
    return _context.get().request_id


def get_request_context() -> RequestContext:
    return _context.get()


def set_request_context(value: RequestContext) -> None:
    _context.set(value)


def _redact(_logger: object, _name: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    for key in _SECRET_KEYS.intersection(event):
        event[key] = "[redacted]"
    return event


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    # sys.stderr as it is when the logger is made, not when logging was configured: a command run
    # under a test runner (or anything else that swaps the stream) must not keep a closed one.
    return structlog.PrintLogger(sys.stderr)


def configure_logging(*, console: bool, level: str = "INFO") -> None:
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    # Tracebacks without local variables: a frame's locals hold request bodies, passwords and tokens.
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if console
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer]
        if not console
        else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
