"""Console security pages: change password, TOTP two-step verification, security events."""

from __future__ import annotations

import base64
import re
import time
import uuid

import pyotp
import pytest
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.service import Actor, AuditLog
from authgate.mfa.models import TotpCredential
from authgate.outbox.models import OutboxMessage
from authgate.users.models import User
from tests.factories import PASSWORD, bearer, login, register
from tests.ui.conftest import post_form, ui_sign_in

NEW_PASSWORD = "a brand new passphrase 42"


@pytest.mark.parametrize(
    "path", ["/ui/security/password", "/ui/security/mfa", "/ui/security/events", "/ui/security"]
)
async def test_security_pages_need_sign_in(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login")


@pytest.mark.parametrize(
    "path",
    [
        "/ui/security/password",
        "/ui/security/mfa/setup",
        "/ui/security/mfa/enable",
        "/ui/security/mfa/disable",
    ],
)
async def test_security_forms_need_sign_in(client: AsyncClient, path: str) -> None:
    await client.get("/ui/login")
    response = await post_form(client, path, {"code": "123456"})
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"


# --- password ----------------------------------------------------------------------------------


async def test_change_password_keeps_this_session_and_ends_the_others(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    email = str(ui_user["email"])
    jar = dict(client.cookies.items())
    other = await login(client, email)
    client.cookies.clear()
    client.cookies.update(jar)
    page = await client.get("/ui/security/password")
    assert page.status_code == 200 and 'aria-current="page">Password' in page.text

    response = await post_form(
        client, "/ui/security/password", {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/security/password?notice=password_changed"
    assert "Your password was changed" in (await client.get(response.headers["location"])).text
    gone = await client.get("/api/v1/users/me", headers=bearer(other["access_token"]))
    assert gone.status_code == 401
    await login(client, email, NEW_PASSWORD)


async def test_change_password_wrong_current_is_403_weak_new_is_422(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    wrong = await post_form(
        client, "/ui/security/password", {"current_password": "not it at all", "new_password": NEW_PASSWORD}
    )
    assert wrong.status_code == 403 and 'id="error-current_password"' in wrong.text
    weak = await post_form(
        client, "/ui/security/password", {"current_password": PASSWORD, "new_password": "password123"}
    )
    assert weak.status_code == 422 and 'id="error-new_password"' in weak.text
    empty = await post_form(client, "/ui/security/password", {"current_password": "", "new_password": ""})
    assert empty.status_code == 422
    forged = await client.post(
        "/ui/security/password",
        data={"current_password": PASSWORD, "new_password": NEW_PASSWORD, "csrf_token": "forged"},
    )
    assert forged.status_code == 403
    await login(client, str(ui_user["email"]))  # unchanged


# --- two-step verification ---------------------------------------------------------------------


def _secret(html: str) -> str:
    return html.split('id="totp-secret">', 1)[1].split("<", 1)[0]


async def _mfa_enabled(db: AsyncSession, email: str) -> bool:
    return bool(await db.scalar(select(User.mfa_enabled).where(User.email == email)))


async def _setup(client: AsyncClient) -> str:
    response = await post_form(client, "/ui/security/mfa/setup", {})
    assert response.status_code == 200, response.text
    return _secret(response.text)


async def test_mfa_setup_shows_the_qr_as_a_data_image_and_the_secret(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    page = await client.get("/ui/security/mfa")
    assert page.status_code == 200 and 'action="/ui/security/mfa/setup"' in page.text
    response = await post_form(client, "/ui/security/mfa/setup", {})
    assert response.status_code == 200
    html = response.text
    src = html.split('<img class="qr" src="', 1)[1].split('"', 1)[0]
    assert src.startswith("data:image/svg+xml;base64,")
    svg = base64.b64decode(src.split(",", 1)[1]).decode()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"')  # an image needs the namespace
    assert 'alt="QR code for your authenticator app' in html
    assert "<svg" not in html and "style=" not in html  # nothing inline that the CSP would block
    assert len(_secret(html)) >= 16


async def test_mfa_enable_shows_ten_recovery_codes_once(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    email = str(ui_user["email"])
    secret = await _setup(client)
    wrong = await post_form(client, "/ui/security/mfa/enable", {"code": "000000"})
    assert wrong.status_code == 400 and 'id="error-code"' in wrong.text
    assert not await _mfa_enabled(db, email)
    short = await post_form(client, "/ui/security/mfa/enable", {"code": "12"})
    assert short.status_code == 422

    response = await post_form(client, "/ui/security/mfa/enable", {"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 200
    assert response.text.count("<li><code>") == 10
    assert await _mfa_enabled(db, email)
    page = await client.get("/ui/security/mfa")
    assert "<li><code>" not in page.text and 'action="/ui/security/mfa/disable"' in page.text


async def test_mfa_setup_bad_csrf_is_403_and_stores_nothing(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    forged = await client.post("/ui/security/mfa/setup", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert await db.scalar(select(func.count()).select_from(TotpCredential)) == 0


async def test_mfa_disable_needs_password_and_code(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    email = str(ui_user["email"])
    secret = await _setup(client)
    totp = pyotp.TOTP(secret)
    step = int(time.time()) // 30
    enabled = await post_form(client, "/ui/security/mfa/enable", {"code": totp.at(step * 30)})
    assert enabled.status_code == 200
    recovery = enabled.text.split("<li><code>", 1)[1].split("<", 1)[0]

    wrong_password = await post_form(
        client, "/ui/security/mfa/disable", {"password": "not it at all", "code": recovery}
    )
    assert wrong_password.status_code == 403 and 'id="error-password"' in wrong_password.text
    wrong_code = await post_form(client, "/ui/security/mfa/disable", {"password": PASSWORD, "code": "000000"})
    assert wrong_code.status_code == 400 and 'id="error-code"' in wrong_code.text
    forged = await client.post(
        "/ui/security/mfa/disable", data={"password": PASSWORD, "code": recovery, "csrf_token": "x"}
    )
    assert forged.status_code == 403
    assert await _mfa_enabled(db, email)

    assert await _alerts(db, email) == ["mfa_enabled"]  # the failed attempts sent nothing

    done = await post_form(client, "/ui/security/mfa/disable", {"password": PASSWORD, "code": recovery})
    assert done.status_code == 303 and done.headers["location"] == "/ui/security/mfa?notice=mfa_disabled"
    assert not await _mfa_enabled(db, email)
    assert await _alerts(db, email) == ["mfa_enabled", "mfa_disabled"]


async def _alerts(db: AsyncSession, email: str) -> list[str]:
    rows = await db.scalars(
        select(OutboxMessage.template)
        .where(OutboxMessage.recipient == email, OutboxMessage.template.startswith("mfa_"))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    return list(rows.all())


# --- security events ---------------------------------------------------------------------------


async def test_security_events_show_own_events_paged(client: AsyncClient, db: AsyncSession) -> None:
    other = await register(client)
    await login(client, other["email"])
    user = await register(client)
    client.cookies.clear()
    await ui_sign_in(client, user["email"])
    user_id = uuid.UUID(user["id"])
    for _ in range(30):
        await AuditLog(db).record(
            "session.revoked", actor=Actor.user(user_id), target_type="user", target_id=user_id
        )
    await db.commit()

    first = await client.get("/ui/security/events")
    assert first.status_code == 200
    assert first.text.count("Session signed out") == 25
    assert "Signed in" not in first.text  # older than the 30 revocations
    older = first.text.split('href="/ui/security/events?cursor=', 1)[1].split('"', 1)[0]
    second = await client.get(f"/ui/security/events?cursor={older}")
    assert second.status_code == 200
    assert second.text.count("Session signed out") == 5
    assert second.text.count("Signed in") == 1  # this user's one sign-in, not the other user's
    assert "Older events" not in second.text


async def test_security_events_bad_cursor_is_422(client: AsyncClient, ui_user: dict[str, object]) -> None:
    response = await client.get("/ui/security/events", params={"cursor": "!!not a cursor!!"})
    assert response.status_code == 422 and 'role="alert"' in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/ui/security/password",
        "/ui/security/mfa",
        "/ui/security/events",
        "/ui/account/profile",
        "/ui/account/settings",
        "/ui/api-keys",
        "/ui/password/forgot",
        "/ui/verify-email?token=abc",
        "/ui/password/reset?token=abc",
    ],
)
async def test_new_pages_fit_the_console_csp_and_navigation(
    client: AsyncClient, ui_user: dict[str, object], path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    html = response.text
    assert "<script" not in html and "style=" not in html and " on" + "submit" not in html
    assert response.headers["cache-control"] == "no-store"
    assert 'href="/ui/api-keys"' in html  # the main navigation (signed in)
    for field_id in re.findall(r'<(?:input|select|textarea) class="input" id="([^"]+)"', html):
        assert f'for="{field_id}"' in html  # every field has a label
