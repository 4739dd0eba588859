"""Every route is either on the public allow-list or needs an authenticated caller.

Walks the app's OpenAPI operations, so a new route that forgets its authorisation dependency
fails here: statically (no security requirement in the schema) and at runtime (a request
without credentials must be 401 `not_authenticated`, never reach the handler).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from authgate.main import create_app
from tests.conftest import make_settings
from tests.factories import assert_problem

PUBLIC = {
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/login/mfa"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/verify-email/confirm"),
    ("POST", "/api/v1/auth/password/forgot"),
    ("POST", "/api/v1/auth/password/reset"),
    ("GET", "/health"),
    ("GET", "/live"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/openid-configuration"),
    ("GET", "/api/v1/features"),
    ("GET", "/dev/inbox"),
    ("GET", "/dev/inbox.json"),
    ("GET", "/api/v1/users/{user_id}/avatar"),  # checks the owner's visibility setting itself
}


def _operations(app: FastAPI) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, op)
        for path, ops in app.openapi()["paths"].items()
        for method, op in ops.items()
    ]


def _protected(app: FastAPI) -> list[tuple[str, str]]:
    return [(m, p) for m, p, _ in _operations(app) if (m, p) not in PUBLIC]


_static_app = create_app(make_settings("sqlite+aiosqlite:///:memory:"))


def test_every_non_public_operation_declares_security() -> None:
    missing = [
        f"{m} {p}" for m, p, op in _operations(_static_app) if (m, p) not in PUBLIC and not op.get("security")
    ]
    assert missing == []
    assert len(_protected(_static_app)) > 20  # the walk really saw the API


@pytest.mark.parametrize(("method", "path"), _protected(_static_app), ids=lambda v: str(v))
async def test_every_non_public_operation_refuses_anonymous_callers(
    client: AsyncClient, method: str, path: str
) -> None:
    url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
    body: dict[str, Any] = {}
    if method in ("POST", "PUT", "PATCH", "DELETE"):  # each in the media type the operation takes
        body = {"data": {"token": "x"}} if path == "/api/v1/auth/introspect" else {"json": {}}
    response = await client.request(method, url, **body)
    assert_problem(response, 401, "not_authenticated")
