"""Console profile (with the avatar upload) and settings pages."""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.profiles.models import UserProfile, UserSettings
from tests.factories import PASSWORD, unique_email
from tests.ui.conftest import csrf, post_form


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


async def profile_row(db: AsyncSession, user_id: object) -> UserProfile | None:
    return await db.scalar(
        select(UserProfile)
        .where(UserProfile.user_id == uuid.UUID(str(user_id)))
        .execution_options(populate_existing=True)
    )


async def settings_row(db: AsyncSession, user_id: object) -> UserSettings | None:
    return await db.scalar(
        select(UserSettings)
        .where(UserSettings.user_id == uuid.UUID(str(user_id)))
        .execution_options(populate_existing=True)
    )


@pytest.mark.parametrize("path", ["/ui/account/profile", "/ui/account/settings"])
async def test_account_pages_need_sign_in(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303 and response.headers["location"] == f"/ui/login?next={path}"


@pytest.mark.parametrize("path", ["/ui/account/profile", "/ui/account/settings", "/ui/account/avatar/remove"])
async def test_account_forms_need_sign_in(client: AsyncClient, path: str) -> None:
    await client.get("/ui/login")
    response = await post_form(client, path, {"bio": "x"})
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"


# --- profile -----------------------------------------------------------------------------------


async def test_profile_saves_and_empty_fields_clear(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    page = await client.get("/ui/account/profile")
    assert page.status_code == 200 and 'aria-current="page">Profile' in page.text
    values = {
        "bio": "Hi <there>",
        "locale": "pt-BR",
        "timezone": "Europe/Paris",
        "website": "https://a.example",
    }
    response = await post_form(client, "/ui/account/profile", values)
    assert response.status_code == 303 and response.headers["location"] == "/ui/account/profile?notice=saved"
    row = await profile_row(db, ui_user["id"])
    assert row is not None
    assert (row.bio, row.locale, row.timezone, row.website) == tuple(values.values())
    assert "Hi &lt;there&gt;</textarea>" in (await client.get("/ui/account/profile")).text

    cleared = await post_form(client, "/ui/account/profile", {**values, "bio": "", "website": ""})
    assert cleared.status_code == 303
    row = await profile_row(db, ui_user["id"])
    assert row is not None and (row.bio, row.website, row.locale) == (None, None, "pt-BR")


async def test_profile_bad_input_is_422_and_changes_nothing(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    response = await post_form(
        client,
        "/ui/account/profile",
        {"bio": "kept?", "locale": "not a locale!", "timezone": "Mars/Olympus", "website": "ftp://x"},
    )
    assert response.status_code == 422
    for name in ("locale", "timezone", "website"):
        assert f'id="error-{name}"' in response.text
    assert "kept?</textarea>" in response.text  # the submitted values come back
    row = await profile_row(db, ui_user["id"])
    assert row is None or row.bio is None


async def test_profile_bad_csrf_is_403(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    response = await client.post("/ui/account/profile", data={"bio": "forged", "csrf_token": "forged"})
    assert response.status_code == 403
    row = await profile_row(db, ui_user["id"])
    assert row is None or row.bio is None


# --- avatar ------------------------------------------------------------------------------------


async def test_avatar_upload_shows_it_through_the_api_and_remove(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    page = await client.get("/ui/account/profile")
    assert 'enctype="multipart/form-data"' in page.text and 'action="/ui/account/avatar"' in page.text
    response = await client.post(
        "/ui/account/avatar",
        data={"csrf_token": csrf(client)},
        files={"file": ("me.png", png(), "image/png")},
    )
    assert response.status_code == 303, response.text
    page = await client.get("/ui/account/profile")
    src = page.text.split('<img class="avatar" src="', 1)[1].split('"', 1)[0]
    assert src.startswith(f"/api/v1/users/{ui_user['id']}/avatar?v=")
    image = await client.get(src.replace("&amp;", "&"))
    assert image.status_code == 200 and image.headers["content-type"] == "image/webp"

    removed = await post_form(client, "/ui/account/avatar/remove", {})
    assert removed.status_code == 303
    assert removed.headers["location"] == "/ui/account/profile?notice=avatar_removed"
    page = await client.get("/ui/account/profile")
    assert '<img class="avatar"' not in page.text


async def test_avatar_that_is_not_an_image_is_415_and_stores_nothing(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    response = await client.post(
        "/ui/account/avatar",
        data={"csrf_token": csrf(client)},
        files={"file": ("me.png", b"<svg onload=alert(1)>", "image/png")},
    )
    assert response.status_code == 415
    assert 'id="error-file"' in response.text
    missing = await client.post(
        "/ui/account/avatar", data={"csrf_token": csrf(client)}, files={"other": ("x", b"", "text/plain")}
    )
    assert missing.status_code == 422
    row = await profile_row(db, ui_user["id"])
    assert row is None or row.avatar_key is None


async def test_avatar_without_the_csrf_field_is_403(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    response = await client.post("/ui/account/avatar", files={"file": ("me.png", png(), "image/png")})
    assert response.status_code == 403
    row = await profile_row(db, ui_user["id"])
    assert row is None or row.avatar_key is None


async def test_avatar_upload_needs_sign_in(client: AsyncClient) -> None:
    await client.get("/ui/login")
    response = await client.post(
        "/ui/account/avatar",
        data={"csrf_token": csrf(client)},
        files={"file": ("me.png", png(), "image/png")},
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"


# --- settings ----------------------------------------------------------------------------------


async def test_settings_save_and_unticked_boxes_are_false(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    page = await client.get("/ui/account/settings")
    assert page.status_code == 200
    assert 'name="security_alerts" value="on" checked' in page.text
    response = await post_form(
        client,
        "/ui/account/settings",
        {"profile_visibility": "private", "marketing_emails": "on", "theme": "dark"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/account/settings?notice=saved"
    row = await settings_row(db, ui_user["id"])
    assert row is not None
    assert (row.profile_visibility, row.security_alerts, row.marketing_emails, row.theme) == (
        "private",
        False,
        True,
        "dark",
    )
    page = await client.get("/ui/account/settings")
    assert '<option value="private" selected>' in page.text


async def test_the_chosen_theme_is_applied_to_every_console_page(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    before = await client.get("/ui/")
    assert '<html lang="en" data-theme="system">' in before.text
    assert '<meta name="color-scheme" content="light dark">' in before.text
    saved = await post_form(
        client, "/ui/account/settings", {"profile_visibility": "members", "theme": "dark"}
    )
    assert saved.status_code == 303
    for path in ("/ui/", "/ui/account/settings", "/ui/styleguide"):
        page = await client.get(path)
        assert '<html lang="en" data-theme="dark">' in page.text, path
        assert '<meta name="color-scheme" content="dark">' in page.text, path
    await post_form(client, "/ui/account/settings", {"profile_visibility": "members", "theme": "light"})
    assert '<html lang="en" data-theme="light">' in (await client.get("/ui/")).text
    client.cookies.clear()  # signed out: the sign-in page follows the system
    assert 'data-theme="system"' in (await client.get("/ui/login")).text


async def test_settings_bad_value_is_422_and_bad_csrf_403(
    client: AsyncClient, ui_user: dict[str, object], db: AsyncSession
) -> None:
    bad = await post_form(client, "/ui/account/settings", {"profile_visibility": "everyone", "theme": "dark"})
    assert bad.status_code == 422 and 'id="error-profile_visibility"' in bad.text
    forged = await client.post(
        "/ui/account/settings", data={"profile_visibility": "private", "theme": "dark", "csrf_token": "x"}
    )
    assert forged.status_code == 403
    row = await settings_row(db, ui_user["id"])
    assert row is None or (row.profile_visibility, row.theme, row.security_alerts) == (
        "members",
        "system",
        True,
    )


async def test_a_slow_form_post_does_not_hold_up_other_writers(
    live_app: FastAPI, live_client: AsyncClient
) -> None:
    """The console reads the theme on a short session of its own, so a form whose body is still
    arriving holds no transaction (on SQLite: no write lock) while other requests write."""
    other = {"email": unique_email("other"), "password": PASSWORD}
    for body in ({"email": (mine := unique_email("slow")), "password": PASSWORD}, other):
        assert (await live_client.post("/api/v1/auth/register", json=body)).status_code == 201
    await live_client.get("/ui/login")
    signed_in = await live_client.post(
        "/ui/login",
        data={"csrf_token": live_client.cookies["authgate_csrf"], "identifier": mine, "password": PASSWORD},
    )
    assert signed_in.status_code == 303
    form = f"csrf_token={live_client.cookies['authgate_csrf']}&profile_visibility=members&theme=dark".encode()
    login_done = asyncio.Event()
    awaiting_rest = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield form[:10]
        awaiting_rest.set()  # the app has taken the first part and asked for more
        await login_done.wait()  # the rest only once another request has written
        yield form[10:]

    async def slow_post() -> int:
        response = await live_client.post(
            "/ui/account/settings",
            content=body(),
            headers={"content-type": "application/x-www-form-urlencoded", "content-length": str(len(form))},
        )
        return response.status_code

    async def login_meanwhile() -> int:
        await awaiting_rest.wait()  # the post has started and is waiting for the rest of its body
        async with AsyncClient(transport=ASGITransport(app=live_app), base_url="https://test") as api:
            response = await api.post("/api/v1/auth/login", json=other)
        login_done.set()
        return response.status_code

    # Were the write lock held, the sign-in would wait for the post, which waits for the sign-in.
    statuses = await asyncio.wait_for(asyncio.gather(slow_post(), login_meanwhile()), timeout=20)
    assert statuses == [303, 200]
