"""Forgotten, reset and changed passwords over HTTP, with the reset link read from real SMTP."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authgate.audit.models import AuditEvent
from authgate.auth.dependencies import Principal, get_principal
from authgate.auth.service import Account
from authgate.db import utcnow
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.models import OutboxMessage
from authgate.security.opaque import hash_token
from authgate.users.models import User
from authgate.verification.models import VerificationToken
from tests.courier import Mailbox, body_text, link_token, mail_to
from tests.factories import PASSWORD, assert_problem, bearer, login, register, signed_in, unique_email

FORGOT = "/api/v1/auth/password/forgot"
RESET = "/api/v1/auth/password/reset"
CHANGE = "/api/v1/auth/password/change"
NEW_PASSWORD = "a brand new passphrase 42"


async def _reset_token(client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, email: str) -> str:
    response = await client.post(FORGOT, json={"email": email})
    assert response.status_code == 202
    return link_token(await mail_to(courier, mailbox, email, "reset your password"), "/ui/password/reset")


async def _actions(db: AsyncSession, action: str) -> list[str | None]:
    return list((await db.scalars(select(AuditEvent.target_id).where(AuditEvent.action == action))).all())


async def test_forgot_answers_the_same_for_unknown_emails_and_sends_nothing(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox
) -> None:
    user = await register(client)
    await courier.drain()
    mailbox.clear()
    known = await client.post(FORGOT, json={"email": user["email"]})
    unknown = await client.post(FORGOT, json={"email": unique_email("ghost")})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()
    await courier.drain()
    assert [m["To"] for m in mailbox.messages] == [user["email"]]


async def test_unknown_addresses_are_told_only_when_enabled(
    app: FastAPI, client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    ghost = unique_email("ghost")
    assert (await client.post(FORGOT, json={"email": ghost})).status_code == 202
    await courier.drain()
    assert mailbox.to(ghost) == []
    assert (
        await db.scalar(select(OutboxMessage.status).where(OutboxMessage.recipient == ghost)) == "suppressed"
    )

    app.state.settings.verification.notify_unknown_recipients = True
    assert (await client.post(FORGOT, json={"email": ghost})).status_code == 202
    mail = await mail_to(courier, mailbox, ghost, "without an account")
    assert "http://test/ui/register" in body_text(mail)


async def test_reset_sets_the_password_revokes_every_session_and_works_once(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    token = await _reset_token(client, courier, mailbox, user["email"])
    mailbox.clear()

    response = await client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
    assert response.status_code == 204, response.text
    assert_problem(await client.get("/api/v1/auth/me", headers=headers), 401, "session_revoked")
    await login(client, user["email"], NEW_PASSWORD)
    old = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(old, 401, "invalid_credentials")
    assert await _actions(db, "password.reset") == [user["id"]]
    assert await mail_to(courier, mailbox, user["email"], "password was reset")

    again = await client.post(RESET, json={"token": token, "new_password": "yet another passphrase 7"})
    assert_problem(again, 400, "token_invalid")


async def test_a_reset_link_to_an_address_changed_while_it_hashes_is_refused(
    app: FastAPI,
    client: AsyncClient,
    courier: Dispatcher,
    mailbox: Mailbox,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The link is bound to the address: checked before the hash and again, under the row lock, after."""
    user = await register(client)
    token = await _reset_token(client, courier, mailbox, user["email"])
    passwords = app.state.passwords
    hash_new = passwords.hash_new

    async def while_an_admin_changes_the_address(*args: object, **kwargs: object) -> str:
        passwords.hash_new = hash_new
        async with sessionmaker() as s, s.begin():
            moved = unique_email("moved")
            await s.execute(
                update(User)
                .where(User.id == uuid.UUID(user["id"]))
                .values(email=moved, email_normalized=moved)
            )
        return await hash_new(*args, **kwargs)  # type: ignore[arg-type]

    passwords.hash_new = while_an_admin_changes_the_address
    response = await client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})
    assert_problem(response, 400, "token_invalid")
    db.expire_all()
    stored = await db.scalar(select(User.password_hash).where(User.id == uuid.UUID(user["id"])))
    assert (await passwords.verify(PASSWORD, stored))[0]  # the old password still holds
    assert await _actions(db, "password.reset") == []


async def test_a_rejected_new_password_does_not_use_up_the_token(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox
) -> None:
    user = await register(client)
    token = await _reset_token(client, courier, mailbox, user["email"])
    weak = await client.post(RESET, json={"token": token, "new_password": "password"})
    assert assert_problem(weak, 422, "validation_error")["errors"][0]["loc"] == ["body", "new_password"]
    short = await client.post(RESET, json={"token": token, "new_password": "short"})
    assert_problem(short, 422, "validation_error")
    await login(client, user["email"], PASSWORD)  # unchanged
    assert (await client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD})).status_code == 204


async def test_expired_and_wrong_reset_tokens_are_invalid(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user = await register(client)
    token = await _reset_token(client, courier, mailbox, user["email"])
    assert_problem(
        await client.post(RESET, json={"token": "wrong", "new_password": NEW_PASSWORD}), 400, "token_invalid"
    )
    await db.execute(
        update(VerificationToken)
        .where(VerificationToken.purpose == "password_reset")
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    assert_problem(
        await client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD}), 400, "token_invalid"
    )
    await login(client, user["email"], PASSWORD)


async def test_an_email_verification_token_is_not_a_reset_token(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox
) -> None:
    user = await register(client)
    token = link_token(await mail_to(courier, mailbox, user["email"], "confirm"), "/ui/verify-email")
    assert_problem(
        await client.post(RESET, json={"token": token, "new_password": NEW_PASSWORD}), 400, "token_invalid"
    )
    await login(client, user["email"], PASSWORD)  # the password stayed
    # Refused as a reset token, it is still good for what it was sent for.
    confirmed = await client.post("/api/v1/auth/verify-email/confirm", json={"token": token})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["email_verified"] is True


async def test_a_reset_token_lives_one_hour(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user = await register(client)
    token = await _reset_token(client, courier, mailbox, user["email"])
    row = await db.scalar(select(VerificationToken).where(VerificationToken.token_hash == hash_token(token)))
    assert row is not None and row.purpose == "password_reset" and str(row.user_id) == user["id"]
    # SPEC §5; the two stamps are taken a moment apart
    assert abs(row.expires_at - row.created_at - timedelta(hours=1)) < timedelta(seconds=1)


async def test_change_keeps_this_session_revokes_the_others_and_notifies(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    other = bearer((await login(client, user["email"]))["access_token"])
    await courier.drain()
    mailbox.clear()

    response = await client.post(
        CHANGE, headers=headers, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert response.status_code == 204, response.text
    assert (await client.get("/api/v1/auth/me", headers=headers)).status_code == 200
    assert_problem(await client.get("/api/v1/auth/me", headers=other), 401, "session_revoked")
    await login(client, user["email"], NEW_PASSWORD)
    assert await _actions(db, "password.changed") == [user["id"]]
    assert await mail_to(courier, mailbox, user["email"], "password was changed")


async def test_change_with_a_wrong_current_password_is_403_and_changes_nothing(
    client: AsyncClient, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    before = await db.scalar(select(User.password_hash).where(User.email == user["email"]))
    wrong = await client.post(
        CHANGE, headers=headers, json={"current_password": "not my password", "new_password": NEW_PASSWORD}
    )
    assert_problem(wrong, 403, "invalid_credentials")
    weak = await client.post(
        CHANGE, headers=headers, json={"current_password": PASSWORD, "new_password": "password"}
    )
    assert assert_problem(weak, 422, "validation_error")["errors"][0]["loc"] == ["body", "new_password"]
    missing = await client.post(CHANGE, headers=headers, json={"new_password": NEW_PASSWORD})
    assert_problem(missing, 422, "validation_error")
    assert_problem(
        await client.post(CHANGE, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        401,
        "not_authenticated",
    )
    assert await db.scalar(select(User.password_hash).where(User.email == user["email"])) == before
    assert await _actions(db, "password.changed") == []


async def test_api_keys_cannot_change_passwords(app: FastAPI, client: AsyncClient) -> None:
    principal = Principal(
        account=Account.of(User(email="k@example.com")),
        session_id=None,
        permissions=frozenset(),
        api_key_id=uuid.uuid4(),
    )

    async def as_api_key() -> Principal:
        return principal

    app.dependency_overrides[get_principal] = as_api_key
    try:
        response = await client.post(
            CHANGE, json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
        )
    finally:
        app.dependency_overrides.pop(get_principal)
    assert_problem(response, 403, "permission_denied")


async def test_a_reset_beside_a_password_change_or_another_reset_never_deadlocks(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    """Reset and change both lock the account's row before the reset tokens (PostgreSQL would
    otherwise detect a deadlock and one request would end in a 500)."""
    import asyncio

    for round_ in range(4):
        email = unique_email(f"reset-race{round_}")
        _, headers = await signed_in(live_client, email=email)
        live_client.cookies.clear()
        tokens = []
        for _ in range(2):
            assert (await live_client.post(FORGOT, json={"email": email})).status_code == 202
        async with live_engine.connect() as conn:
            links = await conn.scalars(
                select(OutboxMessage.context).where(
                    OutboxMessage.recipient == email, OutboxMessage.template == "password_reset"
                )
            )
            tokens = [str(context["link"]).rsplit("token=", 1)[1] for context in links]
        answers = await asyncio.gather(
            *(live_client.post(RESET, json={"token": t, "new_password": NEW_PASSWORD}) for t in tokens),
            live_client.post(
                CHANGE,
                json={"current_password": PASSWORD, "new_password": "another passphrase 99"},
                headers=headers,
            ),
        )
        assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
        resets = sorted(a.status_code for a in answers[:-1])
        assert resets in ([204, 400], [400, 400]), [a.text for a in answers]  # one link at most wins


async def test_forgot_does_the_same_database_work_for_unknown_addresses(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    """SPEC §5: the same answer and timing for unknown emails; the statements run are the same."""
    from sqlalchemy import event

    user = await register(live_client)
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split()[0])

    async def forgot(email: str) -> list[str]:
        statements.clear()
        event.listen(live_engine.sync_engine, "before_cursor_execute", count)
        try:
            assert (await live_client.post(FORGOT, json={"email": email})).status_code == 202
        finally:
            event.remove(live_engine.sync_engine, "before_cursor_execute", count)
        return list(statements)

    known = await forgot(user["email"])
    unknown = await forgot(unique_email("ghost"))
    assert known == unknown and len(known) >= 4
