"""HEAD is answered like GET, without the body (RFC 9110 §9.3.2): monitors and `curl -I` rely on it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from httpx import AsyncClient

from tests.factories import signed_in
from tests.live_server import live_server
from tests.metrics import requests, scrape


async def test_head_answers_as_get_without_a_body(client: AsyncClient) -> None:
    get = await client.get("/health")
    head = await client.head("/health")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["x-request-id"] and head.headers["x-content-type-options"] == "nosniff"


async def test_head_of_an_authenticated_read_needs_the_credentials(client: AsyncClient) -> None:
    refused = await client.head("/api/v1/users/me")
    assert refused.status_code == 401 and refused.content == b""
    assert refused.headers["content-type"] == "application/problem+json"
    _, auth = await signed_in(client)
    allowed = await client.head("/api/v1/users/me", headers=auth)
    assert allowed.status_code == 200 and allowed.content == b""


async def test_head_of_a_route_without_get_is_405_and_of_nothing_404(client: AsyncClient) -> None:
    not_allowed = await client.head("/api/v1/auth/login")
    assert not_allowed.status_code == 405 and "POST" in not_allowed.headers["allow"]
    assert (await client.head("/api/v1/nothing-here")).status_code == 404


async def test_head_is_counted_as_head(client: AsyncClient) -> None:
    before = await scrape(client)
    await client.head("/live")
    after = await scrape(client)
    assert requests(after, "HEAD", "/live", 200) == requests(before, "HEAD", "/live", 200) + 1
    assert requests(after, "GET", "/live", 200) == requests(before, "GET", "/live", 200)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with live_server(tmp_path_factory.mktemp("head-server")) as base_url:
        yield base_url


@pytest.mark.parametrize("path", ["/health", "/api/v1/users/me", "/openapi.json", "/ui/static/console.css"])
def test_a_real_server_sends_the_headers_only(server: str, path: str) -> None:
    """uvicorn keeps the server's HEAD scope: it must not wait for, or send, the body GET would."""
    get = httpx.get(server + path)
    head = httpx.head(server + path)
    assert head.status_code == get.status_code and head.content == b""
    assert head.headers.get("content-length") == get.headers.get("content-length")
