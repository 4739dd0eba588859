"""Request bodies no operation declared: refused, as SPEC §3 refuses unknown fields.

A model with `extra="forbid"` refuses unknown members of the bodies an operation takes; an
operation that takes no body (sign-out, a `DELETE`, "send me the code again") would otherwise
ignore whatever came. Those operations declare `dependencies=[NO_BODY]`.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError

_NO_BODY = "This operation takes no body"


async def refuse_undeclared_body(request: Request) -> None:
    """For an operation without a body: an empty body or `{}` passes, anything else is 422.

    The request middleware has already refused content types other than JSON (415) and bodies
    over the size limit (413), so what is left to read here is small JSON.
    """
    raw = await request.body()
    if not raw.strip():
        return
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested deeper than the parser goes
        raise RequestValidationError([_error(["body"], "JSON decode error", "json_invalid")]) from None
    if body == {}:
        return
    if isinstance(body, dict):
        raise RequestValidationError(
            [_error(["body", name], "Extra inputs are not permitted", "extra_forbidden") for name in body]
        )
    raise RequestValidationError([_error(["body"], _NO_BODY, "extra_forbidden")])


NO_BODY = Depends(refuse_undeclared_body)


def _error(loc: list[str], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}
