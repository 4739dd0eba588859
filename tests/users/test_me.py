"""GET/PATCH /users/me (SPEC §6)."""

from __future__ import annotations

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from tests.factories import assert_problem, signed_in


async def test_patch_me_changes_allowed_fields_and_audits(client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(client)
    response = await client.patch(
        "/api/v1/users/me",
        headers=headers,
        json={"full_name": "Ada L", "username": "Ada.L", "phone": "+442071838750"},
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["full_name"], body["username"], body["phone"]) == ("Ada L", "ada.l", "+442071838750")
    assert body["phone_verified"] is False
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["username"] == "ada.l"
    event = await db.scalar(
        select(AuditEvent).where(AuditEvent.action == "user.updated", AuditEvent.target_id == user["id"])
    )
    assert event is not None and event.data == {"fields": ["full_name", "phone", "username"]}
    assert event.request_id == response.headers["x-request-id"]


async def _updated_events(db: AsyncSession, user_id: str) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.action == "user.updated", AuditEvent.target_id == user_id)
    return list((await db.scalars(stmt)).all())


async def test_patch_me_username_taken_in_other_case(client: AsyncClient, db: AsyncSession) -> None:
    await signed_in(client, username="taken_name")
    user, headers = await signed_in(client, full_name="Original", phone="+442071838750")
    body = {"username": "TAKEN_NAME", "full_name": "Renamed", "phone": "+14155550123"}
    assert_problem(await client.patch("/api/v1/users/me", headers=headers, json=body), 409, "username_taken")
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert (me["username"], me["full_name"], me["phone"]) == (None, "Original", "+442071838750")
    assert await _updated_events(db, user["id"]) == []


async def test_patch_me_cannot_touch_protected_fields(client: AsyncClient) -> None:
    user, headers = await signed_in(client)
    for body in (
        {"email": "x@example.com"},
        {"is_active": False},
        {"roles": ["admin"]},
        {"email_verified": True},
    ):
        assert_problem(
            await client.patch("/api/v1/users/me", headers=headers, json=body), 422, "validation_error"
        )
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert me["roles"] == ["user"] and me["email"] == user["email"] and me["email_verified"] is False


async def test_patch_me_bad_values(client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(client)
    for body in ({"full_name": "x" * 201}, {"phone": "not a phone"}, {"username": "a"}, {"full_name": 3}):
        assert_problem(
            await client.patch("/api/v1/users/me", headers=headers, json=body), 422, "validation_error"
        )
    # One valid field beside an invalid one: the whole body is refused, the valid field included.
    for body in (
        {"full_name": "Applied?", "phone": "not a phone"},
        {"username": "fine_name", "full_name": "x" * 201},
        {"phone": "+442071838750", "username": "a"},
    ):
        assert_problem(
            await client.patch("/api/v1/users/me", headers=headers, json=body), 422, "validation_error"
        )
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert (me["username"], me["full_name"], me["phone"]) == (None, None, None)
    assert await _updated_events(db, user["id"]) == []


async def test_patch_me_requires_authentication(client: AsyncClient) -> None:
    assert_problem(await client.patch("/api/v1/users/me", json={"full_name": "X"}), 401, "not_authenticated")


async def test_patch_me_username_can_change_but_not_be_removed(client: AsyncClient) -> None:
    _, headers = await signed_in(client, username="keeps_name")
    refused = await client.patch(
        "/api/v1/users/me", headers=headers, json={"username": None, "full_name": "K"}
    )
    assert_problem(refused, 422, "validation_error")
    assert refused.json()["errors"][0]["loc"] == ["body", "username"]
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert (me["username"], me["full_name"]) == ("keeps_name", None)  # nothing of the refused PATCH applied
    cleared = await client.patch("/api/v1/users/me", headers=headers, json={"full_name": None, "phone": None})
    assert cleared.status_code == 200  # names and phones can be cleared
