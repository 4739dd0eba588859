"""The direct readers behind every authenticated request, on committed data as in production.

The rest of the suite runs each test inside one rolled-back transaction, which the app reads
through its session factory; here the app has a real pool, so SQLite's read-only connection on
the event loop and PostgreSQL's asyncpg pool answer, and every state change must show on the
very next request.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import delete, event, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from structlog.testing import capture_logs

from authgate.auth.service import PostgresAccessReader, SqliteAccessReader
from authgate.db import SqliteReadOnly, utcnow, write_aside
from authgate.roles.models import Role, user_role
from authgate.sessions.models import LoginSession
from authgate.sessions.service import ActivityStamps
from authgate.users.models import User
from tests.factories import PASSWORD, assert_problem, signed_in

ME = "/api/v1/users/me"


async def test_the_live_app_reads_directly(live_app: FastAPI, live_engine: AsyncEngine) -> None:
    expected = SqliteAccessReader if live_engine.dialect.name == "sqlite" else PostgresAccessReader
    assert isinstance(live_app.state.access, expected)


async def test_me_through_the_direct_reader(live_client: AsyncClient) -> None:
    user, headers = await signed_in(live_client, username="reader", full_name="Ada Reader")
    response = await live_client.get(ME, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == (await live_client.get("/api/v1/auth/me", headers=headers)).json()
    assert body["id"] == user["id"]
    assert body["email"] == user["email"]
    assert body["username"] == "reader"
    assert body["full_name"] == "Ada Reader"
    assert body["roles"] == ["user"]
    assert body["is_active"] is True
    assert body["email_verified"] is False
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]


async def test_logout_takes_effect_on_the_next_request(live_client: AsyncClient) -> None:
    _, headers = await signed_in(live_client)
    assert (await live_client.get(ME, headers=headers)).status_code == 200
    assert (await live_client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert_problem(await live_client.get(ME, headers=headers), 401, "session_revoked")


async def test_state_changes_take_effect_on_the_next_request(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    user, headers = await signed_in(live_client)
    user_id = uuid.UUID(user["id"])

    # Permissions come from the role rows of this request: granting admin opens the admin list.
    assert_problem(await live_client.get("/api/v1/users", headers=headers), 403, "permission_denied")
    async with live_engine.begin() as conn:
        admin_id = await conn.scalar(select(Role.id).where(Role.name == "admin"))
        await conn.execute(insert(user_role).values(user_id=user_id, role_id=admin_id))
    assert (await live_client.get("/api/v1/users", headers=headers)).status_code == 200
    assert (await live_client.get(ME, headers=headers)).json()["roles"] == ["admin", "user"]
    async with live_engine.begin() as conn:
        await conn.execute(delete(user_role).where(user_role.c.user_id == user_id))
    assert (await live_client.get(ME, headers=headers)).json()["roles"] == []
    assert_problem(await live_client.get("/api/v1/users", headers=headers), 403, "permission_denied")

    async with live_engine.begin() as conn:
        await conn.execute(update(User).where(User.id == user_id).values(is_active=False))
    assert_problem(await live_client.get(ME, headers=headers), 403, "account_disabled")
    async with live_engine.begin() as conn:
        await conn.execute(update(User).where(User.id == user_id).values(is_active=True))
    assert (await live_client.get(ME, headers=headers)).status_code == 200

    async with live_engine.begin() as conn:
        await conn.execute(
            update(LoginSession)
            .where(LoginSession.user_id == user_id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    assert_problem(await live_client.get(ME, headers=headers), 401, "session_revoked")


async def test_a_deleted_user_is_unknown(live_client: AsyncClient, live_engine: AsyncEngine) -> None:
    user, headers = await signed_in(live_client)
    async with live_engine.begin() as conn:
        await conn.execute(update(User).where(User.id == uuid.UUID(user["id"])).values(deleted_at=utcnow()))
    assert_problem(await live_client.get(ME, headers=headers), 401, "token_invalid")


async def test_introspection_and_forward_auth_use_the_reader(live_client: AsyncClient) -> None:
    user, headers = await signed_in(live_client)
    verified = await live_client.get("/api/v1/auth/verify", headers=headers)
    assert verified.status_code == 200
    assert verified.headers["X-Auth-User-Id"] == user["id"]
    assert verified.headers["X-Auth-Roles"] == "user"
    assert (await live_client.post("/api/v1/auth/logout", headers=headers)).status_code == 204
    assert_problem(await live_client.get("/api/v1/auth/verify", headers=headers), 401, "session_revoked")


@pytest.mark.sqlite_only
async def test_the_sqlite_reader_cannot_write(live_app: FastAPI) -> None:
    reader = live_app.state.access
    assert isinstance(reader, SqliteAccessReader)
    with reader.reads.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA query_only").scalar() == 1
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("DELETE FROM login_session"))


async def test_hot_paths_stay_short(live_client: AsyncClient, live_engine: AsyncEngine) -> None:
    """The statements the two busiest requests send through the ORM engine, counted."""
    user, headers = await signed_in(live_client)
    body = {"email": user["email"], "password": PASSWORD}
    assert (await live_client.post("/api/v1/auth/login", json=body)).status_code == 200  # device known
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.split()[0])

    event.listen(live_engine.sync_engine, "before_cursor_execute", count)
    try:
        assert (await live_client.get(ME, headers=headers)).status_code == 200
        assert statements == []  # the caller comes from the access reader, not the ORM
        assert (await live_client.post("/api/v1/auth/login", json=body)).status_code == 200
    finally:
        event.remove(live_engine.sync_engine, "before_cursor_execute", count)
    # user+roles, failure count (before the hash, and again once the password proved right),
    # session, last login, refresh token, audit head (read, write), audit event, known device.
    assert len(statements) == 10, statements


async def test_a_busy_session_is_stamped_once_not_per_request(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    user, headers = await signed_in(live_client)
    old = utcnow() - timedelta(minutes=5)
    async with live_engine.begin() as conn:
        await conn.execute(
            update(LoginSession).where(LoginSession.user_id == uuid.UUID(user["id"])).values(last_used_at=old)
        )
    stamps: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("UPDATE login_session"):
            stamps.append(statement)

    event.listen(live_engine.sync_engine, "before_cursor_execute", count)
    try:
        responses = await asyncio.gather(*(live_client.get(ME, headers=headers) for _ in range(20)))
    finally:
        event.remove(live_engine.sync_engine, "before_cursor_execute", count)
    assert {r.status_code for r in responses} == {200}
    assert len(stamps) == 1
    async with live_engine.connect() as conn:
        stamped = await conn.scalar(
            select(LoginSession.last_used_at).where(LoginSession.user_id == uuid.UUID(user["id"]))
        )
    assert stamped is not None
    assert stamped > old


async def test_a_failed_activity_stamp_is_logged_and_swallowed(live_engine: AsyncEngine) -> None:
    factory = async_sessionmaker(live_engine, expire_on_commit=False)
    session_id = str(uuid.uuid4())
    with capture_logs() as logs:
        await write_aside(
            factory, text("UPDATE no_such_table SET x = 1"), failure="stamp_failed", session_id=session_id
        )
    assert [(e["event"], e["log_level"], e["session_id"]) for e in logs] == [
        ("stamp_failed", "warning", session_id)
    ]
    with capture_logs() as quiet:
        await write_aside(
            factory,
            update(LoginSession).where(LoginSession.id == uuid.uuid4()).values(last_used_at=utcnow()),
            failure="stamp_failed",
        )
    assert quiet == []


def test_activity_stamps_claim_one_stamp_per_row_and_interval() -> None:
    stamps = ActivityStamps(timedelta(minutes=1))
    row, now = uuid.uuid4(), utcnow()
    assert not stamps.due(row, now - timedelta(seconds=30), now)  # the stored stamp is recent
    assert stamps.due(row, now - timedelta(minutes=2), now)  # stale: this caller writes it
    assert not stamps.due(row, now - timedelta(minutes=2), now + timedelta(seconds=5))  # not again
    assert stamps.due(uuid.uuid4(), None, now)  # another row, never stamped
    assert stamps.due(row, now - timedelta(minutes=2), now + timedelta(minutes=1, seconds=1))


def test_activity_stamps_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ActivityStamps, "MAX_ENTRIES", 3)
    stamps, now = ActivityStamps(timedelta(minutes=1)), utcnow()
    for _ in range(10):
        assert stamps.due(uuid.uuid4(), None, now)
        assert len(stamps._stamped) <= 3


def test_the_sqlite_read_only_connection_refuses_reads_after_close(tmp_path: Path) -> None:
    reads = SqliteReadOnly(make_url(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"))
    assert reads.all(text("SELECT 1"))[0][0] == 1
    reads.close()
    with pytest.raises(RuntimeError, match="closed"):
        reads.all(text("SELECT 1"))


@pytest.mark.postgres_only
async def test_the_postgres_reader_connects_with_the_engines_options(live_engine: AsyncEngine) -> None:
    """SQLAlchemy-only URL options (here its statement cache size) do not reach asyncpg."""
    url = live_engine.url.update_query_dict({"prepared_statement_cache_size": "50"})
    engine = create_async_engine(url)
    reader = PostgresAccessReader(engine, 2)
    try:
        pool = await reader._open()
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await reader.close()
        await engine.dispose()
