"""Fixtures for the message courier: a real SMTP server (aiosmtpd) and a dispatcher delivering to it.

Imported by the conftest files of the test packages that need them.
"""

from __future__ import annotations

import email
import re
import socket
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.config import Settings
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.transports import LogTransport, SMTPConfig, SMTPTransport, Transports


class Mailbox:
    """Collects every message the SMTP server accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd hook
        raw = envelope.original_content or envelope.content or b""
        data = raw if isinstance(raw, bytes) else raw.encode()
        message = email.message_from_bytes(data, policy=default_policy)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        return "250 OK"

    def clear(self) -> None:
        self.messages.clear()

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if m["To"] == address]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = _free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
def mailbox(smtp_server: tuple[Mailbox, int]) -> Iterator[Mailbox]:
    box, _ = smtp_server
    box.clear()
    yield box
    box.clear()


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: tuple[Mailbox, int]) -> Settings:
    return settings.model_copy(
        update={
            "smtp_url": f"smtp://127.0.0.1:{smtp_server[1]}",
            "outbox": settings.outbox.model_copy(update={"smtp_starttls": False}),
        }
    )


@pytest.fixture
def courier(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession], smtp_settings: Settings
) -> Dispatcher:
    """A dispatcher on the test's transaction: email over real SMTP, SMS to the log (read from the outbox)."""
    transports = Transports(
        email=SMTPTransport(SMTPConfig.from_settings(smtp_settings), smtp_settings.email_from),
        sms=LogTransport(include_body=True),
    )
    return Dispatcher(sessionmaker, smtp_settings, transports)


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def body_html(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def link_token(message: EmailMessage, path: str) -> str:
    """The token of the link to `path` in the text body (the link goes to PUBLIC_URL)."""
    match = re.search(rf"http://test{re.escape(path)}\?token=([A-Za-z0-9_-]+)", body_text(message))
    assert match is not None, body_text(message)
    return match.group(1)


async def mail_to(courier: Dispatcher, mailbox: Mailbox, address: str, subject_part: str) -> EmailMessage:
    await courier.drain()
    found = [m for m in mailbox.to(address) if subject_part.lower() in str(m["Subject"]).lower()]
    assert found, [str(m["Subject"]) for m in mailbox.messages]
    return found[-1]
