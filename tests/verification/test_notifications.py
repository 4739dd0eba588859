"""Security notifications: new devices on sign-in, and the MFA helper for other features."""

from __future__ import annotations

import uuid

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.config import Settings
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.models import OutboxMessage
from authgate.users.models import User
from authgate.verification.models import KnownDevice
from authgate.verification.notifications import network_of, notify_mfa_changed
from tests.courier import Mailbox, body_text, mail_to
from tests.factories import PASSWORD, register

LOGIN = "/api/v1/auth/login"


async def _login(client: AsyncClient, email: str, agent: str) -> None:
    response = await client.post(
        LOGIN, json={"email": email, "password": PASSWORD}, headers={"User-Agent": agent}
    )
    assert response.status_code == 200, response.text


async def _templates_to(db: AsyncSession, email: str) -> list[str]:
    stmt = select(OutboxMessage.template).where(OutboxMessage.recipient == email).order_by(OutboxMessage.id)
    return list((await db.scalars(stmt)).all())


async def test_sign_in_from_a_new_device_alerts_the_owner_once(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user = await register(client)
    await _login(client, user["email"], "Firefox/1")  # the first device is only remembered
    await _login(client, user["email"], "Firefox/1")
    assert "new_device" not in await _templates_to(db, user["email"])

    await _login(client, user["email"], "Safari/2")
    mail = await mail_to(courier, mailbox, user["email"], "new sign-in")
    assert "Safari/2" in body_text(mail)
    assert "203.0.113.0/24" in body_text(mail)
    assert "http://test/ui/security" in body_text(mail)
    await _login(client, user["email"], "Safari/2")
    assert (await _templates_to(db, user["email"])).count("new_device") == 1
    devices = (
        await db.scalars(select(KnownDevice.user_agent).where(KnownDevice.user_id == uuid.UUID(user["id"])))
    ).all()
    assert sorted(d or "" for d in devices) == ["Firefox/1", "Safari/2"]


async def test_no_new_device_alert_when_security_alerts_are_off(
    client: AsyncClient, db: AsyncSession
) -> None:
    user = await register(client)
    first = await client.post(
        LOGIN, json={"email": user["email"], "password": PASSWORD}, headers={"User-Agent": "Firefox/1"}
    )
    client.cookies.clear()
    response = await client.patch(
        "/api/v1/users/me/settings",
        json={"security_alerts": False},
        headers={"Authorization": f"Bearer {first.json()['access_token']}", "User-Agent": "Firefox/1"},
    )
    assert response.status_code == 200
    await _login(client, user["email"], "Safari/2")
    assert "new_device" not in await _templates_to(db, user["email"])
    devices = await db.scalars(select(KnownDevice.id).where(KnownDevice.user_id == uuid.UUID(user["id"])))
    assert len(devices.all()) == 2  # still remembered, just not reported


async def test_failed_sign_in_remembers_no_device(client: AsyncClient, db: AsyncSession) -> None:
    user = await register(client)
    response = await client.post(LOGIN, json={"email": user["email"], "password": "wrong password"})
    assert response.status_code == 401
    assert (
        await db.scalars(select(KnownDevice).where(KnownDevice.user_id == uuid.UUID(user["id"])))
    ).all() == []


def test_network_is_the_slash_24_or_slash_64() -> None:
    assert network_of("198.51.100.77") == "198.51.100.0/24"
    assert network_of("2001:db8:1:2:3::9") == "2001:db8:1:2::/64"
    assert network_of(None) is None
    assert network_of("garbage") is None


async def test_mfa_helper_enqueues_an_alert(
    client: AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    courier: Dispatcher,
    mailbox: Mailbox,
) -> None:
    user = await register(client)
    async with sessionmaker() as session, session.begin():
        row = await session.scalar(select(User).where(User.email == user["email"]))
        assert row is not None
        await notify_mfa_changed(session, settings, row, enabled=True)
        await notify_mfa_changed(session, settings, row, enabled=False)
    assert await mail_to(courier, mailbox, user["email"], "turned on")
    assert await mail_to(courier, mailbox, user["email"], "turned off")


async def test_security_alerts_setting_silences_new_device_alerts(
    client: AsyncClient, db: AsyncSession
) -> None:
    user = await register(client)
    tokens = await client.post(
        LOGIN, json={"email": user["email"], "password": PASSWORD}, headers={"User-Agent": "Firefox/1"}
    )
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    client.cookies.clear()
    off = await client.patch("/api/v1/users/me/settings", headers=headers, json={"security_alerts": False})
    assert off.status_code == 200 and off.json()["security_alerts"] is False
    await _login(client, user["email"], "Opera/3")
    assert "new_device" not in await _templates_to(db, user["email"])


async def test_messages_use_the_profile_locale(client: AsyncClient, db: AsyncSession) -> None:
    user = await register(client)
    tokens = await client.post(LOGIN, json={"email": user["email"], "password": PASSWORD})
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    client.cookies.clear()
    assert (
        await client.patch("/api/v1/users/me/profile", headers=headers, json={"locale": "pt-BR"})
    ).status_code == 200
    assert (await client.post("/api/v1/auth/verify-email/request", headers=headers)).status_code == 202
    locale = await db.scalar(
        select(OutboxMessage.locale)
        .where(OutboxMessage.recipient == user["email"], OutboxMessage.template == "email_verification")
        .order_by(OutboxMessage.id.desc())
        .limit(1)
    )
    assert locale == "pt-BR"


async def test_turning_mfa_on_and_off_notifies_the_owner(client: AsyncClient, db: AsyncSession) -> None:
    import pyotp

    user = await register(client)
    tokens = await client.post(LOGIN, json={"email": user["email"], "password": PASSWORD})
    headers = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    client.cookies.clear()
    secret = (await client.post("/api/v1/auth/mfa/totp/setup", headers=headers)).json()["secret"]
    totp = pyotp.TOTP(secret)
    enabled = await client.post("/api/v1/auth/mfa/totp/enable", headers=headers, json={"code": totp.now()})
    assert enabled.status_code == 200
    assert "mfa_enabled" in await _templates_to(db, user["email"])
    recovery = enabled.json()["recovery_codes"][0]
    disabled = await client.post(
        "/api/v1/auth/mfa/totp/disable", headers=headers, json={"password": PASSWORD, "code": recovery}
    )
    assert disabled.status_code == 204
    assert "mfa_disabled" in await _templates_to(db, user["email"])
