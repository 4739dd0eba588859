"""Transport configuration from settings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from authgate.config import Settings
from authgate.outbox.transports import (
    LogTransport,
    SMTPConfig,
    SMTPTransport,
    TwilioTransport,
    transports_from_settings,
)
from tests.conftest import make_settings

URL = "sqlite+aiosqlite:///unused.db"


def test_smtp_url_with_credentials_starttls_and_tls() -> None:
    plain = SMTPConfig.from_settings(make_settings(URL, smtp_url="smtp://us%40er:p%3Ass@mail.example.com"))
    assert (plain.hostname, plain.port, plain.username, plain.password) == (
        "mail.example.com",
        587,
        "us@er",
        "p:ss",
    )
    assert plain.use_tls is False
    assert plain.start_tls is None  # upgrade when offered

    tls = SMTPConfig.from_settings(make_settings(URL, smtp_url="smtps://mail.example.com"))
    assert (tls.port, tls.use_tls, tls.start_tls) == (465, True, False)

    required = make_settings(URL, smtp_url="smtp://mail.example.com:2525", outbox={"smtp_starttls": True})
    assert (SMTPConfig.from_settings(required).port, SMTPConfig.from_settings(required).start_tls) == (
        2525,
        True,
    )
    with pytest.raises(ValueError, match="smtp://"):
        SMTPConfig.from_settings(make_settings(URL, smtp_url="http://mail.example.com"))


def test_transports_follow_the_configuration() -> None:
    default = transports_from_settings(make_settings(URL))
    assert isinstance(default.email, LogTransport)
    assert isinstance(default.sms, LogTransport)
    configured: Settings = make_settings(
        URL,
        smtp_url="smtp://mail.example.com",
        twilio_account_sid="AC1",
        twilio_auth_token=SecretStr("t"),
        twilio_from="+15005550006",
    )
    chosen = transports_from_settings(configured)
    assert isinstance(chosen.email, SMTPTransport)
    assert isinstance(chosen.sms, TwilioTransport)
    forced = transports_from_settings(
        configured.model_copy(
            update={
                "outbox": configured.outbox.model_copy(
                    update={"email_transport": "log", "sms_transport": "log"}
                )
            }
        )
    )
    assert isinstance(forced.email, LogTransport)
    assert isinstance(forced.sms, LogTransport)


def test_dispatcher_runs_in_process_by_default_only_outside_tests() -> None:
    assert make_settings(URL, env="development").runs_dispatcher_in_process
    assert not make_settings(URL).runs_dispatcher_in_process  # test
    assert make_settings(URL, env="test", outbox={"in_process": True}).runs_dispatcher_in_process
    postgres = "postgresql+asyncpg://db/authgate"
    assert not make_settings(postgres, env="production").runs_dispatcher_in_process
    assert make_settings(URL, env="production").runs_dispatcher_in_process  # embedded shape


def test_production_warns_when_messages_would_only_be_logged() -> None:
    """In production a message to the log transport is marked sent and never arrives: say so."""
    from structlog.testing import capture_logs

    production = make_settings(URL).model_copy(update={"env": "production"})
    with capture_logs() as logs:
        transports_from_settings(production)
    assert [(e["event"], e["channel"], e["hint"]) for e in logs] == [
        ("messages_not_delivered", "email", "set AUTHGATE_SMTP_URL"),
        ("messages_not_delivered", "sms", "set AUTHGATE_TWILIO_*"),
    ]
    with capture_logs() as quiet:
        transports_from_settings(production.model_copy(update={"smtp_url": "smtp://mail.example.com"}))
        transports_from_settings(make_settings(URL))  # development and test: the dev inbox shows them
    assert [e["channel"] for e in quiet] == ["sms"]
