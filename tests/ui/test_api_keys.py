"""Console API keys page: list, create (shown once, scopes limited to what the user holds), revoke."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta

from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.api_keys.models import ApiKey
from tests.factories import grant_role, register
from tests.ui.conftest import post_form, ui_sign_in

KEY = re.compile(r'id="new-api-key">(ag_[A-Za-z0-9_-]+)<')


async def key_count(db: AsyncSession, user_id: object) -> int:
    stmt = select(func.count()).where(ApiKey.user_id == uuid.UUID(str(user_id)), ApiKey.revoked_at.is_(None))
    return int(await db.scalar(stmt) or 0)


async def create(client: AsyncClient, **fields: str | list[str]) -> tuple[int, str]:
    response = await client.post(
        "/ui/api-keys", data={"csrf_token": str(client.cookies["authgate_csrf"]), "name": "ci", **fields}
    )
    return response.status_code, response.text


async def me_with_key(client: AsyncClient, key: str) -> tuple[int, object]:
    """GET /users/me with only the key (no console cookies)."""
    jar = dict(client.cookies.items())
    client.cookies.clear()
    response = await client.get("/api/v1/users/me", headers={"X-API-Key": key})
    client.cookies.update(jar)
    return response.status_code, response.json().get("id")


async def test_api_keys_page_needs_sign_in(client: AsyncClient) -> None:
    response = await client.get("/ui/api-keys")
    assert response.status_code == 303 and response.headers["location"] == "/ui/login?next=/ui/api-keys"
    await client.get("/ui/login")
    form = await post_form(client, "/ui/api-keys", {"name": "x"})
    assert form.status_code == 303 and form.headers["location"] == "/ui/login"


async def test_create_shows_the_key_once_and_it_works(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    page = await client.get("/ui/api-keys")
    assert page.status_code == 200 and 'aria-current="page">API keys' in page.text
    assert 'name="scopes"' not in page.text  # a plain user holds no permission to delegate
    status, html = await create(client, name="CI deploys", expires_at="")
    assert status == 200
    match = KEY.search(html)
    assert match is not None
    key = match.group(1)
    assert await me_with_key(client, key) == (200, ui_user["id"])
    listing = await client.get("/ui/api-keys")
    assert "CI deploys" in listing.text and key not in listing.text
    assert key.split("_")[1] in listing.text  # the prefix identifies it
    assert await key_count(db, ui_user["id"]) == 1


async def test_scopes_offered_are_the_ones_held(client: AsyncClient, db: AsyncSession) -> None:
    admin = await register(client)
    await grant_role(db, admin["id"])
    client.cookies.clear()
    await ui_sign_in(client, admin["email"])
    page = await client.get("/ui/api-keys")
    assert 'name="scopes" value="users:read"' in page.text and 'name="scopes" value="audit:read"' in page.text
    expires = (date.today() + timedelta(days=30)).isoformat()
    status, _ = await create(client, scopes=["users:read", "audit:read"], expires_at=expires)
    assert status == 200
    row = await db.scalar(select(ApiKey).where(ApiKey.user_id == uuid.UUID(admin["id"])))
    assert row is not None and row.scopes == ["audit:read", "users:read"]
    assert row.expires_at is not None and row.expires_at > datetime.now(UTC) + timedelta(days=29)


async def test_scopes_not_held_are_403_and_create_nothing(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    status, html = await create(client, scopes=["users:read"])
    assert status == 403 and 'id="error-scopes"' in html
    status, _ = await create(client, scopes=["no:such"])
    assert status == 422
    assert await key_count(db, ui_user["id"]) == 0


async def test_bad_input_is_422_and_creates_nothing(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    status, html = await create(client, name="  ")
    assert status == 422 and 'id="error-name"' in html
    for not_a_day in ("next tuesday", "9999-12-31"):  # the last date has no end of day to expire at
        status, html = await create(client, expires_at=not_a_day)
        assert status == 422 and 'id="error-expires_at"' in html
    yesterday = (date.today() - timedelta(days=2)).isoformat()
    status, html = await create(client, expires_at=yesterday)
    assert status == 422 and 'id="error-expires_at"' in html
    status, _ = await create(client, name="x" * 201)
    assert status == 422
    forged = await client.post("/ui/api-keys", data={"name": "forged", "csrf_token": "forged"})
    assert forged.status_code == 403
    assert await key_count(db, ui_user["id"]) == 0


async def test_revoke_stops_the_key_and_others_keys_are_404(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    _, html = await create(client)
    match = KEY.search(html)
    assert match is not None
    key_id = await db.scalar(select(ApiKey.id).where(ApiKey.user_id == uuid.UUID(str(ui_user["id"]))))

    forged = await client.post(f"/ui/api-keys/{key_id}/revoke", data={"csrf_token": "forged"})
    assert forged.status_code == 403
    assert await key_count(db, ui_user["id"]) == 1

    assert (await post_form(client, "/ui/api-keys/not-a-uuid/revoke", {})).status_code == 404
    assert (await post_form(client, f"/ui/api-keys/{uuid.uuid4()}/revoke", {})).status_code == 404

    response = await post_form(client, f"/ui/api-keys/{key_id}/revoke", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/api-keys?notice=api_key_revoked"
    assert await key_count(db, ui_user["id"]) == 0
    assert (await me_with_key(client, match.group(1)))[0] == 401

    other = await register(client)
    jar = dict(client.cookies.items())
    client.cookies.clear()
    await ui_sign_in(client, other["email"])
    _, html = await create(client)
    other_id = await db.scalar(select(ApiKey.id).where(ApiKey.user_id == uuid.UUID(other["id"])))
    client.cookies.clear()
    client.cookies.update(jar)
    assert (await post_form(client, f"/ui/api-keys/{other_id}/revoke", {})).status_code == 404
    assert await key_count(db, other["id"]) == 1
