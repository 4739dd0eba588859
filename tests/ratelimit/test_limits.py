"""Request rate limits (the `limits` library): per IP, per account, per session; Redis shared across apps."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authgate.config import RateLimits, Settings
from authgate.main import create_app
from authgate.outbox.models import OutboxMessage
from authgate.ratelimit.service import RateLimiter
from authgate.security.opaque import hash_token
from authgate.sessions.models import RefreshToken
from authgate.users.models import User
from tests.conftest import REDIS_URL, unavailable
from tests.factories import PASSWORD, assert_problem, bearer, login, register, signed_in, unique_email


def use_limits(app: FastAPI, **policies: object) -> None:
    config = RateLimits(**policies)  # type: ignore[arg-type]
    app.state.settings.rate_limit = config
    app.state.rate_limiter = RateLimiter(config)


def other_client(app: FastAPI, ip: str) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, client=(ip, 50000)), base_url="https://test")


def assert_rate_limited(response: object, limit: int) -> None:
    body = assert_problem(response, 429, "rate_limited")  # type: ignore[arg-type]
    headers = response.headers  # type: ignore[attr-defined]
    assert int(headers["retry-after"]) >= 1
    assert headers["ratelimit-limit"] == str(limit)
    assert headers["ratelimit-remaining"] == "0"
    assert int(headers["ratelimit-reset"]) >= 1
    assert body["retry_after"] >= 1


async def test_login_per_ip_limit(app: FastAPI, client: AsyncClient) -> None:
    users = [await register(client) for _ in range(4)]
    use_limits(app, login_per_ip="3/minute")
    remaining = []
    for user in users[:3]:
        response = await client.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "3"
        remaining.append(int(response.headers["ratelimit-remaining"]))
    assert remaining == [2, 1, 0]
    blocked = await client.post("/api/v1/auth/login", json={"email": users[3]["email"], "password": PASSWORD})
    assert_rate_limited(blocked, 3)
    async with other_client(app, "198.51.100.9") as elsewhere:  # another address has its own allowance
        ok = await elsewhere.post(
            "/api/v1/auth/login", json={"email": users[3]["email"], "password": PASSWORD}
        )
        assert ok.status_code == 200


async def test_login_per_account_limit_spans_addresses(app: FastAPI, client: AsyncClient) -> None:
    user = await register(client)
    use_limits(app, login_per_account="2/minute")
    for ip in ("198.51.100.1", "198.51.100.2"):
        async with other_client(app, ip) as c:
            assert (
                await c.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
            ).status_code == 200
    async with other_client(app, "198.51.100.3") as c:
        blocked = await c.post(
            "/api/v1/auth/login", json={"email": user["email"].upper(), "password": PASSWORD}
        )
    assert_rate_limited(blocked, 2)


async def test_register_per_ip_limit_creates_nothing(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    use_limits(app, register_per_ip="2/minute")
    await register(client)
    await register(client)
    email = unique_email()
    blocked = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert_rate_limited(blocked, 2)
    assert await db.scalar(select(User).where(User.email_normalized == email)) is None


async def test_refresh_per_session_limit_rolls_back_the_rotation(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    user = await register(client)
    tokens = await login(client, user["email"])
    client.cookies.clear()
    use_limits(app, refresh_per_session="2/minute")
    raw = tokens["refresh_token"]
    for _ in range(2):
        response = await client.post("/api/v1/auth/refresh", json={"refresh_token": raw})
        assert response.status_code == 200
        assert response.headers["ratelimit-limit"] == "2"
        raw = response.json()["refresh_token"]
    client.cookies.clear()
    blocked = await client.post("/api/v1/auth/refresh", json={"refresh_token": raw})
    assert_rate_limited(blocked, 2)
    row = await db.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw)))
    assert row is not None
    assert row.used_at is None  # still usable once the window frees up
    # A new session has its own allowance.
    fresh = await login(client, user["email"])
    client.cookies.clear()
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    ).status_code == 200


async def test_token_endpoint_counts_password_grants(app: FastAPI, client: AsyncClient) -> None:
    user = await register(client)
    use_limits(app, login_per_ip="1/minute")
    form = {"grant_type": "password", "username": user["email"], "password": PASSWORD}
    assert (await client.post("/api/v1/auth/token", data=form)).status_code == 200
    blocked = await client.post("/api/v1/auth/token", data=form)
    assert_oauth_later(blocked, 429)
    assert blocked.headers["ratelimit-limit"] == "1" and blocked.headers["ratelimit-remaining"] == "0"


def assert_oauth_later(response: Response, status: int) -> None:
    """`/auth/token` speaks RFC 6749 also when it must refuse for now: `temporarily_unavailable`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()  # with the problem `code` of every other endpoint, as an extra member
    assert set(body) == {"error", "error_description", "code"} and body["error"] == "temporarily_unavailable"
    assert body["code"] == ("rate_limited" if status == 429 else "service_busy")
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["cache-control"] == "no-store"


async def test_token_refresh_grant_past_the_session_limit_keeps_the_token_unrotated(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    user = await register(client)
    raw = (await login(client, user["email"]))["refresh_token"]
    client.cookies.clear()
    use_limits(app, refresh_per_session="1/minute")
    first = await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": raw}
    )
    assert first.status_code == 200
    raw = first.json()["refresh_token"]
    blocked = await client.post(
        "/api/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": raw}
    )
    assert_oauth_later(blocked, 429)
    row = await db.scalar(select(RefreshToken).where(RefreshToken.token_hash == hash_token(raw)))
    assert row is not None and row.used_at is None  # rolled back: still the client's live token


async def test_disabled_limits_let_requests_through(app: FastAPI, client: AsyncClient) -> None:
    user = await register(client)
    use_limits(app, enabled=False, login_per_ip="1/minute", login_per_account="1/minute")
    for _ in range(3):
        response = await client.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
        assert response.status_code == 200
        assert "ratelimit-limit" not in response.headers


async def test_disabled_limits_keep_the_brute_force_wait(app: FastAPI, client: AsyncClient) -> None:
    user = await register(client)
    use_limits(app, enabled=False, failed_logins_before_delay=2)
    for _ in range(2):
        wrong = await client.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": "wrong pass"}
        )
        assert_problem(wrong, 401, "invalid_credentials")
    async with other_client(app, "198.51.100.20") as c:
        blocked = await c.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(blocked, 429, "rate_limited")


def behind_proxy(app: FastAPI, peer: str, forwarded_allow_ips: str) -> AsyncClient:
    """A client reaching `app` from `peer` through uvicorn's proxy-header handling, configured as
    `authgate serve` configures it from AUTHGATE_FORWARDED_ALLOW_IPS."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    trusted = Settings(forwarded_allow_ips=forwarded_allow_ips, _env_file=None).forwarded_allow_ips  # type: ignore[call-arg]
    proxied = ProxyHeadersMiddleware(app, trusted_hosts=trusted)  # type: ignore[arg-type]
    return AsyncClient(transport=ASGITransport(app=proxied, client=(peer, 50000)), base_url="https://test")


@pytest.mark.parametrize(
    ("trusted", "per_client"),
    [
        ("10.0.0.0/8", True),  # the balancer is listed: each client its own allowance
        ("127.0.0.1,::1", False),  # the default: every client is the balancer
    ],
)
async def test_the_per_ip_limit_counts_the_client_a_listed_proxy_names(
    app: FastAPI, client: AsyncClient, trusted: str, per_client: bool
) -> None:
    user = await register(client)
    body = {"email": user["email"], "password": PASSWORD}
    use_limits(app, login_per_ip="2/minute")
    async with behind_proxy(app, "10.0.0.5", trusted) as balancer:
        for _ in range(2):
            ok = await balancer.post(
                "/api/v1/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.1"}
            )
            assert ok.status_code == 200
        assert_rate_limited(
            await balancer.post("/api/v1/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.1"}),
            2,
        )
        other = await balancer.post(
            "/api/v1/auth/login", json=body, headers={"X-Forwarded-For": "198.51.100.2"}
        )
        assert other.status_code == (200 if per_client else 429)
        if per_client:  # the session records the client's address, not the balancer's
            sessions = await balancer.get(
                "/api/v1/auth/sessions", headers=bearer(other.json()["access_token"])
            )
            assert {s["ip"] for s in sessions.json()["items"]} == {"198.51.100.1", "198.51.100.2"}
    # A peer that is not listed cannot choose the address it is counted as.
    async with behind_proxy(app, "203.0.113.50", "10.0.0.0/8") as direct:
        for n in range(2):
            spoofed = {"X-Forwarded-For": f"192.0.2.{n}"}
            assert (await direct.post("/api/v1/auth/login", json=body, headers=spoofed)).status_code == 200
        blocked = await direct.post("/api/v1/auth/login", json=body, headers={"X-Forwarded-For": "192.0.2.9"})
        assert_rate_limited(blocked, 2)


def test_unknown_policy_string_is_refused() -> None:
    with pytest.raises(ValueError, match="parse rate limit string"):
        RateLimiter(RateLimits(login_per_ip="lots"))


# --- Redis: every API process shares the counters ----------------------------------------------


@pytest.fixture
async def redis_apps(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> AsyncIterator[tuple[FastAPI, FastAPI]]:
    shared = settings.model_copy(
        update={"redis_url": REDIS_URL, "rate_limit": RateLimits(login_per_ip="3/minute")}
    )
    apps = [create_app(shared, sessionmaker=sessionmaker, engine=engine) for _ in range(2)]
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        try:
            await apps[0].state.redis.ping()
        except Exception as exc:
            unavailable("Redis", exc)
        await apps[0].state.rate_limiter.reset()
        yield apps[0], apps[1]
        await apps[0].state.rate_limiter.reset()


async def test_two_app_instances_share_one_limit_in_redis(redis_apps: tuple[FastAPI, FastAPI]) -> None:
    first, second = redis_apps
    async with other_client(first, "192.0.2.50") as a, other_client(second, "192.0.2.50") as b:
        user = await register(a)
        body = {"email": user["email"], "password": PASSWORD}
        assert (await a.post("/api/v1/auth/login", json=body)).status_code == 200
        assert (await b.post("/api/v1/auth/login", json=body)).status_code == 200
        assert (await a.post("/api/v1/auth/login", json=body)).status_code == 200
        assert_rate_limited(await b.post("/api/v1/auth/login", json=body), 3)
        assert_rate_limited(await a.post("/api/v1/auth/login", json=body), 3)


async def test_unreachable_redis_fails_open() -> None:
    limiter = RateLimiter(RateLimits(login_per_ip="1/minute"), "redis://127.0.0.1:1/0")
    try:
        assert await limiter.hit("login_per_ip", "192.0.2.1") is None
        assert await limiter.hit("login_per_ip", "192.0.2.1") is None
    finally:
        await limiter.close()


async def mail_to(db: AsyncSession, email: str) -> int:
    query = select(func.count()).select_from(OutboxMessage).where(OutboxMessage.recipient == email)
    return int(await db.scalar(query) or 0)


async def test_forgot_password_limit_is_per_address_and_alike_for_unknown_ones(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    known = (await register(client))["email"]
    unknown = unique_email("nobody")
    use_limits(app, verification_per_account="2/hour")
    for email in (known, unknown):
        async with other_client(app, "198.51.100.20") as c:  # the per-IP limit is not the one hit
            answers = [
                await c.post("/api/v1/auth/password/forgot", json={"email": variant})
                for variant in (email, email.upper())
            ]
            sent = await mail_to(db, email)
            answers.append(await c.post("/api/v1/auth/password/forgot", json={"email": email}))
        assert [a.status_code for a in answers] == [202, 202, 429]
        assert_rate_limited(answers[2], 2)
        assert sent >= 1
        assert await mail_to(db, email) == sent  # the refused request sent nothing


async def test_verification_per_ip_limit(app: FastAPI, client: AsyncClient) -> None:
    use_limits(app, verification_per_ip="2/minute")
    confirm = "/api/v1/auth/verify-email/confirm"
    for _ in range(2):
        assert_problem(await client.post(confirm, json={"token": "x" * 43}), 400, "token_invalid")
    assert_rate_limited(await client.post(confirm, json={"token": "x" * 43}), 2)
    assert_rate_limited(await client.post("/api/v1/auth/password/forgot", json={"email": "a@b.co"}), 2)
    async with other_client(app, "198.51.100.21") as elsewhere:
        assert_problem(await elsewhere.post(confirm, json={"token": "x" * 43}), 400, "token_invalid")


async def test_email_verification_requests_per_account(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    first, first_headers = await signed_in(client)
    _, second_headers = await signed_in(client)
    use_limits(app, verification_per_account="1/hour")
    request = "/api/v1/auth/verify-email/request"
    assert (await client.post(request, headers=first_headers)).status_code == 202
    sent = await mail_to(db, first["email"])
    assert_rate_limited(await client.post(request, headers=first_headers), 1)
    assert await mail_to(db, first["email"]) == sent
    assert (await client.post(request, headers=second_headers)).status_code == 202  # another account


async def test_a_full_hashing_queue_is_503_with_retry_after_in_each_endpoints_shape(
    app: FastAPI, client: AsyncClient
) -> None:
    from authgate.errors import ServiceBusyError

    user = await register(client)

    async def busy(*args: object, **kwargs: object) -> object:
        raise ServiceBusyError(retry_after=2)

    app.state.passwords.verify = busy
    login_busy = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(login_busy, 503, "service_busy")
    assert login_busy.headers["retry-after"] == "2"
    form = {"grant_type": "password", "username": user["email"], "password": PASSWORD}
    token_busy = await client.post("/api/v1/auth/token", data=form)
    assert_oauth_later(token_busy, 503)
    assert token_busy.headers["retry-after"] == "2"
