"""Per-account brute-force protection: a growing, capped wait after N failures, alike for unknown accounts."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.audit.models import AuditEvent
from authgate.config import RateLimits
from authgate.db import utcnow
from authgate.ratelimit.bruteforce import LoginGuard, _hash, account_identifier, login_identifier
from authgate.ratelimit.models import LoginThrottle
from tests.factories import PASSWORD, assert_problem, register

N = 3
ATTACKER_IP = "198.51.100.66"


def guard_after(app: FastAPI, failures: int = N, **extra: object) -> None:
    app.state.settings.rate_limit = RateLimits(failed_logins_before_delay=failures, **extra)  # type: ignore[arg-type]


def client_at(app: FastAPI, ip: str) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, client=(ip, 40000)), base_url="https://test")


async def fail(client: AsyncClient, email: str, times: int) -> None:
    for _ in range(times):
        response = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": "not the password"}
        )
        assert_problem(response, 401, "invalid_credentials")


async def throttle_row(db: AsyncSession, identifier: str) -> LoginThrottle | None:
    db.expire_all()
    return await db.scalar(select(LoginThrottle).where(LoginThrottle.key_hash == _hash(identifier)))


async def test_wait_after_n_failures_even_with_the_right_password(app: FastAPI, client: AsyncClient) -> None:
    guard_after(app)
    user = await register(client)
    await fail(client, user["email"], N)
    blocked = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    body = assert_problem(blocked, 429, "rate_limited")
    assert 50 <= int(blocked.headers["retry-after"]) <= 61  # the base wait, one minute
    assert body["retry_after"] == int(blocked.headers["retry-after"])


async def test_unknown_and_known_accounts_are_answered_alike(app: FastAPI, client: AsyncClient) -> None:
    guard_after(app)
    user = await register(client)
    await fail(client, user["email"], N)
    await fail(client, "nobody-here@example.com", N)
    known = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": "x"})
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody-here@example.com", "password": "x"}
    )
    a, b = assert_problem(known, 429, "rate_limited"), assert_problem(unknown, 429, "rate_limited")
    varying = ("request_id", "retry_after")
    assert {k: v for k, v in a.items() if k not in varying} == {
        k: v for k, v in b.items() if k not in varying
    }
    assert abs(a["retry_after"] - b["retry_after"]) <= 1
    assert set(known.headers) - {"x-request-id"} == set(unknown.headers) - {"x-request-id"}


async def test_identifier_is_normalised(app: FastAPI, client: AsyncClient) -> None:
    guard_after(app)
    user = await register(client, username="casey_b")
    await fail(client, user["email"].upper(), N)
    blocked = await client.post(
        "/api/v1/auth/login", json={"email": f"  {user['email']} ", "password": PASSWORD}
    )
    assert_problem(blocked, 429, "rate_limited")
    # The username names the same account, and shares its count.
    by_name = await client.post("/api/v1/auth/login", json={"username": "CASEY_B", "password": PASSWORD})
    assert_problem(by_name, 429, "rate_limited")


async def test_success_resets_the_count(app: FastAPI, client: AsyncClient, db: AsyncSession) -> None:
    guard_after(app)
    user = await register(client)
    await fail(client, user["email"], N - 1)
    account = account_identifier(uuid.UUID(user["id"]))
    assert await throttle_row(db, account) is not None
    assert (
        await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).status_code == 200
    assert await throttle_row(db, account) is None
    await fail(client, user["email"], N - 1)  # would be N + 1 without the reset


async def test_refused_attempts_do_not_extend_the_wait(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    guard_after(app)
    await fail(client, "ghost@example.com", N)
    before = await throttle_row(db, login_identifier("ghost@example.com", None))
    assert before is not None
    for _ in range(3):
        response = await client.post(
            "/api/v1/auth/login", json={"email": "ghost@example.com", "password": "x"}
        )
        assert_problem(response, 429, "rate_limited")
    after = await throttle_row(db, login_identifier("ghost@example.com", None))
    assert after is not None
    assert (after.failures, after.locked_until) == (before.failures, before.locked_until)


async def test_the_wait_grows_and_is_capped(app: FastAPI, client: AsyncClient, db: AsyncSession) -> None:
    guard_after(app, lockout_base_wait=timedelta(minutes=1), lockout_max_wait=timedelta(minutes=5))
    identifier = login_identifier("grow@example.com", None)
    waits = []
    for _ in range(6):
        await fail(client, "grow@example.com", 1)
        row = await throttle_row(db, identifier)
        assert row is not None
        waits.append(
            round((row.locked_until - row.last_failure_at).total_seconds()) if row.locked_until else 0
        )
        # Let the wait pass so the next attempt is counted.
        await db.execute(
            update(LoginThrottle)
            .where(LoginThrottle.key_hash == row.key_hash)
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
        await db.commit()
    assert waits == [0, 0, 60, 120, 240, 300]


def test_wait_formula() -> None:
    guard = LoginGuard(RateLimits(failed_logins_before_delay=10))
    assert guard.wait_for(9) == timedelta(0)
    assert guard.wait_for(10) == timedelta(minutes=1)
    assert guard.wait_for(12) == timedelta(minutes=4)
    assert guard.wait_for(10_000) == timedelta(minutes=15)  # the default cap, however many failures


async def test_the_wait_ends(app: FastAPI, client: AsyncClient, db: AsyncSession) -> None:
    guard_after(app)
    user = await register(client)
    await fail(client, user["email"], N)
    await db.execute(update(LoginThrottle).values(locked_until=utcnow() - timedelta(seconds=1)))
    await db.commit()
    ok = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert ok.status_code == 200


async def test_old_failures_are_forgotten_after_a_quiet_period(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    guard_after(app)
    await fail(client, "quiet@example.com", N - 1)
    await db.execute(update(LoginThrottle).values(last_failure_at=utcnow() - timedelta(hours=13)))
    await db.commit()
    await fail(client, "quiet@example.com", 1)
    row = await throttle_row(db, login_identifier("quiet@example.com", None))
    assert row is not None
    assert row.failures == 1
    assert row.locked_until is None


async def test_by_default_the_wait_holds_the_owner_at_a_known_address_too(
    app: FastAPI, client: AsyncClient
) -> None:
    """SPEC §12: a growing wait after N consecutive failures, wherever the attempts come from."""
    guard_after(app)
    user = await register(client)
    assert (
        await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).status_code == 200
    await fail(client, user["email"], N)
    blocked = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(blocked, 429, "rate_limited")
    assert int(blocked.headers["retry-after"]) > 0


async def test_attacker_elsewhere_cannot_lock_the_owner_out_of_a_known_network(
    app: FastAPI, client: AsyncClient
) -> None:
    """With `lockout_spares_known_ips`: the wait holds every address except ones the account signed in from."""
    guard_after(app, lockout_spares_known_ips=True)
    user = await register(client)
    assert (
        await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).status_code == 200
    async with client_at(app, ATTACKER_IP) as attacker:
        await fail(attacker, user["email"], N)
        assert_problem(
            await attacker.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}),
            429,
            "rate_limited",
        )
    # The owner, from the address they signed in from before, still gets in (and that resets the count).
    ok = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert ok.status_code == 200
    async with client_at(app, ATTACKER_IP) as attacker:
        await fail(attacker, user["email"], N - 1)


async def test_failures_from_a_known_network_still_count(app: FastAPI, client: AsyncClient) -> None:
    guard_after(app, lockout_spares_known_ips=True)
    user = await register(client)
    assert (
        await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).status_code == 200
    await fail(client, user["email"], N + 2)  # never 429 here, but each failure still counts
    async with client_at(app, ATTACKER_IP) as elsewhere:
        blocked = await elsewhere.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD}
        )
    assert_problem(blocked, 429, "rate_limited")


async def test_parallel_failures_all_count(
    sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    guard = LoginGuard(RateLimits(failed_logins_before_delay=100))
    for _ in range(5):
        async with sessionmaker() as s, s.begin():
            await guard.record_failure(s, "email:count@example.com")
    row = await throttle_row(db, "email:count@example.com")
    assert row is not None
    assert row.failures == 5


async def test_token_password_grant_is_held_too(app: FastAPI, client: AsyncClient) -> None:
    guard_after(app)
    user = await register(client)
    await fail(client, user["email"], N)
    form = {"grant_type": "password", "username": user["email"], "password": PASSWORD}
    held = await client.post("/api/v1/auth/token", data=form)
    assert held.status_code == 429 and held.json()["error"] == "temporarily_unavailable"
    assert 50 <= int(held.headers["retry-after"]) <= 61


async def test_email_and_username_share_one_count(app: FastAPI, client: AsyncClient) -> None:
    """SPEC §12: per account. Alternating the two identifiers does not double the attempts."""
    guard_after(app)
    user = await register(client, username="two_names")
    for attempt in range(N):
        body = {"email": user["email"]} if attempt % 2 else {"username": "two_names"}
        response = await client.post("/api/v1/auth/login", json={**body, "password": "not the password"})
        assert_problem(response, 401, "invalid_credentials")
    for body in ({"email": user["email"]}, {"username": "TWO_NAMES"}):
        blocked = await client.post("/api/v1/auth/login", json={**body, "password": PASSWORD})
        assert_problem(blocked, 429, "rate_limited")


async def _failing_meanwhile(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession], identifier: str
) -> None:
    """Make the password check take long enough for N parallel failures to land during it."""
    passwords = app.state.passwords
    verify = passwords.verify

    async def verify_while_others_fail(*args: object, **kwargs: object) -> object:
        guard = LoginGuard(app.state.settings.rate_limit)
        for _ in range(N):
            async with sessionmaker() as s, s.begin():
                await guard.record_failure(s, identifier)
        passwords.verify = verify
        return await verify(*args, **kwargs)

    passwords.verify = verify_while_others_fail


@pytest.mark.parametrize("right", [True, False], ids=["right password", "wrong password"])
async def test_an_attempt_answered_after_parallel_failures_is_held_and_not_counted(
    app: FastAPI,
    client: AsyncClient,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    right: bool,
) -> None:
    """The right password gets the same 429 as a wrong one; neither resets nor adds to the count."""
    guard_after(app)
    user = await register(client)
    identifier = account_identifier(uuid.UUID(user["id"]))
    await _failing_meanwhile(app, sessionmaker, identifier)
    password = PASSWORD if right else "wrong guess"
    held = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": password})
    assert_problem(held, 429, "rate_limited")
    assert "set-cookie" not in held.headers
    row = await throttle_row(db, identifier)
    assert row is not None and row.failures == N
    failed = (
        await db.scalars(
            select(AuditEvent.data).where(
                AuditEvent.action == "auth.login.failed", AuditEvent.target_id == user["id"]
            )
        )
    ).all()
    # A wrong password is on record as one, marked as answered 429; a right one held is no failure.
    assert failed == ([] if right else [{"reason": "wrong_password", "throttled": True}])
