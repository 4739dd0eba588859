"""Health, readiness, metrics, discovery, feature flags and the OpenAPI document."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import create_async_engine

from authgate.db import SessionDep
from tests.factories import login, register
from tests.metrics import requests, scrape, value


async def test_health_and_live(client: AsyncClient) -> None:
    for path in ("/health", "/live"):
        response = await client.get(path)
        assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_ready_when_database_answers(client: AsyncClient) -> None:
    response = await client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


async def _ready_on(client: AsyncClient, app: FastAPI, database_url: str) -> Any:
    """GET /ready with the app's engine swapped for one on `database_url`."""
    working = app.state.engine
    app.state.engine = create_async_engine(database_url)
    try:
        return await client.get("/ready")
    finally:
        await app.state.engine.dispose()
        app.state.engine = working


async def test_ready_names_the_failed_database(client: AsyncClient, app: FastAPI) -> None:
    response = await _ready_on(client, app, "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    assert response.status_code == 503
    body = response.json()
    assert body["checks"]["database"].startswith("down")
    assert "database" in body["detail"]


@pytest.mark.parametrize("damage", ["garbage", "empty"])
async def test_ready_is_503_on_a_database_that_connects_but_cannot_serve(
    client: AsyncClient, app: FastAPI, tmp_path: Any, damage: str
) -> None:
    """A damaged SQLite file, or a database without its tables, still accepts connections."""
    import os

    path = tmp_path / "broken.db"
    if damage == "garbage":
        path.write_bytes(os.urandom(8192))
    response = await _ready_on(client, app, f"sqlite+aiosqlite:///{path}")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("down")


async def test_ready_names_a_failed_redis(client: AsyncClient, app: FastAPI) -> None:
    from redis.asyncio import Redis

    app.state.redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    try:
        response = await client.get("/ready")
    finally:
        await app.state.redis.aclose()
        app.state.redis = None
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("down")


async def test_metrics_by_route_template(client: AsyncClient) -> None:
    before = await scrape(client)
    user = await register(client)
    await login(client, user["email"])
    await client.get("/api/v1/auth/sessions/0190a0b0-0000-7000-8000-000000000000")
    text = (await client.get("/metrics")).text
    after = await scrape(client)
    register_route = ("POST", "/api/v1/auth/register", 201)
    assert requests(after, *register_route) == requests(before, *register_route) + 1
    duration = {"method": "POST", "route": "/api/v1/auth/register"}
    assert value(after, "http_request_duration_seconds_count", **duration) == (
        value(before, "http_request_duration_seconds_count", **duration) + 1
    )
    assert value(after, "http_request_duration_seconds_bucket", le="+Inf", **duration) == (
        value(before, "http_request_duration_seconds_bucket", le="+Inf", **duration) + 1
    )
    succeeded = value(after, "authgate_logins_total", outcome="succeeded")
    assert succeeded == value(before, "authgate_logins_total", outcome="succeeded") + 1
    sessions_route = ("GET", "/api/v1/auth/sessions/{session_id}", 405)  # only DELETE is served
    assert requests(after, *sessions_route) == requests(before, *sessions_route) + 1
    assert ("authgate_outbox_pending", frozenset()) in after
    assert "0190a0b0" not in text  # templates, not raw paths


async def test_metrics_name_the_route_of_a_request_refused_before_routing(client: AsyncClient) -> None:
    """415 comes from the middleware, before the router: the template is looked up, in router order
    (`/users/me` before `/users/{user_id}`); a path no route serves stays `<unmatched>`."""
    user_id = "0190a0b0-0000-7000-8000-000000000000"
    counted = [
        ("PATCH", "/api/v1/users/me", 415),
        ("PUT", "/api/v1/users/{user_id}/roles", 415),
        ("POST", "<unmatched>", 415),
    ]
    before = await scrape(client)
    await client.patch("/api/v1/users/me", content=b"x", headers={"content-type": "text/plain"})
    await client.put(f"/api/v1/users/{user_id}/roles", content=b"{}", headers={"content-type": "text/xml"})
    await client.post("/api/v1/no/such/route", content=b"x", headers={"content-type": "text/plain"})
    text = (await client.get("/metrics")).text
    after = await scrape(client)
    for series in counted:
        assert requests(after, *series) == requests(before, *series) + 1, series
    # `/users/me` is not counted under the template that would also match it
    me_as_id = ("PATCH", "/api/v1/users/{user_id}", 415)
    assert requests(after, *me_as_id) == requests(before, *me_as_id)
    assert user_id not in text


async def test_metrics_report_the_connections_in_use(live_client: AsyncClient, live_app: FastAPI) -> None:
    """The served app's pool: the request reading /metrics holds none of its connections."""
    text = (await live_client.get("/metrics")).text
    assert "authgate_db_pool_checked_out 0.0" in text
    async with live_app.state.engine.connect():
        text = (await live_client.get("/metrics")).text
    assert "authgate_db_pool_checked_out 1.0" in text


async def test_metrics_count_refused_and_crashed_requests(app: FastAPI) -> None:
    @app.get("/api/v1/boom-metrics")
    async def boom() -> None:
        raise RuntimeError("boom")

    counted = [
        ("GET", "/api/v1/boom-metrics", 500),
        ("POST", "/api/v1/users", 415),  # refused before routing
        ("POST", "/api/v1/auth/register", 413),
        ("GET", "/api/v1/workspaces/{ws}", 422),
    ]
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="https://test") as c:
        before = await scrape(c)
        assert (await c.get("/api/v1/boom-metrics")).status_code == 500
        assert (
            await c.post("/api/v1/users", content="x", headers={"content-type": "text/plain"})
        ).status_code == 415
        big = b"{" + b" " * 1_100_000 + b"}"
        too_large = await c.post(
            "/api/v1/auth/register", content=big, headers={"content-type": "application/json"}
        )
        assert too_large.status_code == 413
        assert (await c.get("/api/v1/workspaces/a%00b")).status_code == 422
        after = await scrape(c)
    for series in counted:
        assert requests(after, *series) == requests(before, *series) + 1, series


@pytest.mark.parametrize("console", [True, False])
async def test_a_crash_logs_no_local_variables_and_no_statement_values(
    app: FastAPI, capsys: pytest.CaptureFixture[str], console: bool
) -> None:
    """Tracebacks name the failing line, never a frame's locals nor the values bound to a statement."""
    from sqlalchemy import text

    from authgate.logging import configure_logging

    @app.post("/api/v1/boom-logs")
    async def boom(session: SessionDep) -> None:
        password = "local-secret-4417"  # noqa: F841 - what a frame's locals would show
        await session.execute(
            text("SELECT no_such_column FROM user_account WHERE email = :e"), {"e": "bound-secret-4417"}
        )

    configure_logging(console=console, level="INFO")
    try:
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="https://test") as c:
            assert (await c.post("/api/v1/boom-logs", json={})).status_code == 500
        out = capsys.readouterr()
    finally:
        configure_logging(console=False, level="WARNING")
    logged = out.out + out.err
    assert "no_such_column" in logged  # the error itself is there
    assert "local-secret-4417" not in logged
    assert "bound-secret-4417" not in logged


async def test_openid_configuration(client: AsyncClient) -> None:
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == "http://test"
    assert doc["jwks_uri"] == "http://test/.well-known/jwks.json"
    assert doc["token_endpoint"].endswith("/api/v1/auth/token")
    assert "ES256" in doc["id_token_signing_alg_values_supported"]


async def test_features_are_public(client: AsyncClient) -> None:
    flags = (await client.get("/api/v1/features")).json()
    assert flags["require_verified_email"] is False
    assert flags["enumeration_safe_registration"] is False


async def test_docs_pages(client: AsyncClient) -> None:
    for path in ("/docs", "/redoc"):
        response = await client.get(path)
        assert response.status_code == 200 and "html" in response.headers["content-type"]
        assert "cdn.jsdelivr.net" in response.headers["content-security-policy"]


async def test_openapi_documents_every_route_and_error(client: AsyncClient) -> None:
    schema: dict[str, Any] = (await client.get("/openapi.json")).json()
    assert "Problem" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("description"), f"{method.upper()} {path} has no description"
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and "content" in response:
                    content = response["content"]
                    assert "application/problem+json" in content or path.endswith("/token"), (
                        method,
                        path,
                        status,
                    )
            if "security" in operation or any(p.get("in") == "path" for p in operation.get("parameters", [])):
                assert any(s.startswith("4") for s in operation["responses"]), f"{method} {path}"


async def test_swagger_authorize_uses_the_token_endpoint(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    assert flows["password"]["tokenUrl"] == "/api/v1/auth/token"


async def test_cors_from_settings(engine: object, sessionmaker: object) -> None:
    from httpx import ASGITransport

    from authgate.main import create_app
    from tests.conftest import make_settings

    app = create_app(
        make_settings("sqlite+aiosqlite:///:memory:", cors_origins=["https://app.example.com"]),
        sessionmaker=sessionmaker,  # type: ignore[arg-type]
        engine=engine,  # type: ignore[arg-type]
    )
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="https://test") as c,
    ):
        allowed = await c.options(
            "/api/v1/auth/login",
            headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
        )
        denied = await c.get("/health", headers={"Origin": "https://evil.example"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in denied.headers


async def test_logs_never_carry_secrets(client: AsyncClient, capsys: object) -> None:
    from authgate.logging import configure_logging
    from tests.factories import PASSWORD

    configure_logging(console=False, level="DEBUG")  # every line, as JSON, to the captured stderr
    user = await register(client)
    await client.post("/api/v1/auth/login", json={"email": user["email"], "password": "wrong but secret 77"})
    tokens = await login(client, user["email"])
    out = capsys.readouterr()  # type: ignore[attr-defined]
    configure_logging(console=False, level="WARNING")
    text = out.out + out.err
    assert '"event": "login_failed"' in text and '"route": "/api/v1/auth/login"' in text
    for secret in (
        "wrong but secret 77",
        PASSWORD,
        tokens["access_token"],
        tokens["refresh_token"],
        "$argon2",
    ):
        assert secret not in text


def test_sentry_is_sent_no_locals_no_bodies_no_personal_data() -> None:
    import sentry_sdk

    from authgate.main import create_app
    from tests.conftest import make_settings

    settings = make_settings("sqlite+aiosqlite:///:memory:").model_copy(
        update={"sentry_dsn": "https://public@sentry.invalid/1"}
    )
    create_app(settings)
    try:
        options = sentry_sdk.get_client().options
        assert options["include_local_variables"] is False
        assert options["max_request_body_size"] == "never"
        assert not options.get("send_default_pii")
    finally:
        sentry_sdk.init(dsn=None)  # later tests run without it


async def test_an_abandoned_request_is_counted_as_499_not_500(app: FastAPI) -> None:
    import asyncio
    import contextlib

    started = asyncio.Event()

    @app.get("/api/v1/slow-metrics")
    async def slow() -> None:
        started.set()
        await asyncio.sleep(30)

    async with AsyncClient(transport=ASGITransport(app=app), base_url="https://test") as c:
        before = await scrape(c)
        request = asyncio.create_task(c.get("/api/v1/slow-metrics"))
        await started.wait()
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        after = await scrape(c)
    abandoned = ("GET", "/api/v1/slow-metrics", 499)
    crashed = ("GET", "/api/v1/slow-metrics", 500)
    assert requests(after, *abandoned) == requests(before, *abandoned) + 1
    assert requests(after, *crashed) == requests(before, *crashed)
