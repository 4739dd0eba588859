"""Every error FastAPI or Starlette can raise comes back as an RFC 9457 problem, never a stack trace."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy import text as sql_text
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.db import SessionDep
from authgate.users.models import User
from tests.factories import PASSWORD, assert_problem, signed_in, unique_email


async def _user_count(db: AsyncSession) -> int:
    return int(await db.scalar(select(func.count()).select_from(User)) or 0)


async def test_unknown_route_is_404_problem(client: AsyncClient) -> None:
    body = assert_problem(await client.get("/api/v1/nothing-here"), 404, "not_found")
    assert body["type"].endswith("/not_found") and body["instance"] == "/api/v1/nothing-here"


async def test_wrong_method_is_405_problem(client: AsyncClient) -> None:
    response = await client.delete("/api/v1/auth/login")
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/api/v1/users", "GET, HEAD, POST"),
        ("POST", "/api/v1/users/me", "DELETE, GET, HEAD, PATCH"),
        ("POST", "/api/v1/roles/editor", "DELETE, GET, HEAD, PATCH"),
    ],
)
async def test_405_allow_names_every_method_of_the_path(
    client: AsyncClient, method: str, path: str, allow: str
) -> None:
    """RFC 9110 §15.5.6: all the methods the resource supports, from every route sharing the path."""
    response = await client.request(method, path)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allow


async def test_405_from_a_mounted_app_keeps_its_allow(client: AsyncClient) -> None:
    response = await client.post("/ui/static/console.css")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "content",
    [
        b'{"email": "a@example.com", ',
        b'\xff\xfe{"email": "a@example.com", "password": "x"}',
        b"\xc3(",
        b'{"email": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
    ids=["truncated", "not UTF-8", "broken UTF-8", "nested 5000 deep"],
)
async def test_malformed_json_is_422_and_writes_nothing(
    client: AsyncClient, db: AsyncSession, content: bytes
) -> None:
    before = await _user_count(db)
    response = await client.post(
        "/api/v1/auth/register", content=content, headers={"content-type": "application/json"}
    )
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"][0]["type"] == "json_invalid"
    assert await _user_count(db) == before


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.com", "password": PASSWORD, "unknown": 1},
        {"email": ["a@example.com"], "password": PASSWORD},
        {"email": "a" * 400 + "@example.com", "password": PASSWORD},
        [],
        "just a string",
    ],
)
async def test_bad_bodies_are_422(client: AsyncClient, db: AsyncSession, body: object) -> None:
    before = await _user_count(db)
    body_out = assert_problem(await client.post("/api/v1/auth/register", json=body), 422, "validation_error")
    assert body_out["errors"] and all({"loc", "msg", "type"} == set(e) for e in body_out["errors"])
    assert await _user_count(db) == before


async def test_huge_body_is_413_by_content_length(client: AsyncClient, db: AsyncSession) -> None:
    before = await _user_count(db)
    payload = b'{"email": "' + b"a" * 1_100_000 + b'@example.com", "password": "x"}'
    response = await client.post(
        "/api/v1/auth/register", content=payload, headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")
    assert await _user_count(db) == before


async def test_huge_streamed_body_is_413(client: AsyncClient) -> None:
    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(20):
            yield b"x" * 100_000

    response = await client.post(
        "/api/v1/auth/register", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


async def test_wrong_content_type_is_415(client: AsyncClient, db: AsyncSession) -> None:
    before = await _user_count(db)
    response = await client.post(
        "/api/v1/auth/register",
        content=f"email={unique_email()}&password=x",
        headers={"content-type": "text/plain"},
    )
    assert_problem(response, 415, "unsupported_media_type")
    form = await client.post("/api/v1/auth/login", data={"email": "a@example.com", "password": "x"})
    assert assert_problem(form, 415, "unsupported_media_type")["detail"].endswith("application/json")
    text = await client.post(
        "/api/v1/auth/introspect", content="token=x", headers={"content-type": "text/plain"}
    )
    assert assert_problem(text, 415, "unsupported_media_type")["detail"].endswith("x-www-form-urlencoded")
    assert await _user_count(db) == before


async def test_json_where_a_form_is_expected_is_refused(client: AsyncClient) -> None:
    """The form endpoints say what they take, rather than reading an empty form from a JSON body."""
    introspect = await client.post("/api/v1/auth/introspect", json={"token": "x"})
    assert assert_problem(introspect, 415, "unsupported_media_type")["detail"].endswith(
        "x-www-form-urlencoded"
    )
    token = await client.post(
        "/api/v1/auth/token", json={"grant_type": "password", "username": "a", "password": "b"}
    )
    assert token.status_code == 400 and token.json()["error"] == "invalid_request"  # RFC 6749 there
    assert token.json()["error_description"].endswith("x-www-form-urlencoded")
    console = await client.post("/ui/login", json={"identifier": "a", "password": "b"})
    assert assert_problem(console, 415, "unsupported_media_type")["detail"].endswith("x-www-form-urlencoded")


NUL_REQUESTS = [
    (
        "POST",
        "/api/v1/auth/register",
        {"json": {"email": "nul@example.com", "password": PASSWORD, "full_name": "a\x00b"}},
        "body",
    ),
    ("POST", "/api/v1/auth/login", {"json": {"username": "a\x00bc", "password": PASSWORD}}, "body"),
    ("PATCH", "/api/v1/users/me", {"json": {"full_name": "a\x00b"}}, "body"),
    ("POST", "/api/v1/workspaces", {"json": {"name": "a\x00b"}}, "body"),
    ("POST", "/api/v1/auth/introspect", {"data": {"token": "a\x00b"}}, "body"),
    ("GET", "/api/v1/users", {"params": {"q": "a\x00b"}}, "query"),
    ("GET", "/api/v1/audit-events", {"params": {"action": "a\x00b"}}, "query"),
    ("GET", "/api/v1/workspaces/a%00b", {}, "path"),
    ("GET", "/api/v1/roles/a%00b", {}, "path"),
]


@pytest.mark.parametrize(("method", "path", "request_args", "where"), NUL_REQUESTS)
async def test_text_with_a_nul_character_is_422_and_writes_nothing(
    client: AsyncClient, db: AsyncSession, method: str, path: str, request_args: dict[str, Any], where: str
) -> None:
    """PostgreSQL cannot store NUL in text: refused at the door, the same on both engines."""
    user, headers = await signed_in(client)
    before = await _user_count(db)
    response = await client.request(method, path, headers=headers, **request_args)
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == [
        {"loc": [where], "msg": "must not contain NUL characters", "type": "nul_character"}
    ]
    assert await _user_count(db) == before
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert me["full_name"] == user["full_name"]


@pytest.mark.parametrize(
    "pieces",
    [
        [b'{"email": "x@example.com", "password": "ab\\u00', b'00cdefghijkl"}'],
        [
            b'{"email": "x@example.com", "password": "ab\\',
            b"u0",
            b"0",
            b"0",
            b"0",
            b'cdefghijkl"}',
        ],  # tiny chunks
    ],
)
async def test_a_nul_marker_split_across_body_chunks_is_found(
    client: AsyncClient, pieces: list[bytes]
) -> None:
    async def chunks():  # no Content-Length: the body arrives in the pieces given
        for piece in pieces:
            yield piece

    response = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "validation_error")


@pytest.mark.parametrize(
    "pieces",
    [
        [b'{"email": "x@example.com", "password": "C:\\\\u0000-lantern-harbor"}'],  # the text \u0000
        [b'{"email": "x@example.com", "password": "C:\\', b'\\u0000-lantern-harbor"}'],  # split after one
    ],
)
async def test_an_escaped_backslash_before_u0000_is_text_not_nul(
    client: AsyncClient, pieces: list[bytes]
) -> None:
    async def chunks():
        for piece in pieces:
            yield piece

    response = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 401, "invalid_credentials")  # read as a password, which is wrong


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        # JSON in UTF-16, which the JSON parser would read: its ASCII letters carry NUL bytes
        ('{"username": "a\\u0000b", "password": "xxxxxxxxxx"}'.encode("utf-16-le"), "application/json"),
        (b"token=a\x00b", "application/x-www-form-urlencoded"),
    ],
)
async def test_raw_nul_bytes_in_text_bodies_are_422(
    client: AsyncClient, content: bytes, content_type: str
) -> None:
    path = "/api/v1/auth/login" if content_type == "application/json" else "/api/v1/auth/introspect"
    response = await client.post(path, content=content, headers={"content-type": content_type})
    assert_problem(response, 422, "validation_error")


async def test_a_nul_in_a_multipart_form_is_refused(client: AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/introspect", data={"token": "a\x00b"}, files={"unused": ("x.txt", b"x")}
    )
    assert_problem(response, 422, "validation_error")
    # The OAuth2 token endpoint says the same in RFC 6749's words.
    form = {"grant_type": "password", "username": "a\x00b", "password": "x"}
    token = await client.post("/api/v1/auth/token", data=form, files={"unused": ("x.txt", b"x")})
    assert token.status_code == 400
    assert token.json()["error"] == "invalid_request"


@pytest.mark.postgres_only  # SQLite stores any text; PostgreSQL refuses NUL
async def test_text_the_database_refuses_is_422_not_500(app: FastAPI, client: AsyncClient) -> None:
    """The backstop behind the middleware: PostgreSQL's own refusal of the text is a 422 problem."""

    @app.get("/api/v1/probe-bad-text")
    async def probe(session: SessionDep, value: str) -> None:
        await session.execute(sql_text("SELECT CAST(:v AS text)"), {"v": value.replace("~", "\x00")})

    response = await client.get("/api/v1/probe-bad-text", params={"value": "a~b"})
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"][0]["type"] == "bad_text"


async def test_uploads_may_carry_nul_bytes(client: AsyncClient) -> None:
    """Binary bodies are not text: an image full of zero bytes reaches the avatar check."""
    _, headers = await signed_in(client)
    files = {"file": ("a.png", b"\x00" * 64, "image/png")}
    response = await client.put("/api/v1/users/me/avatar", files=files, headers=headers)
    assert_problem(response, 415, "unsupported_media_type")  # judged by its content: not an image


async def test_invalid_uuid_in_path_is_422(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    assert_problem(await client.delete("/api/v1/auth/sessions/123", headers=headers), 422, "validation_error")
    missing = await client.delete(f"/api/v1/auth/sessions/{uuid.uuid4()}", headers=headers)
    assert_problem(missing, 404, "not_found")


async def test_unhandled_exception_is_a_generic_500(app: FastAPI) -> None:
    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals /etc/passwd")

    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="https://test") as c:
        response = await c.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert body["detail"] == "Internal server error"


async def test_request_id_is_echoed_or_generated(client: AsyncClient) -> None:
    echoed = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/health", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32


async def test_problem_request_id_matches_header(client: AsyncClient) -> None:
    response = await client.get("/api/v1/users/me", headers={"X-Request-ID": "trace-42"})
    assert assert_problem(response, 401, "not_authenticated")["request_id"] == "trace-42"


def test_a_time_without_an_offset_is_utc_whatever_the_server_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time
    from datetime import UTC, datetime

    from pydantic import TypeAdapter

    from authgate.schemas import Timestamp

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        parse = TypeAdapter(Timestamp).validate_python
        assert parse("2026-01-01T08:00:00") == datetime(2026, 1, 1, 8, tzinfo=UTC)
        assert parse("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
        assert parse("2026-01-01T08:00:00+02:00") == datetime(2026, 1, 1, 6, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(
    ("password", "msg", "kind"),
    [("short", "at least 8", "too_short"), ("x" * 129, "at most 128", "too_long")],
)
async def test_password_length_errors_count_characters(
    client: AsyncClient, password: str, msg: str, kind: str
) -> None:
    response = await client.post(
        "/api/v1/auth/register", json={"email": unique_email(), "password": password}
    )
    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == [
        {"loc": ["body", "password"], "msg": f"String should have {msg} characters", "type": kind}
    ]
