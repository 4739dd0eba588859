"""SPEC §3, unknown fields rejected, for the operations that take no body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from httpx import AsyncClient

from authgate.bodies import refuse_undeclared_body
from tests.factories import assert_problem, signed_in


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif (included := getattr(route, "original_router", None)) is not None:  # an included router
            yield from _api_routes(included.routes)


def test_every_operation_without_a_body_refuses_one(app: FastAPI) -> None:
    """Walks the routes, so an operation added later without `_body: NoBody` fails here."""
    bodiless = [
        route
        for route in _api_routes(app.routes)
        if route.path.startswith("/api/") and route.body_field is None and route.methods - {"GET", "HEAD"}
    ]
    assert len(bodiless) >= 13
    for route in bodiless:
        calls = [dependency.call for dependency in route.dependant.dependencies]
        assert refuse_undeclared_body in calls, route.path
        assert calls[-1] is refuse_undeclared_body, route.path  # last: authentication answers first


async def test_a_body_member_is_422_and_changes_nothing(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    response = await client.post("/api/v1/auth/logout", json={"refresh_token": "x"}, headers=headers)
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"] == [
        {"loc": ["body", "refresh_token"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200  # still signed in


async def test_without_credentials_a_body_is_still_401(client: AsyncClient) -> None:
    """SPEC §12: no credentials → 401 `not_authenticated`, body or not."""
    for method, path in (("POST", "/api/v1/auth/logout"), ("DELETE", "/api/v1/users/me/avatar")):
        response = await client.request(method, path, json={"x": 1})
        assert_problem(response, 401, "not_authenticated")


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


async def test_a_body_that_is_not_json_is_415(client: AsyncClient) -> None:
    """The middleware lets multipart through on avatar paths; removing an avatar takes no body at all."""
    _, headers = await signed_in(client)
    response = await client.request(
        "DELETE",
        "/api/v1/users/me/avatar",
        headers={**headers, "content-type": "multipart/form-data; boundary=x"},
        content=b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--x--\r\n',
    )
    assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("content", [b"", b"{}", b"  { }  "])
async def test_no_body_or_an_empty_object_is_fine(client: AsyncClient, content: bytes) -> None:
    _, headers = await signed_in(client)
    extra = {"content-type": "application/json"} if content else {}
    response = await client.post("/api/v1/auth/logout", content=content, headers={**headers, **extra})
    assert response.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 401
