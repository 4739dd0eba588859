"""Request bodies no operation declared: refused, as SPEC §3 refuses unknown fields.

A model with `extra="forbid"` refuses unknown members of the bodies an operation takes; an
operation that takes no body (sign-out, a `DELETE`, "send me the code again") would otherwise
ignore whatever came. Those operations take a last parameter `_body: NoBody`: the last, so that
authentication and the other checks answer first, as they do where a body is declared.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

from authgate.errors import UnsupportedMediaTypeError

_NO_BODY = "This operation takes no body"


async def refuse_undeclared_body(request: Request) -> None:
    """For an operation without a body: none, or `{}`, passes; another JSON body is 422 and anything
    that is not JSON 415. The request middleware has refused bodies over the size limit (413)."""
    raw = await request.body()
    if not raw.strip():
        return
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not media_type.endswith(("/json", "+json")):
        raise UnsupportedMediaTypeError(f"{_NO_BODY}; send none, or JSON")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than the parser goes
        raise RequestValidationError([_error(["body"], "JSON decode error", "json_invalid")]) from None
    if body == {}:
        return
    if isinstance(body, dict):
        raise extra_fields(body)
    raise RequestValidationError([_error(["body"], _NO_BODY, "extra_forbidden")])


NoBody = Annotated[None, Depends(refuse_undeclared_body)]


def extra_fields(names: Iterable[str]) -> RequestValidationError:
    """The 422 for body members (or form fields) an operation does not take, one error each."""
    return RequestValidationError(
        [_error(["body", name], "Extra inputs are not permitted", "extra_forbidden") for name in names]
    )


def _error(loc: list[str], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}
