"""Email verification and registration mail over HTTP, delivered through a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.db import utcnow
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.models import OutboxMessage
from authgate.security.opaque import hash_token
from authgate.users.models import User
from authgate.verification.models import VerificationToken
from tests.courier import Mailbox, body_html, link_token, mail_to
from tests.factories import PASSWORD, assert_problem, register, signed_in, unique_email

CONFIRM = "/api/v1/auth/verify-email/confirm"


async def test_register_sends_a_link_that_verifies_the_email_once(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user = await register(client, full_name="Ada Lovelace")
    mail = await mail_to(courier, mailbox, user["email"], "confirm your email")
    assert "Ada Lovelace" in body_html(mail)
    token = link_token(mail, "/ui/verify-email")

    response = await client.post(CONFIRM, json={"token": token})
    assert response.status_code == 200, response.text
    assert response.json()["email_verified"] is True
    assert response.json()["id"] == user["id"]
    events = (await db.scalars(select(AuditEvent).where(AuditEvent.action == "email.verified"))).all()
    assert [e.target_id for e in events] == [user["id"]]

    again = await client.post(CONFIRM, json={"token": token})
    assert_problem(again, 400, "token_invalid")


async def test_token_is_stored_only_as_a_hash(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user = await register(client)
    token = link_token(await mail_to(courier, mailbox, user["email"], "confirm"), "/ui/verify-email")
    hashes = (await db.scalars(select(VerificationToken.token_hash))).all()
    assert token not in hashes
    assert all(len(h) == 64 for h in hashes)
    row = await db.scalar(select(VerificationToken).where(VerificationToken.token_hash == hash_token(token)))
    assert row is not None and row.purpose == "email_verification"
    # SPEC §5; the two stamps are taken a moment apart
    assert abs(row.expires_at - row.created_at - timedelta(hours=24)) < timedelta(seconds=1)


async def test_request_sends_a_new_link_and_nothing_once_verified(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox
) -> None:
    user, headers = await signed_in(client)
    await courier.drain()
    mailbox.clear()
    response = await client.post("/api/v1/auth/verify-email/request", headers=headers)
    assert response.status_code == 202
    token = link_token(await mail_to(courier, mailbox, user["email"], "confirm"), "/ui/verify-email")
    assert (await client.post(CONFIRM, json={"token": token})).status_code == 200

    mailbox.clear()
    assert (await client.post("/api/v1/auth/verify-email/request", headers=headers)).status_code == 202
    await courier.drain()
    assert mailbox.to(user["email"]) == []


async def test_request_needs_authentication(client: AsyncClient) -> None:
    assert_problem(await client.post("/api/v1/auth/verify-email/request"), 401, "not_authenticated")


async def test_expired_token_is_invalid(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user = await register(client)
    token = link_token(await mail_to(courier, mailbox, user["email"], "confirm"), "/ui/verify-email")
    await db.execute(update(VerificationToken).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert_problem(await client.post(CONFIRM, json={"token": token}), 400, "token_invalid")
    verified = await db.scalar(select(User.email_verified).where(User.email == user["email"]))
    assert verified is False


async def test_wrong_token_and_bad_bodies(client: AsyncClient, db: AsyncSession) -> None:
    await register(client)
    assert_problem(await client.post(CONFIRM, json={"token": "nope"}), 400, "token_invalid")
    assert_problem(await client.post(CONFIRM, json={}), 422, "validation_error")
    assert_problem(await client.post(CONFIRM, json={"token": "x" * 257}), 422, "validation_error")
    assert_problem(await client.post(CONFIRM, json={"token": "a", "extra": 1}), 422, "validation_error")
    assert await db.scalar(select(func.count()).select_from(User).where(User.email_verified.is_(True))) == 0


async def test_login_blocked_until_verified_when_required(
    app: FastAPI, client: AsyncClient, courier: Dispatcher, mailbox: Mailbox
) -> None:
    app.state.settings.features.require_verified_email = True
    try:
        user = await register(client)
        wrong = await client.post(
            "/api/v1/auth/login", json={"email": user["email"], "password": "wrong password"}
        )
        assert_problem(wrong, 401, "invalid_credentials")
        blocked = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
        assert_problem(blocked, 403, "email_not_verified")
        assert "access_token" not in blocked.text

        token = link_token(await mail_to(courier, mailbox, user["email"], "confirm"), "/ui/verify-email")
        assert (await client.post(CONFIRM, json={"token": token})).status_code == 200
        ok = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
        assert ok.status_code == 200
    finally:
        app.state.settings.features.require_verified_email = False


async def test_enumeration_safe_registration_answers_alike_and_emails_the_owner(
    app: FastAPI, client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    existing = await register(client)
    await courier.drain()
    mailbox.clear()
    app.state.settings.features.enumeration_safe_registration = True
    try:
        fresh_email = unique_email()
        new = await client.post("/api/v1/auth/register", json={"email": fresh_email, "password": PASSWORD})
        taken = await client.post(
            "/api/v1/auth/register", json={"email": existing["email"].upper(), "password": PASSWORD}
        )
    finally:
        app.state.settings.features.enumeration_safe_registration = False
    assert new.status_code == taken.status_code == 202
    assert new.json() == taken.json()
    owner_mail = await mail_to(courier, mailbox, existing["email"], "tried to register")
    assert "http://test/ui/password/forgot" in owner_mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert link_token(await mail_to(courier, mailbox, fresh_email, "confirm"), "/ui/verify-email")
    count = await db.scalar(
        select(func.count()).select_from(User).where(User.email_normalized == existing["email"])
    )
    assert count == 1


async def test_enumeration_safe_registration_hides_a_taken_username_too(
    app: FastAPI, client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    """The answer is the same 202; only the mailbox of the address given learns the name is taken."""
    name = f"taken{unique_email()[:8]}".replace("-", "").replace("@", "")
    await register(client, username=name)
    await courier.drain()
    mailbox.clear()
    users_before = await db.scalar(select(func.count()).select_from(User))
    app.state.settings.features.enumeration_safe_registration = True
    try:
        fresh_email = unique_email()
        body = {"email": fresh_email, "password": PASSWORD, "username": name.upper()}
        taken = await client.post("/api/v1/auth/register", json=body)
        new = await client.post(
            "/api/v1/auth/register",
            json={"email": unique_email(), "password": PASSWORD, "username": f"{name}x"},
        )
    finally:
        app.state.settings.features.enumeration_safe_registration = False
    assert taken.status_code == new.status_code == 202
    assert taken.json() == new.json()
    told = await mail_to(courier, mailbox, fresh_email, "username is taken")
    text = told.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert name in text and "http://test/ui/register" in text
    db.expire_all()
    assert await db.scalar(select(func.count()).select_from(User)) == users_before + 1  # only `new`
    assert (
        await db.scalar(select(func.count()).select_from(User).where(User.email_normalized == fresh_email))
        == 0
    )


async def test_messages_are_written_in_the_request_transaction(client: AsyncClient, db: AsyncSession) -> None:
    bad = await client.post("/api/v1/auth/register", json={"email": unique_email(), "password": "password"})
    assert bad.status_code == 422
    assert await db.scalar(select(func.count()).select_from(OutboxMessage)) == 0
