"""Profiles, settings and avatars (SPEC §6), on both engines."""

from __future__ import annotations

import io
import re
import uuid
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from authgate.config import Settings
from authgate.main import create_app
from authgate.profiles.models import UserProfile, UserSettings
from tests.factories import assert_problem, signed_in
from tests.profiles import images
from tests.rbac import admin, issue_key

AVATAR = "/api/v1/users/me/avatar"


def upload(data: bytes, filename: str = "me.png", content_type: str = "image/png") -> dict[str, object]:
    return {"files": {"file": (filename, data, content_type)}}


async def _profile(db: AsyncSession, user_id: str) -> UserProfile:
    db.expire_all()
    row = await db.get(UserProfile, uuid.UUID(user_id))
    assert row is not None
    return row


# --- profile and settings -----------------------------------------------------------------------------


async def test_new_users_get_a_profile_and_settings(client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(client)
    assert await db.get(UserProfile, uuid.UUID(user["id"])) is not None
    assert await db.get(UserSettings, uuid.UUID(user["id"])) is not None
    profile = await client.get("/api/v1/users/me/profile", headers=headers)
    assert profile.json() == {
        "bio": None,
        "locale": None,
        "timezone": None,
        "website": None,
        "avatar_url": None,
    }
    settings = await client.get("/api/v1/users/me/settings", headers=headers)
    assert settings.json() == {
        "profile_visibility": "members",
        "security_alerts": True,
        "marketing_emails": False,
        "theme": "system",
    }


async def test_update_profile(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    body = {
        "bio": "b" * 2000,
        "locale": "pt-BR",
        "timezone": "America/Sao_Paulo",
        "website": "https://ex.com/me",
    }
    response = await client.patch("/api/v1/users/me/profile", json=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {**body, "avatar_url": None}
    cleared = await client.patch(
        "/api/v1/users/me/profile", json={"bio": None, "locale": "zh-Hant-TW"}, headers=headers
    )
    assert cleared.json()["bio"] is None
    assert cleared.json()["locale"] == "zh-Hant-TW"
    assert cleared.json()["timezone"] == "America/Sao_Paulo"


@pytest.mark.parametrize(
    "body",
    [
        {"bio": "b" * 2001},
        {"timezone": "Mars/Olympus"},
        {"timezone": "../../etc/passwd"},
        {"timezone": "/etc/localtime"},
        {"timezone": "America"},
        {"timezone": "zone.tab"},
        {"locale": "english please"},
        {"locale": "e"},
        {"website": "javascript:alert(1)"},
        {"website": "ftp://example.com"},
        {"website": "https://"},
        {"website": "https://example.com/" + "a" * 2048},
        {"avatar_url": "https://evil.example/x.png"},
        # one bad field beside valid ones: the whole patch is refused
        {"bio": "applied?", "timezone": "Mars/Olympus"},
        {"locale": "fr-FR", "website": "javascript:alert(1)"},
        {"timezone": "Europe/Paris", "bio": "b" * 2001},
        {"website": "https://example.com", "locale": "english please"},
        {"bio": "applied?", "avatar_url": "https://evil.example/x.png"},
    ],
)
async def test_bad_profile_input_is_422_and_changes_nothing(
    client: AsyncClient, db: AsyncSession, body: dict[str, object]
) -> None:
    user, headers = await signed_in(client)
    await client.patch("/api/v1/users/me/profile", json={"bio": "kept"}, headers=headers)
    assert_problem(
        await client.patch("/api/v1/users/me/profile", json=body, headers=headers), 422, "validation_error"
    )
    row = await _profile(db, user["id"])
    assert (row.bio, row.timezone, row.locale, row.website) == ("kept", None, None, None)


async def test_update_settings(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    body = {"profile_visibility": "public", "marketing_emails": True, "theme": "dark"}
    response = await client.patch("/api/v1/users/me/settings", json=body, headers=headers)
    assert response.status_code == 200
    assert response.json() == {**body, "security_alerts": True}
    for bad in (
        {"profile_visibility": "everyone"},
        {"theme": "neon"},
        {"security_alerts": "yes please"},
        {"security_alerts": "yes"},
        {"marketing_emails": 1},
        {"marketing_emails": "false"},
        {"theme": None},
        {"profile_visibility": None},
        {"security_alerts": None},
        {"x": 1},
    ):
        assert_problem(
            await client.patch("/api/v1/users/me/settings", json=bad, headers=headers),
            422,
            "validation_error",
        )
    wrong = await client.patch("/api/v1/users/me/settings", json={"theme": None}, headers=headers)
    assert assert_problem(wrong, 422, "validation_error")["errors"][0]["loc"] == ["body", "theme"]
    # One valid field beside a bad one: nothing of the body is applied.
    for mixed in (
        {"theme": "light", "profile_visibility": "everyone"},
        {"marketing_emails": False, "security_alerts": "yes"},
        {"profile_visibility": "private", "x": 1},
    ):
        assert_problem(
            await client.patch("/api/v1/users/me/settings", json=mixed, headers=headers),
            422,
            "validation_error",
        )
    assert (await client.get("/api/v1/users/me/settings", headers=headers)).json() == {
        **body,
        "security_alerts": True,
    }


async def test_profile_needs_authentication(client: AsyncClient) -> None:
    for path in ("/api/v1/users/me/profile", "/api/v1/users/me/settings"):
        assert_problem(await client.get(path), 401, "not_authenticated")


# --- avatars -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [images.png(), images.webp(), images.jpeg_with_exif()],
    ids=["png", "webp", "jpeg"],
)
async def test_avatar_upload_is_reencoded(client: AsyncClient, data: bytes) -> None:
    user, headers = await signed_in(client)
    # The name and declared type are ignored: the content decides.
    response = await client.put(AVATAR, headers=headers, **upload(data, "photo.txt", "text/plain"))  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    url = response.json()["avatar_url"]
    assert url.startswith(f"http://test/api/v1/users/{user['id']}/avatar")
    image = await client.get(f"/api/v1/users/{user['id']}/avatar", headers=headers)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/webp"
    decoded = Image.open(io.BytesIO(image.content))
    assert decoded.format == "WEBP"
    assert max(decoded.size) <= 512
    assert not decoded.getexif()
    assert b"SecretCameraMaker" not in image.content


async def test_jpeg_orientation_is_applied_and_resized(client: AsyncClient) -> None:
    user, headers = await signed_in(client)
    await client.put(AVATAR, headers=headers, **upload(images.jpeg_with_exif(1200, 800)))  # type: ignore[arg-type]
    image = await client.get(f"/api/v1/users/{user['id']}/avatar", headers=headers)
    assert Image.open(io.BytesIO(image.content)).size == (341, 512)  # rotated upright, then fitted into 512


@pytest.mark.parametrize(
    "data",
    [
        b"<html><script>alert(1)</script></html>",
        b"GIF89a<script>alert(1)</script>",
        images.gif(),
        images.png()[:60],  # truncated
        b"",
        images.decompression_bomb(),
        images.png_declaring(1, 2_000_000_000),
        images.png_declaring(100_000, 100_000),
        images.png_declaring(5000, 5000),
    ],
    ids=["html", "gif-polyglot", "gif", "truncated", "empty", "bomb", "tall", "huge", "over-limit"],
)
async def test_unacceptable_uploads_are_415_and_change_nothing(
    client: AsyncClient, db: AsyncSession, data: bytes
) -> None:
    user, headers = await signed_in(client)
    await client.put(AVATAR, headers=headers, **upload(images.png()))  # type: ignore[arg-type]
    before = (await _profile(db, user["id"])).avatar_key
    response = await client.put(AVATAR, headers=headers, **upload(data, "avatar.png", "image/png"))  # type: ignore[arg-type]
    assert_problem(response, 415, "unsupported_media_type")
    assert (await _profile(db, user["id"])).avatar_key == before


@pytest.mark.parametrize(
    ("parts", "loc"),
    [
        (
            {"data": {"extra": "1"}, "files": {"file": ("me.png", images.png(), "image/png")}},
            ["body", "extra"],
        ),
        (
            {
                "files": [
                    ("file", ("a.png", images.png(), "image/png")),
                    ("file", ("b.png", images.png(), "image/png")),
                ]
            },
            ["body", "file"],
        ),
        (
            {"data": {"file": "text"}, "files": {"file": ("me.png", images.png(), "image/png")}},
            ["body", "file"],
        ),
    ],
    ids=["extra-field", "two-files", "file-and-text"],
)
async def test_an_upload_with_more_than_its_one_file_is_422_and_changes_nothing(
    client: AsyncClient, db: AsyncSession, parts: dict[str, object], loc: list[str]
) -> None:
    user, headers = await signed_in(client)
    response = await client.put(AVATAR, headers=headers, **parts)  # type: ignore[arg-type]
    assert assert_problem(response, 422, "validation_error")["errors"][0]["loc"] == loc
    assert (await _profile(db, user["id"])).avatar_key is None


async def test_png_polyglot_is_accepted_but_only_pixels_survive(client: AsyncClient) -> None:
    user, headers = await signed_in(client)
    payload = b"PK\x03\x04<html><script>alert('polyglot')</script></html>"
    response = await client.put(AVATAR, headers=headers, **upload(images.png() + payload))  # type: ignore[arg-type]
    assert response.status_code == 200
    image = await client.get(f"/api/v1/users/{user['id']}/avatar", headers=headers)
    assert b"polyglot" not in image.content
    assert b"PK\x03\x04" not in image.content
    assert image.headers["x-content-type-options"] == "nosniff"


async def test_path_traversal_in_the_filename_is_ignored(
    client: AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    user, headers = await signed_in(client)
    escape = settings.upload_dir.parent / "authgate-evil.png"
    name = "../" * 12 + str(escape).lstrip("/")
    response = await client.put(AVATAR, headers=headers, **upload(images.png(), name))  # type: ignore[arg-type]
    assert response.status_code == 200
    key = (await _profile(db, user["id"])).avatar_key
    assert key is not None
    assert re.fullmatch(r"[0-9a-f]{32}\.webp", key)
    assert (settings.upload_dir / "avatars" / key).is_file()
    assert not escape.exists()


async def test_replacing_and_deleting_the_avatar_removes_files(
    client: AsyncClient, db: AsyncSession, settings: Settings
) -> None:
    user, headers = await signed_in(client)
    await client.put(AVATAR, headers=headers, **upload(images.png()))  # type: ignore[arg-type]
    first = (await _profile(db, user["id"])).avatar_key
    await client.put(AVATAR, headers=headers, **upload(images.webp()))  # type: ignore[arg-type]
    second = (await _profile(db, user["id"])).avatar_key
    assert first
    assert second
    assert first != second
    assert not (settings.upload_dir / "avatars" / first).exists()
    assert (await client.delete(AVATAR, headers=headers)).status_code == 204
    assert not (settings.upload_dir / "avatars" / second).exists()
    assert (await client.get("/api/v1/users/me/profile", headers=headers)).json()["avatar_url"] is None
    assert_problem(await client.get(f"/api/v1/users/{user['id']}/avatar", headers=headers), 404, "not_found")
    assert (await client.delete(AVATAR, headers=headers)).status_code == 204  # idempotent


async def test_upload_needs_a_file_field(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    assert_problem(
        await client.put(AVATAR, headers=headers, json={"file": "x"}), 415, "unsupported_media_type"
    )
    empty = await client.put(AVATAR, headers=headers, files={"other": ("a.png", images.png(), "image/png")})
    assert_problem(empty, 422, "validation_error")
    assert_problem(
        await client.put(AVATAR, files={"file": ("a.png", images.png(), "image/png")}),
        401,
        "not_authenticated",
    )


async def test_avatar_caching_headers_and_304(client: AsyncClient) -> None:
    user, headers = await signed_in(client)
    await client.patch("/api/v1/users/me/settings", json={"profile_visibility": "public"}, headers=headers)
    await client.put(AVATAR, headers=headers, **upload(images.png()))  # type: ignore[arg-type]
    url = f"/api/v1/users/{user['id']}/avatar"
    first = await client.get(url)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert first.headers["cache-control"] == "public, max-age=300"
    again = await client.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200


@pytest.mark.parametrize(
    ("visibility", "anonymous", "member", "owner", "admin_viewer"),
    [
        ("public", 200, 200, 200, 200),
        ("members", 404, 200, 200, 200),
        ("private", 404, 404, 200, 200),
    ],
)
async def test_avatar_visibility(
    client: AsyncClient,
    db: AsyncSession,
    visibility: str,
    anonymous: int,
    member: int,
    owner: int,
    admin_viewer: int,
) -> None:
    user, headers = await signed_in(client)
    _, member_headers = await signed_in(client)
    _, admin_headers = await admin(client, db)
    await client.patch("/api/v1/users/me/settings", json={"profile_visibility": visibility}, headers=headers)
    await client.put(AVATAR, headers=headers, **upload(images.png()))  # type: ignore[arg-type]
    url = f"/api/v1/users/{user['id']}/avatar"
    assert (await client.get(url)).status_code == anonymous
    assert (await client.get(url, headers=member_headers)).status_code == member
    assert (await client.get(url, headers=headers)).status_code == owner
    assert (await client.get(url, headers=admin_headers)).status_code == admin_viewer
    if visibility != "public":
        response = await client.get(url, headers=headers)
        assert response.headers["cache-control"].startswith("private")


async def test_avatar_of_unknown_or_deleted_user_is_404(client: AsyncClient, db: AsyncSession) -> None:
    _, admin_headers = await admin(client, db)
    user, headers = await signed_in(client)
    await client.patch("/api/v1/users/me/settings", json={"profile_visibility": "public"}, headers=headers)
    await client.put(AVATAR, headers=headers, **upload(images.png()))  # type: ignore[arg-type]
    await client.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert_problem(await client.get(f"/api/v1/users/{user['id']}/avatar"), 404, "not_found")
    assert_problem(await client.get(f"/api/v1/users/{uuid.uuid4()}/avatar"), 404, "not_found")
    bad = await client.get(f"/api/v1/users/{user['id']}/avatar", headers={"Authorization": "Bearer nonsense"})
    assert bad.status_code == 401


async def test_avatar_upload_with_an_api_key(client: AsyncClient) -> None:
    user, headers = await signed_in(client)
    raw = (await issue_key(client, headers))["key"]
    response = await client.put(AVATAR, headers={"X-API-Key": raw}, **upload(images.png()))  # type: ignore[arg-type]
    assert response.status_code == 200
    url = response.json()["avatar_url"]
    assert url.startswith(f"http://test/api/v1/users/{user['id']}/avatar")
    # Set on the key owner's profile, as the owner sees it, and served.
    assert (await client.get("/api/v1/users/me/profile", headers=headers)).json()["avatar_url"] == url
    image = await client.get(f"/api/v1/users/{user['id']}/avatar", headers=headers)
    assert image.status_code == 200 and image.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(image.content)).format == "WEBP"


# --- size limits -----------------------------------------------------------------------------------


@pytest.fixture
async def small_client(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine
) -> AsyncIterator[AsyncClient]:
    """An app whose upload limit is 10,000 bytes (the middleware allows 64 KiB of multipart framing)."""
    app: FastAPI = create_app(
        settings.model_copy(update={"max_upload_bytes": 10_000}), sessionmaker=sessionmaker, engine=engine
    )
    async with app.router.lifespan_context(app):
        transport = ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with AsyncClient(transport=transport, base_url="https://test") as c:
            yield c


async def test_declared_oversize_body_is_413(small_client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(small_client)
    response = await small_client.put(AVATAR, headers=headers, **upload(b"\x00" * 200_000))  # type: ignore[arg-type]
    assert_problem(response, 413, "payload_too_large")
    assert (await _profile(db, user["id"])).avatar_key is None


async def test_file_over_the_limit_within_framing_is_413(small_client: AsyncClient) -> None:
    _, headers = await signed_in(small_client)
    big = images.png(40, 40) + b"\x00" * 20_000  # over 10,000 bytes, under the middleware's framing allowance
    response = await small_client.put(AVATAR, headers=headers, **upload(big))  # type: ignore[arg-type]
    assert_problem(response, 413, "payload_too_large")


async def test_streamed_oversize_body_is_cut_off_before_it_is_read(small_client: AsyncClient) -> None:
    _, headers = await signed_in(small_client)
    sent = {"chunks": 0}
    boundary = "xyzzy"

    async def body() -> AsyncIterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(100):  # 100 × 16 KiB = 1.6 MiB, far over the limit
            sent["chunks"] += 1
            yield b"\x00" * 16384
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await small_client.put(
        AVATAR,
        content=body(),
        headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert_problem(response, 413, "payload_too_large")
    assert sent["chunks"] < 100


async def test_my_own_avatar_at_me(client: AsyncClient) -> None:
    user, headers = await signed_in(client)
    assert_problem(await client.get(AVATAR), 401, "not_authenticated")
    assert_problem(await client.get(AVATAR, headers=headers), 404, "not_found")  # none uploaded yet
    await client.patch("/api/v1/users/me/settings", json={"profile_visibility": "public"}, headers=headers)
    await client.put(AVATAR, headers=headers, **upload(images.png()))  # type: ignore[arg-type]
    mine = await client.get(AVATAR, headers=headers)
    assert mine.status_code == 200
    by_id = await client.get(f"/api/v1/users/{user['id']}/avatar")
    assert mine.content == by_id.content
    assert by_id.headers["cache-control"] == "public, max-age=300"
    assert mine.headers["cache-control"] == "private, max-age=300"  # one URL for everyone: never shared
    assert (
        await client.get(AVATAR, headers={**headers, "If-None-Match": mine.headers["etag"]})
    ).status_code == 304
