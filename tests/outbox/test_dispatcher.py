"""The courier: claiming, SMTP and Twilio delivery, retries with backoff, dead messages, shutdown."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
import respx
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.config import OutboxSettings, Settings
from authgate.db import utcnow
from authgate.outbox.dispatcher import Dispatcher, backoff_delay
from authgate.outbox.models import OutboxMessage
from authgate.outbox.service import Outbox
from authgate.outbox.transports import (
    LogTransport,
    OutgoingMessage,
    SMTPConfig,
    SMTPTransport,
    TransientError,
    Transports,
    TwilioTransport,
)
from tests.courier import Mailbox, body_html, body_text

TWILIO = "https://twilio.test"


async def _enqueue(sessionmaker: async_sessionmaker[AsyncSession], **overrides: object) -> OutboxMessage:
    values: dict[str, object] = {
        "channel": "email",
        "template": "password_changed",
        "to": "owner@example.com",
        "context": {"when": "2026-01-01 00:00 UTC", "sessions_link": "http://test/ui/security"},
    }
    values.update(overrides)
    async with sessionmaker() as session, session.begin():
        return await Outbox(session).enqueue(**values)  # type: ignore[arg-type]


async def _row(db: AsyncSession, message_id: object) -> OutboxMessage:
    row = await db.scalar(
        select(OutboxMessage).where(OutboxMessage.id == message_id).execution_options(populate_existing=True)
    )
    assert row is not None
    return row


def _twilio_settings(settings: Settings, **outbox: object) -> Settings:
    return settings.model_copy(
        update={
            "twilio_account_sid": "AC123",
            "twilio_auth_token": SecretStr("secret-token"),
            "twilio_from": "+15005550006",
            "twilio_base_url": TWILIO,
            "outbox": settings.outbox.model_copy(update=outbox),
        }
    )


def _twilio_dispatcher(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> Dispatcher:
    transports = Transports(email=LogTransport(include_body=False), sms=TwilioTransport(settings))
    return Dispatcher(sessionmaker, settings, transports)


async def test_smtp_delivery_renders_text_and_html_and_marks_sent(
    courier: Dispatcher, mailbox: Mailbox, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    message = await _enqueue(
        sessionmaker,
        template="workspace_invitation",
        to="guest@example.com",
        context={"workspace_name": "Acme <Labs>", "inviter": "Ada", "link": "http://x/y", "role": "member"},
    )
    assert await courier.drain() == 1
    [mail] = mailbox.messages
    assert mail["To"] == "guest@example.com"
    assert mail["Subject"] == "Ada invited you to Acme <Labs>"
    assert "Acme <Labs>" in body_text(mail)
    assert "Acme &lt;Labs&gt;" in body_html(message=mail)
    assert str(mail["Message-ID"]).strip() == f"<{message.idempotency_key.replace(':', '.')}@localhost>"
    row = await _row(db, message.id)
    assert row.status == "sent"
    assert row.attempts == 1
    assert row.sent_at is not None
    assert row.provider_message_id == str(mail["Message-ID"]).strip()
    assert row.subject == mail["Subject"]
    assert row.html is not None
    assert await courier.drain() == 0  # nothing sent twice


async def test_twilio_2xx_is_delivered_with_the_provider_id_and_idempotency_key(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    message = await _enqueue(
        sessionmaker,
        channel="sms",
        template="phone_verification",
        to="+14155550123",
        context={"code": "123456", "expires_minutes": 10},
    )
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{TWILIO}/2010-04-01/Accounts/AC123/Messages.json").respond(
            201, json={"sid": "SM42"}
        )
        await _twilio_dispatcher(sessionmaker, _twilio_settings(settings)).drain()
    request = route.calls.last.request
    assert request.headers["I-Twilio-Idempotency-Token"] == message.idempotency_key
    assert b"To=%2B14155550123" in request.content
    assert b"123456" in request.content
    assert request.headers["Authorization"].startswith("Basic ")
    row = await _row(db, message.id)
    assert (row.status, row.provider_message_id) == ("sent", "SM42")


async def test_twilio_4xx_is_dead_at_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    message = await _enqueue(
        sessionmaker,
        channel="sms",
        template="phone_verification",
        to="+14155550123",
        context={"code": "123456", "expires_minutes": 10},
    )
    with respx.mock:
        respx.post(f"{TWILIO}/2010-04-01/Accounts/AC123/Messages.json").respond(400, json={"code": 21211})
        await _twilio_dispatcher(sessionmaker, _twilio_settings(settings)).drain()
    row = await _row(db, message.id)
    assert row.status == "dead"
    assert row.attempts == 1
    assert "400" in (row.last_error or "")


@pytest.mark.parametrize("failure", ["500", "timeout"])
async def test_twilio_5xx_and_timeouts_retry_with_backoff_then_go_dead(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession, failure: str
) -> None:
    message = await _enqueue(
        sessionmaker,
        channel="sms",
        template="phone_verification",
        to="+14155550123",
        context={"code": "123456", "expires_minutes": 10},
    )
    dispatcher = _twilio_dispatcher(sessionmaker, _twilio_settings(settings, max_attempts=2))
    with respx.mock:
        route = respx.post(f"{TWILIO}/2010-04-01/Accounts/AC123/Messages.json")
        if failure == "500":
            route.respond(503)
        else:
            route.side_effect = httpx.ReadTimeout("slow")
        await dispatcher.drain()
        row = await _row(db, message.id)
        assert row.status == "pending"
        assert row.attempts == 1
        assert row.last_error
        assert row.next_attempt_at > utcnow()  # backed off: not due yet
        assert await dispatcher.drain() == 0

        await db.execute(
            update(OutboxMessage).where(OutboxMessage.id == message.id).values(next_attempt_at=utcnow())
        )
        await dispatcher.drain()
        assert route.call_count == 2
    row = await _row(db, message.id)
    assert row.status == "dead"
    assert row.attempts == 2


async def test_a_retry_succeeds_after_a_transient_failure(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    message = await _enqueue(
        sessionmaker,
        channel="sms",
        template="phone_verification",
        to="+14155550123",
        context={"code": "123456", "expires_minutes": 10},
    )
    dispatcher = _twilio_dispatcher(sessionmaker, _twilio_settings(settings))
    with respx.mock:
        respx.post(f"{TWILIO}/2010-04-01/Accounts/AC123/Messages.json").mock(
            side_effect=[httpx.Response(500), httpx.Response(201, json={"sid": "SM7"})]
        )
        await dispatcher.drain()
        await db.execute(
            update(OutboxMessage).where(OutboxMessage.id == message.id).values(next_attempt_at=utcnow())
        )
        await dispatcher.drain()
    row = await _row(db, message.id)
    assert (row.status, row.attempts, row.provider_message_id) == ("sent", 2, "SM7")


async def test_a_message_that_cannot_render_goes_dead(
    courier: Dispatcher, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession, mailbox: Mailbox
) -> None:
    unknown = await _enqueue(sessionmaker, template="no_such_template")
    missing = await _enqueue(sessionmaker, template="user_invite", context={"link": "http://x"})  # no inviter
    await courier.drain()
    assert (await _row(db, unknown.id)).status == "dead"
    missing_row = await _row(db, missing.id)
    assert missing_row.status == "dead"
    assert "inviter" in (missing_row.last_error or "")
    assert mailbox.messages == []


async def test_smtp_server_down_is_retried(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    down = settings.model_copy(update={"smtp_url": "smtp://127.0.0.1:9"})
    message = await _enqueue(sessionmaker)
    transport = SMTPTransport(SMTPConfig.from_settings(down), down.email_from)
    await Dispatcher(sessionmaker, down, Transports(email=transport, sms=transport)).drain()
    row = await _row(db, message.id)
    assert row.status == "pending"
    assert row.attempts == 1
    assert row.last_error


class _Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.sent: list[str] = []
        self.fail = fail

    async def send(self, message: OutgoingMessage) -> str:
        if self.fail:
            raise TransientError("down")
        self.sent.append(message.id)
        await asyncio.sleep(0)
        return f"rec-{message.id}"


async def test_stop_releases_the_rest_of_the_batch(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    ids = [(await _enqueue(sessionmaker, to=f"u{i}@example.com")).id for i in range(3)]
    recorder = _Recorder()
    dispatcher = Dispatcher(sessionmaker, settings, Transports(email=recorder, sms=recorder))
    stop = asyncio.Event()
    stop.set()
    assert await dispatcher.run_once(stop) == 0
    rows = [await _row(db, i) for i in ids]
    assert [(r.status, r.attempts, r.claimed_at) for r in rows] == [("pending", 0, None)] * 3
    assert await dispatcher.drain() == 3
    assert len(recorder.sent) == 3


async def test_a_claim_abandoned_by_a_dead_worker_is_taken_over(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    message = await _enqueue(sessionmaker)
    recorder = _Recorder()
    dispatcher = Dispatcher(sessionmaker, settings, Transports(email=recorder, sms=recorder))
    [claimed] = await dispatcher.claim()  # the worker "dies" here, before sending
    assert await dispatcher.claim() == []  # still within the claim timeout: nobody else takes it
    await db.execute(
        update(OutboxMessage)
        .where(OutboxMessage.id == message.id)
        .values(claimed_at=claimed.claimed_at - settings.outbox.claim_timeout - timedelta(seconds=1))
    )
    assert await dispatcher.drain() == 1
    row = await _row(db, message.id)
    assert row.status == "sent"
    assert row.attempts == 2
    assert recorder.sent == [str(message.id)]


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    config = OutboxSettings(backoff_base=timedelta(seconds=10), backoff_max=timedelta(seconds=100))
    for attempt, full in ((1, 10), (2, 20), (3, 40), (10, 100)):
        delays = {backoff_delay(attempt, config).total_seconds() for _ in range(20)}
        assert all(full / 2 <= d <= full for d in delays)
        assert len(delays) > 1  # jittered


async def test_run_loop_delivers_and_stops(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession
) -> None:
    message = await _enqueue(sessionmaker)
    recorder = _Recorder()
    fast = settings.model_copy(update={"outbox": settings.outbox.model_copy(update={"poll_interval": 0.01})})
    dispatcher = Dispatcher(sessionmaker, fast, Transports(email=recorder, sms=recorder))
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    for _ in range(200):
        if recorder.sent:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert recorder.sent == [str(message.id)]
    assert (await _row(db, message.id)).status == "sent"


@pytest.mark.parametrize("env", ["development", "production"])
async def test_outside_development_a_finished_message_keeps_no_body(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], db: AsyncSession, env: str
) -> None:
    """A sent or dead message's links and codes do not stay in the database (the dev inbox needs them)."""
    secret_link = "http://test/ui/password/reset?token=live-reset-token"
    sent = await _enqueue(
        sessionmaker, template="password_reset", context={"link": secret_link, "expires_minutes": 60}
    )
    dead = await _enqueue(
        sessionmaker,
        channel="sms",
        template="phone_verification",
        to="+14155550123",
        context={"code": "654321", "expires_minutes": 10},
    )
    broken = await _enqueue(sessionmaker, template="no_such_template", context={"link": secret_link})
    shaped = _twilio_settings(settings).model_copy(update={"env": env})
    with respx.mock:
        respx.post(f"{TWILIO}/2010-04-01/Accounts/AC123/Messages.json").respond(400, json={"code": 21211})
        await _twilio_dispatcher(sessionmaker, shaped).drain()
    sent_row, dead_row = await _row(db, sent.id), await _row(db, dead.id)
    assert (sent_row.status, dead_row.status) == ("sent", "dead")
    assert sent_row.subject  # what an administrator may see stays
    broken_row = await _row(db, broken.id)
    assert broken_row.status == "dead"  # it never rendered: dead at claim time
    kept = [
        sent_row.context,
        sent_row.text,
        sent_row.html,
        dead_row.context,
        dead_row.text,
        broken_row.context,
    ]
    if env == "development":
        assert secret_link in str(kept) and "654321" in str(kept) and broken_row.context
    else:
        assert kept == [{}, None, None, {}, None, {}]
