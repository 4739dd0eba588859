"""SPEC §3, unknown fields rejected, for the operations that take no body."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from tests.factories import assert_problem, signed_in

ANY_ID = "0190a0b0-0000-7000-8000-000000000000"


def _bodiless_operations(app: FastAPI) -> list[tuple[str, str]]:
    return [
        (method.upper(), re.sub(r"\{[^}]+\}", ANY_ID, path))
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if method not in ("get", "head") and "requestBody" not in operation
    ]


async def test_every_operation_without_a_body_refuses_one(app: FastAPI, client: AsyncClient) -> None:
    """Walks the schema, so an operation added later is covered too; refused before anything runs."""
    operations = _bodiless_operations(app)
    assert ("POST", "/api/v1/auth/logout") in operations and len(operations) >= 13
    for method, path in operations:
        response = await client.request(method, path, json={"email": "other@example.com"})
        body = assert_problem(response, 422, "validation_error")
        assert body["errors"] == [
            {"loc": ["body", "email"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
        ], (method, path)


@pytest.mark.parametrize(
    ("content", "error_type"),
    [
        (b"[1]", "extra_forbidden"),
        (b'"x"', "extra_forbidden"),
        (b"{nope", "json_invalid"),
        (b"[" * 5000, "json_invalid"),
    ],
)
async def test_a_body_that_is_not_an_object_is_refused(
    client: AsyncClient, content: bytes, error_type: str
) -> None:
    _, headers = await signed_in(client)
    response = await client.post(
        "/api/v1/auth/logout", content=content, headers={**headers, "content-type": "application/json"}
    )
    assert assert_problem(response, 422, "validation_error")["errors"][0]["type"] == error_type
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200  # still signed in


@pytest.mark.parametrize("content", [b"", b"{}", b"  { }  "])
async def test_no_body_or_an_empty_object_is_fine(client: AsyncClient, content: bytes) -> None:
    _, headers = await signed_in(client)
    extra = {"content-type": "application/json"} if content else {}
    response = await client.post("/api/v1/auth/logout", content=content, headers={**headers, **extra})
    assert response.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
