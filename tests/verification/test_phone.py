"""Phone verification over HTTP: codes read from the dev inbox, limits, attempts, uniqueness."""

from __future__ import annotations

import re
from datetime import timedelta

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.models import OutboxMessage
from authgate.users.models import User
from authgate.verification.models import PhoneVerification
from tests.courier import Mailbox, body_text, mail_to
from tests.factories import assert_problem, signed_in
from tests.rbac import admin

REQUEST = "/api/v1/auth/verify-phone/request"
CONFIRM = "/api/v1/auth/verify-phone/confirm"
PHONE = "+14155550123"


async def _latest_code(client: AsyncClient, courier: Dispatcher, phone: str) -> str:
    await courier.drain()
    items = (await client.get("/dev/inbox.json")).json()["items"]
    sms = [i for i in items if i["channel"] == "sms" and i["to"] == phone]
    assert sms
    assert sms[0]["status"] == "sent"
    match = re.search(r"\b(\d{6})\b", sms[0]["text"])
    assert match is not None
    return match.group(1)


async def _age_codes(db: AsyncSession, by: timedelta) -> None:
    """Move every code's timestamps into the past (instead of waiting for the clock)."""
    for row in (await db.scalars(select(PhoneVerification).execution_options(populate_existing=True))).all():
        await db.execute(
            update(PhoneVerification)
            .where(PhoneVerification.id == row.id)
            .values(created_at=row.created_at - by, expires_at=row.expires_at - by)
        )


async def test_request_and_confirm_verifies_the_number_and_notifies(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    response = await client.post(REQUEST, headers=headers, json={"phone": "+1 (415) 555-0123"})
    assert response.status_code == 202, response.text
    code = await _latest_code(client, courier, PHONE)
    stored = (await db.scalars(select(PhoneVerification.code_hash))).all()
    assert code not in stored

    confirmed = await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": code})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["phone"] == PHONE
    assert confirmed.json()["phone_verified"] is True
    actions = (await db.scalars(select(AuditEvent.action).where(AuditEvent.target_id == user["id"]))).all()
    assert "phone.verified" in actions
    assert await mail_to(courier, mailbox, user["email"], "phone number was changed")
    again = await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": code})
    assert_problem(again, 400, "code_invalid")


async def test_bad_numbers_and_codes_are_422_and_send_nothing(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    for body in (
        {"phone": "12"},
        {"phone": "+1 555"},
        {"phone": "not a phone"},
        {},
        {"phone": PHONE, "x": 1},
    ):
        assert_problem(await client.post(REQUEST, headers=headers, json=body), 422, "validation_error")
    for code in ("12345", "abcdef", "1234567"):
        response = await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": code})
        assert_problem(response, 422, "validation_error")
    assert await db.scalar(select(func.count()).select_from(PhoneVerification)) == 0


async def test_wrong_codes_count_and_five_end_the_code(
    client: AsyncClient, courier: Dispatcher, db: AsyncSession
) -> None:
    _, headers = await signed_in(client)
    await client.post(REQUEST, headers=headers, json={"phone": PHONE})
    code = await _latest_code(client, courier, PHONE)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(5):
        response = await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": wrong})
        assert_problem(response, 400, "code_invalid")
    assert await db.scalar(select(PhoneVerification.attempts)) == 5
    response = await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": code})
    assert_problem(response, 400, "code_invalid")
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert me["phone_verified"] is False


async def test_expired_code_is_invalid(client: AsyncClient, courier: Dispatcher, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    await client.post(REQUEST, headers=headers, json={"phone": PHONE})
    code = await _latest_code(client, courier, PHONE)
    await _age_codes(db, timedelta(minutes=11))
    assert_problem(
        await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": code}), 400, "code_invalid"
    )


async def test_resend_cooldown_is_429_with_retry_after(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    assert (await client.post(REQUEST, headers=headers, json={"phone": PHONE})).status_code == 202
    limited = await client.post(REQUEST, headers=headers, json={"phone": PHONE})
    assert_problem(limited, 429, "rate_limited")
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert await db.scalar(select(func.count()).select_from(PhoneVerification)) == 1
    await _age_codes(db, timedelta(seconds=61))
    assert (await client.post(REQUEST, headers=headers, json={"phone": PHONE})).status_code == 202


async def test_a_new_code_replaces_the_previous_one(
    client: AsyncClient, courier: Dispatcher, db: AsyncSession
) -> None:
    _, headers = await signed_in(client)
    await client.post(REQUEST, headers=headers, json={"phone": PHONE})
    first = await _latest_code(client, courier, PHONE)
    await _age_codes(db, timedelta(seconds=61))
    await client.post(REQUEST, headers=headers, json={"phone": PHONE})
    second = await _latest_code(client, courier, PHONE)
    if first != second:
        response = await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": first})
        assert_problem(response, 400, "code_invalid")
    assert (
        await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": second})
    ).status_code == 200


async def test_daily_caps_per_number_and_per_user(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    app.state.settings.verification.phone_daily_cap_per_number = 2
    app.state.settings.verification.phone_daily_cap_per_user = 3
    _, headers = await signed_in(client)
    for _ in range(2):
        assert (await client.post(REQUEST, headers=headers, json={"phone": PHONE})).status_code == 202
        await _age_codes(db, timedelta(seconds=61))
    capped = await client.post(REQUEST, headers=headers, json={"phone": PHONE})
    assert_problem(capped, 429, "rate_limited")
    assert int(capped.headers["retry-after"]) > 60
    assert (await client.post(REQUEST, headers=headers, json={"phone": "+14155550124"})).status_code == 202
    await _age_codes(db, timedelta(seconds=61))
    assert_problem(
        await client.post(REQUEST, headers=headers, json={"phone": "+14155550125"}), 429, "rate_limited"
    )
    assert await db.scalar(select(func.count()).select_from(PhoneVerification)) == 3


async def test_a_number_verified_by_another_account_is_409(
    client: AsyncClient, courier: Dispatcher, db: AsyncSession
) -> None:
    _, first = await signed_in(client)
    await client.post(REQUEST, headers=first, json={"phone": PHONE})
    code = await _latest_code(client, courier, PHONE)
    assert (await client.post(CONFIRM, headers=first, json={"phone": PHONE, "code": code})).status_code == 200

    second_user, second = await signed_in(client)
    assert_problem(await client.post(REQUEST, headers=second, json={"phone": PHONE}), 409, "phone_taken")
    phone = await db.scalar(select(User.phone).where(User.email == second_user["email"]))
    assert phone is None


async def _verified(client: AsyncClient, courier: Dispatcher, headers: dict[str, str]) -> None:
    assert (await client.post(REQUEST, headers=headers, json={"phone": PHONE})).status_code == 202
    code = await _latest_code(client, courier, PHONE)
    assert (
        await client.post(CONFIRM, headers=headers, json={"phone": PHONE, "code": code})
    ).status_code == 200


async def _phone_alerts(db: AsyncSession, email: str) -> list[dict[str, object]]:
    stmt = (
        select(OutboxMessage.context)
        .where(OutboxMessage.recipient == email, OutboxMessage.template == "phone_changed")
        .order_by(OutboxMessage.id)
    )
    return [dict(c) for c in (await db.scalars(stmt)).all()]


async def test_replacing_or_removing_a_verified_number_alerts_the_owner(
    client: AsyncClient, courier: Dispatcher, mailbox: Mailbox, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    await _verified(client, courier, headers)
    assert len(await _phone_alerts(db, user["email"])) == 1  # the verification itself

    other = "+14155550199"
    changed = await client.patch("/api/v1/users/me", headers=headers, json={"phone": other})
    assert changed.status_code == 200 and changed.json()["phone_verified"] is False
    alerts = await _phone_alerts(db, user["email"])
    assert len(alerts) == 2 and alerts[-1]["phone"] == other
    # An unverified number replaced again: nothing that counted was lost, no alert.
    again = await client.patch("/api/v1/users/me", headers=headers, json={"phone": "+14155550188"})
    assert again.status_code == 200
    assert len(await _phone_alerts(db, user["email"])) == 2

    await _age_codes(db, timedelta(minutes=2))  # past the resend cooldown
    await db.commit()
    await _verified(client, courier, headers)
    removed = await client.patch("/api/v1/users/me", headers=headers, json={"phone": None})
    assert removed.status_code == 200 and removed.json()["phone"] is None
    alerts = await _phone_alerts(db, user["email"])
    assert alerts[-1]["phone"] is None
    mail = await mail_to(courier, mailbox, user["email"], "phone number was changed")
    assert "was removed from your account" in body_text(mail)


async def test_an_administrator_replacing_a_verified_number_alerts_the_owner(
    client: AsyncClient, courier: Dispatcher, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    await _verified(client, courier, headers)
    _, admin_headers = await admin(client, db)
    response = await client.patch(
        f"/api/v1/users/{user['id']}", headers=admin_headers, json={"phone": "+14155550177"}
    )
    assert response.status_code == 200, response.text
    alerts = await _phone_alerts(db, user["email"])
    assert [a["phone"] for a in alerts] == [PHONE, "+14155550177"]


async def test_a_rejected_phone_change_sends_no_alert(
    client: AsyncClient, courier: Dispatcher, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    await _verified(client, courier, headers)
    bad = await client.patch("/api/v1/users/me", headers=headers, json={"phone": "not a number"})
    assert_problem(bad, 422, "validation_error")
    assert len(await _phone_alerts(db, user["email"])) == 1


async def test_a_number_verified_through_an_api_key_is_on_record_as_the_key(
    client: AsyncClient, courier: Dispatcher, db: AsyncSession
) -> None:
    from tests.rbac import issue_key

    user, headers = await signed_in(client)
    key = await issue_key(client, headers)
    by_key = {"X-API-Key": key["key"]}
    assert (await client.post(REQUEST, headers=by_key, json={"phone": PHONE})).status_code == 202
    code = await _latest_code(client, courier, PHONE)
    assert (
        await client.post(CONFIRM, headers=by_key, json={"phone": PHONE, "code": code})
    ).status_code == 200
    event = await db.scalar(select(AuditEvent).where(AuditEvent.action == "phone.verified"))
    assert event is not None
    assert (event.actor_type, event.actor_id, event.target_id) == ("api_key", key["id"], user["id"])
