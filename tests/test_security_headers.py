"""Security headers, reviewed against the OWASP Secure Headers Project: one test per header."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authgate.config import Settings
from authgate.main import create_app
from tests.factories import signed_in

API = "/api/v1/features"


@pytest.fixture
async def plain_http_client(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> AsyncIterator[AsyncClient]:
    """A development-style app without Secure cookies (local plain HTTP)."""
    app = create_app(
        settings.model_copy(update={"cookie_secure": False}), sessionmaker=sessionmaker, engine=engine
    )
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, client=("127.0.0.1", 1))
        async with AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def test_x_content_type_options(client: AsyncClient) -> None:
    assert (await client.get(API)).headers["x-content-type-options"] == "nosniff"


async def test_x_frame_options(client: AsyncClient) -> None:
    assert (await client.get(API)).headers["x-frame-options"] == "DENY"


async def test_content_security_policy_api(client: AsyncClient) -> None:
    csp = (await client.get(API)).headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp


async def test_content_security_policy_docs(client: AsyncClient) -> None:
    csp = (await client.get("/docs")).headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp


async def test_strict_transport_security_when_secure(client: AsyncClient) -> None:
    hsts = (await client.get(API)).headers["strict-transport-security"]
    assert "max-age=63072000" in hsts
    assert "includeSubDomains" in hsts


async def test_no_strict_transport_security_over_plain_http(plain_http_client: AsyncClient) -> None:
    assert "strict-transport-security" not in (await plain_http_client.get(API)).headers


async def test_referrer_policy(client: AsyncClient) -> None:
    assert (await client.get(API)).headers["referrer-policy"] == "no-referrer"


async def test_permissions_policy(client: AsyncClient) -> None:
    policy = (await client.get(API)).headers["permissions-policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
        assert feature in policy


async def test_cross_origin_opener_policy(client: AsyncClient) -> None:
    assert (await client.get(API)).headers["cross-origin-opener-policy"] == "same-origin"


async def test_cross_origin_resource_policy(client: AsyncClient) -> None:
    assert (await client.get(API)).headers["cross-origin-resource-policy"] == "same-site"


async def test_cross_origin_embedder_policy(client: AsyncClient) -> None:
    assert (await client.get(API)).headers["cross-origin-embedder-policy"] == "require-corp"
    assert "cross-origin-embedder-policy" not in (await client.get("/docs")).headers  # CDN assets


async def test_x_permitted_cross_domain_policies(client: AsyncClient) -> None:
    assert (await client.get(API)).headers["x-permitted-cross-domain-policies"] == "none"


async def test_cache_control_no_store_on_api(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    assert (await client.get("/api/v1/users/me", headers=headers)).headers["cache-control"] == "no-store"


async def test_clear_site_data_on_logout(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    assert "clear-site-data" not in (await client.get("/api/v1/users/me", headers=headers)).headers
    response = await client.post("/api/v1/auth/logout", headers=headers)
    assert response.status_code == 204
    assert "content-type" not in response.headers and "content-length" not in response.headers  # 204
    # Not "cookies": it would clear every cookie of the registrable domain, sibling apps' too.
    assert response.headers["clear-site-data"] == '"cache", "storage"'
    assert any(c.startswith("authgate_access=") for c in response.headers.get_list("set-cookie"))


async def test_no_clear_site_data_on_failed_logout(client: AsyncClient) -> None:
    response = await client.post("/api/v1/auth/logout")
    assert response.status_code == 401
    assert "clear-site-data" not in response.headers


async def test_no_server_or_powered_by_headers(client: AsyncClient) -> None:
    headers = (await client.get(API)).headers
    assert "x-powered-by" not in headers
    assert "server" not in headers  # uvicorn's own is switched off in `authgate serve`


async def test_headers_on_errors_too(client: AsyncClient) -> None:
    headers = (await client.get("/api/v1/no-such-route")).headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert "content-security-policy" in headers


async def test_request_id_is_echoed(client: AsyncClient) -> None:
    response = await client.get(API, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
