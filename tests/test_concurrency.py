"""Concurrent requests on the real engines (committed, not savepoint-isolated): no lost writes, no 5xx."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from httpx import AsyncClient

from tests.factories import PASSWORD, bearer, unique_email


@pytest.mark.postgres_only
async def test_parallel_registrations_of_one_email(live_client: AsyncClient) -> None:
    email = unique_email("race")
    responses = await asyncio.gather(
        *(
            live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            for _ in range(20)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 19}, statuses
    assert all(r.json()["code"] == "email_taken" for r in responses if r.status_code == 409)


async def test_parallel_registrations_of_distinct_users(live_client: AsyncClient) -> None:
    """The embedded SQLite default holds concurrent writers: no "database is locked"."""
    responses = await asyncio.gather(
        *(
            live_client.post(
                "/api/v1/auth/register", json={"email": unique_email("par"), "password": PASSWORD}
            )
            for _ in range(16)
        )
    )
    assert [r.status_code for r in responses] == [201] * 16, [
        r.text for r in responses if r.status_code != 201
    ]


async def test_64_concurrent_requests_do_not_exhaust_the_pool(live_client: AsyncClient) -> None:
    email = unique_email("busy")
    assert (
        await live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    ).status_code == 201
    login = await live_client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = bearer(login.json()["access_token"])
    reads = [live_client.get("/api/v1/users/me", headers=headers) for _ in range(48)]
    logins = [
        live_client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}) for _ in range(16)
    ]
    responses = await asyncio.gather(*reads, *logins)
    assert Counter(r.status_code for r in responses) == {200: 64}
