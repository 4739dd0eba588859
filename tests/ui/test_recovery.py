"""Console pages that emails link to: verify email, forgotten and reset passwords; registration mail."""

from __future__ import annotations

import re

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.outbox.models import OutboxMessage
from authgate.users.models import User
from authgate.verification.models import VerificationToken
from tests.factories import PASSWORD, login, register, unique_email
from tests.ui.conftest import post_form, ui_sign_in

NEW_PASSWORD = "a brand new passphrase 42"


async def inbox_link(client: AsyncClient, to: str, path: str) -> str:
    """The token of the newest link to `path` in a message to `to`, as the dev inbox renders it."""
    items = (await client.get("/dev/inbox.json", params={"limit": 200})).json()["items"]
    for item in items:
        match = re.search(rf"http://test{re.escape(path)}\?token=([A-Za-z0-9_-]+)", item["text"] or "")
        if item["to"] == to and match:
            return match.group(1)
    raise AssertionError(f"no {path} link to {to}")


async def messages(db: AsyncSession, to: str, template: str) -> int:
    count = await db.scalar(
        select(func.count()).where(OutboxMessage.recipient == to, OutboxMessage.template == template)
    )
    return int(count or 0)


async def is_verified(db: AsyncSession, email: str) -> bool:
    return bool(await db.scalar(select(User.email_verified).where(User.email == email)))


# --- registration and email verification -------------------------------------------------------


async def test_console_registration_emails_a_link_that_verifies_once(
    client: AsyncClient, db: AsyncSession
) -> None:
    email = unique_email("verify")
    await client.get("/ui/register")
    response = await post_form(client, "/ui/register", {"email": email, "password": PASSWORD})
    assert response.status_code == 303
    token = await inbox_link(client, email, "/ui/verify-email")

    page = await client.get("/ui/verify-email", params={"token": token})
    assert page.status_code == 200
    assert 'action="/ui/verify-email"' in page.text and f'value="{token}"' in page.text
    assert not await is_verified(db, email)  # opening the link spends nothing

    done = await post_form(client, "/ui/verify-email", {"token": token})
    assert done.status_code == 200
    assert "Email address confirmed" in done.text and email in done.text
    assert await is_verified(db, email)
    assert await db.scalar(select(func.count()).where(AuditEvent.action == "email.verified")) == 1

    again = await post_form(client, "/ui/verify-email", {"token": token})
    assert again.status_code == 400
    assert "This link does not work" in again.text and 'role="alert"' in again.text


async def test_verify_email_bad_links_are_400_and_bad_csrf_is_403(
    client: AsyncClient, db: AsyncSession
) -> None:
    user = await register(client)
    token = await inbox_link(client, user["email"], "/ui/verify-email")
    client.cookies.clear()
    assert (await client.get("/ui/verify-email")).status_code == 400
    assert (await client.get("/ui/verify-email", params={"token": "x" * 300})).status_code == 400
    assert (await post_form(client, "/ui/verify-email", {"token": "wrong"})).status_code == 400
    forged = await client.post("/ui/verify-email", data={"token": token, "csrf_token": "forged"})
    assert forged.status_code == 403
    assert not await is_verified(db, user["email"])


async def test_enumeration_safe_console_registration_answers_alike(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    taken = await register(client)
    app.state.settings.features.enumeration_safe_registration = True
    client.cookies.clear()
    await client.get("/ui/register")
    answers = []
    for email in (unique_email("fresh"), str(taken["email"])):
        response = await post_form(client, "/ui/register", {"email": email, "password": PASSWORD})
        answers.append((response.status_code, response.headers["location"]))
    assert answers == [(303, "/ui/login?notice=check_email")] * 2
    notice = await client.get("/ui/login?notice=check_email")
    assert "Check your email" in notice.text
    assert await messages(db, str(taken["email"]), "account_exists") == 1
    count = await db.scalar(select(func.count()).where(User.email == taken["email"]))
    assert count == 1


async def test_register_form_posted_while_signed_in_creates_nothing(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    email = unique_email("second")
    response = await post_form(client, "/ui/register", {"email": email, "password": PASSWORD})
    assert response.status_code == 303 and response.headers["location"] == "/ui/"
    assert await db.scalar(select(func.count()).where(User.email == email)) == 0


async def test_resend_verification_from_the_account_page(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    email = str(ui_user["email"])
    page = await client.get("/ui/account")
    assert 'action="/ui/account/verify-email"' in page.text
    before = await messages(db, email, "email_verification")

    forged = await client.post("/ui/account/verify-email", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert await messages(db, email, "email_verification") == before

    response = await post_form(client, "/ui/account/verify-email", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/account?notice=verification_sent"
    assert await messages(db, email, "email_verification") == before + 1

    client.cookies.clear()
    await client.get("/ui/login")
    anonymous = await post_form(client, "/ui/account/verify-email", {})
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/ui/login"


async def test_verified_account_has_no_resend_button(client: AsyncClient, ui_user: dict[str, object]) -> None:
    token = await inbox_link(client, str(ui_user["email"]), "/ui/verify-email")
    assert (await post_form(client, "/ui/verify-email", {"token": token})).status_code == 200
    page = await client.get("/ui/account")
    assert 'action="/ui/account/verify-email"' not in page.text


# --- forgotten password ------------------------------------------------------------------------


async def test_forgot_page_prefills_the_invited_address(client: AsyncClient) -> None:
    page = await client.get("/ui/password/forgot", params={"email": "new@example.com"})
    assert page.status_code == 200
    assert 'value="new@example.com"' in page.text
    login_page = await client.get("/ui/login")
    assert 'href="/ui/password/forgot"' in login_page.text


async def test_forgot_answers_the_same_for_unknown_addresses(client: AsyncClient, db: AsyncSession) -> None:
    user = await register(client)
    client.cookies.clear()
    await client.get("/ui/password/forgot")
    known = await post_form(client, "/ui/password/forgot", {"email": user["email"]})
    unknown = await post_form(client, "/ui/password/forgot", {"email": unique_email("ghost")})
    assert known.status_code == unknown.status_code == 200
    assert known.text == unknown.text
    assert "a link to choose a new password is on its way" in known.text
    assert await messages(db, user["email"], "password_reset") == 1
    await inbox_link(client, user["email"], "/ui/password/reset")


async def test_forgot_bad_email_is_422_and_bad_csrf_is_403(client: AsyncClient, db: AsyncSession) -> None:
    user = await register(client)
    client.cookies.clear()
    await client.get("/ui/password/forgot")
    bad = await post_form(client, "/ui/password/forgot", {"email": "not an email"})
    assert bad.status_code == 422 and 'id="error-email"' in bad.text
    forged = await client.post("/ui/password/forgot", data={"email": user["email"], "csrf_token": "x"})
    assert forged.status_code == 403
    assert await db.scalar(select(func.count()).select_from(VerificationToken)) == 1  # the verification one


# --- reset password ----------------------------------------------------------------------------


async def _reset_token(client: AsyncClient, email: str) -> str:
    await client.get("/ui/password/forgot")
    assert (await post_form(client, "/ui/password/forgot", {"email": email})).status_code == 200
    return await inbox_link(client, email, "/ui/password/reset")


async def test_reset_sets_the_password_signs_out_and_works_once(client: AsyncClient) -> None:
    user = await register(client)
    client.cookies.clear()
    await ui_sign_in(client, user["email"])
    token = await _reset_token(client, user["email"])

    page = await client.get("/ui/password/reset", params={"token": token})
    assert page.status_code == 200 and 'autocomplete="new-password"' in page.text

    response = await post_form(client, "/ui/password/reset", {"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?notice=password_reset"
    assert "authgate_access" not in client.cookies
    assert (await client.get("/ui/account")).status_code == 303  # every session, this one too
    await login(client, user["email"], NEW_PASSWORD)

    await client.get("/ui/password/forgot")
    again = await post_form(
        client, "/ui/password/reset", {"token": token, "new_password": "another fine phrase 7"}
    )
    assert again.status_code == 400 and "This link is invalid" in again.text
    await login(client, user["email"], NEW_PASSWORD)


async def test_reset_with_a_weak_password_is_422_and_keeps_the_token(client: AsyncClient) -> None:
    user = await register(client)
    client.cookies.clear()
    token = await _reset_token(client, user["email"])
    short = await post_form(client, "/ui/password/reset", {"token": token, "new_password": "short"})
    assert short.status_code == 422 and 'id="error-new_password"' in short.text
    weak = await post_form(client, "/ui/password/reset", {"token": token, "new_password": "password123"})
    assert weak.status_code == 422 and 'id="error-new_password"' in weak.text
    assert f'value="{token}"' in weak.text
    await login(client, user["email"])  # unchanged
    ok = await post_form(client, "/ui/password/reset", {"token": token, "new_password": NEW_PASSWORD})
    assert ok.status_code == 303


async def test_reset_bad_csrf_is_403_and_changes_nothing(client: AsyncClient) -> None:
    user = await register(client)
    client.cookies.clear()
    token = await _reset_token(client, user["email"])
    forged = await client.post(
        "/ui/password/reset", data={"token": token, "new_password": NEW_PASSWORD, "csrf_token": "x"}
    )
    assert forged.status_code == 403
    await login(client, user["email"])


async def test_reset_page_without_a_token_is_400(client: AsyncClient) -> None:
    response = await client.get("/ui/password/reset")
    assert response.status_code == 400
    assert 'href="/ui/password/forgot"' in response.text


async def test_old_link_paths_redirect(client: AsyncClient) -> None:
    old = await client.get("/ui/reset-password", params={"token": "abc_D-1"})
    assert old.status_code == 303 and old.headers["location"] == "/ui/password/reset?token=abc_D-1"
    forgot = await client.get("/ui/forgot-password")
    assert forgot.status_code == 303 and forgot.headers["location"] == "/ui/password/forgot"


async def test_security_alert_link_opens_the_security_section(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    response = await client.get("/ui/security")
    assert response.status_code == 303 and response.headers["location"] == "/ui/security/sessions"
