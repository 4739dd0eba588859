"""Concurrent requests on the real engines (committed, not savepoint-isolated): no lost writes, no 5xx."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import delete, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from authgate.audit.models import AuditChainHead
from authgate.audit.service import GENESIS_HASH
from authgate.db import create_engine, create_sessionmaker
from authgate.main import create_app
from authgate.model_registry import Base
from tests.conftest import make_settings
from tests.factories import PASSWORD, bearer, unique_email


async def _wipe(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            if table.name != "audit_chain_head":
                await conn.execute(delete(table))
        await conn.execute(update(AuditChainHead).values(last_seq=0, last_hash=GENESIS_HASH))


@pytest.fixture
async def live_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """A small pool on the same database, so a request holding two connections would stall."""
    url = engine.url.render_as_string(hide_password=False)
    live = create_engine(
        make_settings(url, database_pool_size=4, database_max_overflow=0, database_pool_timeout=20)
    )
    if live.dialect.name == "postgresql":
        async with live.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    yield live
    await _wipe(live)
    await live.dispose()


@pytest.fixture
async def live_client(live_engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    url = live_engine.url.render_as_string(hide_password=False)
    app: FastAPI = create_app(
        make_settings(url), sessionmaker=create_sessionmaker(live_engine), engine=live_engine
    )
    transport = ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="https://test") as client,
    ):
        yield client


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
