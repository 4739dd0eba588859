"""Security notifications to the account owner, sent through the outbox in the caller's transaction.

Other features call these (e.g. `notify_mfa_changed` from the MFA endpoints). Alerts about changes
that could lock the owner out (password, email, phone, MFA) are always sent; the new-device alert
respects the owner's `security_alerts` setting through `wants_security_alerts`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.config import Settings
from authgate.db import utcnow
from authgate.logging import get_request_context
from authgate.outbox.service import Outbox
from authgate.profiles.models import UserProfile, UserSettings
from authgate.users.models import User
from authgate.verification.models import KnownDevice

SESSIONS_PATH = "/ui/security"


def public_link(settings: Settings, path: str) -> str:
    return settings.public_url.rstrip("/") + path


async def user_locale(session: AsyncSession, user: User) -> str | None:
    """The user's preferred locale for messages: the profile's `locale`, when set."""
    return await locale_of(session, user.id)


async def locale_of(session: AsyncSession, user_id: uuid.UUID) -> str | None:
    """`user_locale` by id: an id no account has costs the same lookup and finds nothing."""
    return await session.scalar(select(UserProfile.locale).where(UserProfile.user_id == user_id))


async def wants_security_alerts(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the user wants optional security alerts (new-device sign-ins): their `security_alerts`
    setting (`/users/me/settings`, the console's settings page); on when there is no settings row."""
    wanted = await session.scalar(select(UserSettings.security_alerts).where(UserSettings.user_id == user_id))
    return wanted is not False


def network_of(ip: str | None) -> str | None:
    """The client's network: the IPv4 /24 or IPv6 /64 around its address."""
    if not ip:
        return None
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


class SecurityNotifier:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self._session, self._settings = session, settings

    async def _send(self, user: User, template: str, **context: Any) -> None:
        context.setdefault("when", utcnow().strftime("%Y-%m-%d %H:%M UTC"))
        context.setdefault("sessions_link", public_link(self._settings, SESSIONS_PATH))
        await Outbox(self._session).enqueue(
            channel="email",
            template=template,
            to=user.email,
            context=context,
            locale=await user_locale(self._session, user),
        )

    async def password_changed(self, user: User) -> None:
        await self._send(user, "password_changed")

    async def password_reset(self, user: User) -> None:
        await self._send(user, "password_reset_done")

    async def email_changed(self, user: User, old_email: str) -> None:
        """Tell the previous address (the one an attacker would not control) that the email changed."""
        await Outbox(self._session).enqueue(
            channel="email",
            template="email_changed",
            to=old_email,
            locale=await user_locale(self._session, user),
            context={
                "old_email": old_email,
                "new_email": user.email,
                "when": utcnow().strftime("%Y-%m-%d %H:%M UTC"),
                "sessions_link": public_link(self._settings, SESSIONS_PATH),
            },
        )

    async def phone_changed(self, user: User) -> None:
        await self._send(user, "phone_changed", phone=user.phone)

    async def mfa_changed(self, user: User, *, enabled: bool) -> None:
        await self._send(user, "mfa_enabled" if enabled else "mfa_disabled")

    async def sign_in(self, user: User) -> None:
        """Remember the device (user agent + IP network) and alert the owner when it is new.

        The first device a user ever signs in from is only remembered: an alert right after
        registration would be noise.
        """
        ctx = get_request_context()
        network = network_of(ctx.ip)
        agent = (ctx.user_agent or "")[:512] or None
        fingerprint = hashlib.sha256(f"{agent or ''}\n{network or ''}".encode()).hexdigest()
        now = utcnow()
        values = {
            "user_id": user.id,
            "fingerprint": fingerprint,
            "user_agent": agent,
            "network": network,
            "first_seen_at": now,
            "last_seen_at": now,
        }
        # The usual case, a device seen before, is one statement.
        seen = await self._session.execute(
            update(KnownDevice)
            .where(KnownDevice.user_id == user.id, KnownDevice.fingerprint == fingerprint)
            .values(last_seen_at=now)
            .execution_options(synchronize_session=False)
        )
        if seen.rowcount == 1:  # type: ignore[attr-defined]
            return
        has_devices = await self._session.scalar(
            select(KnownDevice.id).where(KnownDevice.user_id == user.id).limit(1)
        )
        insert = pg_insert if self._session.get_bind().dialect.name == "postgresql" else sqlite_insert
        # ON CONFLICT: two sign-ins from the same new device at once must not fail; only one alerts.
        result = await self._session.execute(
            insert(KnownDevice)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["user_id", "fingerprint"])
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return  # a parallel sign-in from the same device remembered it first
        if (
            has_devices is not None
            and self._settings.verification.new_device_alerts
            and await wants_security_alerts(self._session, user.id)
        ):
            await self._send(user, "new_device", user_agent=agent, network=network)


async def notify_mfa_changed(session: AsyncSession, settings: Settings, user: User, *, enabled: bool) -> None:
    """For the MFA endpoints: email the owner that two-factor authentication was turned on or off."""
    await SecurityNotifier(session, settings).mfa_changed(user, enabled=enabled)
