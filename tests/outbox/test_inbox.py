"""The development inbox and the in-process courier."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authgate.config import OutboxSettings, Settings
from authgate.db import create_sessionmaker
from authgate.main import create_app
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.models import OutboxMessage
from authgate.outbox.service import Outbox
from tests.conftest import make_settings
from tests.factories import PASSWORD, assert_problem, register, unique_email


async def test_inbox_json_lists_rendered_messages_newest_first(client: AsyncClient) -> None:
    first = await register(client, full_name="First <b>Person</b>")
    second = await register(client)
    response = await client.get("/dev/inbox.json")
    assert response.status_code == 200
    items = response.json()["items"]
    assert [i["to"] for i in items[:2]] == [second["email"], first["email"]]
    item = items[1]
    assert set(item) == {"id", "channel", "to", "subject", "text", "html", "status", "created_at"}
    assert item["channel"] == "email"
    assert item["status"] == "pending"
    assert item["subject"] == "Confirm your email address"
    assert "http://test/ui/verify-email?token=" in item["text"]
    assert "First &lt;b&gt;Person&lt;/b&gt;" in item["html"]


async def test_inbox_html_page_escapes_content(client: AsyncClient) -> None:
    await register(client, full_name="<script>alert(1)</script>")
    response = await client.get("/dev/inbox")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "Confirm your email address" in response.text
    assert "<script>alert(1)</script>" not in response.text


async def test_inbox_is_absent_in_production(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> None:
    production = make_settings(settings.database_url, env="production")
    app = create_app(production, sessionmaker=sessionmaker, engine=engine)
    transport = ASGITransport(app=app)
    client = AsyncClient(transport=transport, base_url="https://test")
    async with app.router.lifespan_context(app), client as c:
        assert_problem(await c.get("/dev/inbox.json"), 404, "not_found")
        assert_problem(await c.get("/dev/inbox"), 404, "not_found")
        assert "/dev/inbox.json" not in (await c.get("/openapi.json")).json()["paths"]


async def test_in_process_dispatcher_delivers_when_enabled(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, db: AsyncSession
) -> None:
    enabled = settings.model_copy(
        update={
            "outbox": settings.outbox.model_copy(update={"in_process": True, "poll_interval": 0.01}),
            "retention": settings.retention.model_copy(update={"automatic": False}),  # the courier alone
        }
    )
    assert not settings.runs_dispatcher_in_process  # off in tests by default
    async with sessionmaker() as session, session.begin():
        message = await Outbox(session).enqueue(
            channel="sms",
            template="phone_verification",
            to="+14155550123",
            context={"code": "123456", "expires_minutes": 10},
        )
    app: FastAPI = create_app(enabled, sessionmaker=sessionmaker, engine=engine)
    # Only the courier uses the test's connection while the app runs (no requests, no polling
    # queries), so its savepoints cannot interleave with others.
    async with app.router.lifespan_context(app):
        for _ in range(500):
            if app.state.dispatcher.delivered:
                break
            await asyncio.sleep(0.01)
    row = await db.scalar(select(OutboxMessage).where(OutboxMessage.id == message.id))
    assert row is not None
    assert row.status == "sent"


async def test_in_process_courier_wakes_on_the_commit_that_queues_mail(
    live_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polling rarely (every 60 s here), it still sends a sign-up link within moments of the commit."""
    idle_turns = 0
    idling = asyncio.Condition()
    idle = Dispatcher._idle

    async def counted_idle(self: Dispatcher, stop: asyncio.Event, seconds: float) -> None:
        nonlocal idle_turns
        async with idling:
            idle_turns += 1
            idling.notify_all()
        await idle(self, stop, seconds)

    async def idled(times: int) -> None:
        async with idling:
            await asyncio.wait_for(idling.wait_for(lambda: idle_turns >= times), timeout=10)

    monkeypatch.setattr(Dispatcher, "_idle", counted_idle)
    url = live_engine.url.render_as_string(hide_password=False)
    settings = make_settings(url, outbox=OutboxSettings(in_process=True, in_process_poll_interval=60))
    app: FastAPI = create_app(settings, sessionmaker=create_sessionmaker(live_engine), engine=live_engine)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=ASGITransport(app=app), base_url="https://test") as client,
    ):
        await idled(1)  # the first poll, at start, found nothing: the courier waits out its 60 s
        assert app.state.dispatcher.delivered == 0
        email = unique_email("wake")
        response = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201
        # Woken by the commit, it delivers and idles again: long before the next poll would be due.
        await idled(2)
        assert app.state.dispatcher.delivered == 1
