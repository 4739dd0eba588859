"""Delivery transports: `log` (development), SMTP (aiosmtplib) and Twilio SMS (httpx).

A transport either returns the provider's message id (delivered), raises `TransientError`
(try again later: timeouts, 5xx, connection failures) or `PermanentError` (the provider refused
the message for good: 4xx, a rejected recipient). The dispatcher turns these into statuses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol
from urllib.parse import unquote, urlsplit

import aiosmtplib
import httpx
import structlog

from authgate.config import Settings

log = structlog.get_logger("authgate.outbox")


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A rendered message ready for a transport (no ORM object crosses the transaction boundary)."""

    id: str
    channel: str
    to: str
    subject: str | None
    text: str
    html: str | None
    idempotency_key: str


class TransientError(Exception):
    """Delivery failed in a way that may succeed later."""


class PermanentError(Exception):
    """Delivery failed for good; the message goes dead."""


class Transport(Protocol):
    async def send(self, message: OutgoingMessage) -> str:
        """Deliver the message; returns the provider's message id."""
        ...


class LogTransport:
    """Development transport: writes the message to the log; the dev inbox shows it from the outbox table.

    Bodies carry live links and codes, so they are logged only where dev tools are exposed.
    """

    def __init__(self, *, include_body: bool) -> None:
        self._include_body = include_body

    async def send(self, message: OutgoingMessage) -> str:
        log.info(
            "message_logged",
            channel=message.channel,
            to=message.to,
            subject=message.subject,
            body=message.text if self._include_body else "[hidden outside development]",
        )
        return f"log-{message.id}"


@dataclass(frozen=True, slots=True)
class SMTPConfig:
    hostname: str
    port: int
    username: str | None
    password: str | None
    use_tls: bool
    start_tls: bool | None
    timeout: float

    @classmethod
    def from_settings(cls, settings: Settings) -> SMTPConfig:
        if not settings.smtp_url:
            raise ValueError("AUTHGATE_SMTP_URL is not set")
        url = urlsplit(settings.smtp_url)
        if url.scheme not in ("smtp", "smtps"):
            raise ValueError("AUTHGATE_SMTP_URL must start with smtp:// or smtps://")
        use_tls = url.scheme == "smtps" or settings.outbox.smtp_tls
        return cls(
            hostname=url.hostname or "localhost",
            port=url.port or (465 if use_tls else 587),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=use_tls,
            start_tls=False if use_tls else settings.outbox.smtp_starttls,
            timeout=settings.outbox.smtp_timeout,
        )


class SMTPTransport:
    """SMTP submission; the idempotency key becomes the Message-ID so receivers can spot a resend."""

    def __init__(self, config: SMTPConfig, sender: str) -> None:
        self._config, self._sender = config, sender

    def build(self, message: OutgoingMessage) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = message.to
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(localtime=False)
        # Derived from the idempotency key alone, so a resend after a crash carries the same
        # Message-ID and receiving systems can recognise the duplicate.
        domain = re.sub(r"[^A-Za-z0-9.-]", "", self._sender.rsplit("@", 1)[-1]) or "authgate.invalid"
        local = re.sub(r"[^A-Za-z0-9._-]", ".", message.idempotency_key)
        mail["Message-ID"] = f"<{local}@{domain}>"
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    async def send(self, message: OutgoingMessage) -> str:
        mail = self.build(message)
        c = self._config
        try:
            await aiosmtplib.send(
                mail,
                hostname=c.hostname,
                port=c.port,
                username=c.username,
                password=c.password,
                use_tls=c.use_tls,
                start_tls=c.start_tls,
                timeout=c.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            if codes and all(500 <= code < 600 for code in codes):
                raise PermanentError(f"recipient refused: {codes}") from exc
            raise TransientError(f"recipient deferred: {codes}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600 and exc.code not in (530, 535):  # auth problems are ours to fix: retry
                raise PermanentError(f"SMTP {exc.code}: {exc.message}") from exc
            raise TransientError(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        return str(mail["Message-ID"])


class TwilioTransport:
    """Twilio Programmable Messaging over its REST API.

    The idempotency key goes out as `I-Twilio-Idempotency-Token`, so Twilio itself drops a
    resend of the same message within its idempotency window (a worker that died after Twilio
    accepted a message but before the row was marked sent).
    """

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        if not settings.twilio_account_sid or settings.twilio_auth_token is None or not settings.twilio_from:
            raise ValueError("Twilio needs AUTHGATE_TWILIO_ACCOUNT_SID, _AUTH_TOKEN and _FROM")
        self._sid = settings.twilio_account_sid
        self._from = settings.twilio_from
        self._url = f"{settings.twilio_base_url.rstrip('/')}/2010-04-01/Accounts/{self._sid}/Messages.json"
        self._auth = (self._sid, settings.twilio_auth_token.get_secret_value())
        self._timeout = settings.outbox.twilio_timeout
        self._client = client

    async def send(self, message: OutgoingMessage) -> str:
        data = {"To": message.to, "From": self._from, "Body": message.text}
        headers = {"I-Twilio-Idempotency-Token": message.idempotency_key}
        try:
            if self._client is not None:
                response = await self._client.post(
                    self._url, data=data, headers=headers, auth=self._auth, timeout=self._timeout
                )
            else:
                async with httpx.AsyncClient(timeout=self._timeout) as client:
                    response = await client.post(self._url, data=data, headers=headers, auth=self._auth)
        except httpx.HTTPError as exc:  # timeouts and connection failures
            raise TransientError(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            try:
                sid = response.json().get("sid")
            except ValueError:
                sid = None
            return str(sid or response.headers.get("Twilio-Request-Id") or "twilio")
        detail = f"Twilio {response.status_code}: {response.text[:300]}"
        if response.status_code == 429 or response.status_code >= 500:
            raise TransientError(detail)
        raise PermanentError(detail)


@dataclass(frozen=True, slots=True)
class Transports:
    email: Transport
    sms: Transport

    def for_channel(self, channel: str) -> Transport:
        return self.sms if channel == "sms" else self.email


def transports_from_settings(settings: Settings) -> Transports:
    """Pick each channel's transport: the configured one, else SMTP/Twilio when configured, else the log."""
    log_transport = LogTransport(include_body=settings.exposes_dev_tools)
    email_kind = settings.outbox.email_transport or ("smtp" if settings.smtp_url else "log")
    sms_kind = settings.outbox.sms_transport or ("twilio" if settings.twilio_account_sid else "log")
    email: Transport = (
        SMTPTransport(SMTPConfig.from_settings(settings), settings.email_from)
        if email_kind == "smtp"
        else log_transport
    )
    sms: Transport = TwilioTransport(settings) if sms_kind == "twilio" else log_transport
    if settings.env == "production":
        # Messages to the log are marked sent: verification, reset and invitation mail is lost.
        for channel, kind, setting in (("email", email_kind, "SMTP_URL"), ("sms", sms_kind, "TWILIO_*")):
            if kind == "log":
                log.warning("messages_not_delivered", channel=channel, hint=f"set AUTHGATE_{setting}")
    return Transports(email=email, sms=sms)
