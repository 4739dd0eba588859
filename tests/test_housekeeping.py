"""Housekeeping (`authgate purge`): what ended before its retention goes, everything else stays."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from pydantic import ValidationError
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from authgate.api_keys.models import ApiKey
from authgate.audit.models import AuditEvent
from authgate.audit.service import verify_chain
from authgate.cli import app as cli_app
from authgate.config import RetentionSettings, Settings
from authgate.db import utcnow
from authgate.mfa.models import MfaChallenge
from authgate.ops import housekeeping
from authgate.ops.housekeeping import Housekeeper
from authgate.outbox.models import OutboxMessage
from authgate.profiles.models import UserProfile
from authgate.ratelimit.models import LoginThrottle
from authgate.sessions.models import LoginSession, RefreshToken
from authgate.users.models import User
from authgate.verification.models import PhoneVerification, VerificationToken
from authgate.workspaces.models import Workspace, WorkspaceInvitation, WorkspaceMember
from tests.conftest import make_settings
from tests.factories import PASSWORD, assert_problem, signed_in
from tests.profiles import images
from tests.workspaces.helpers import add_member, create_ws, grant_admin

DAY = timedelta(days=1)


def _hex() -> str:
    return secrets.token_hex(32)


async def _count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _invitation(workspace_id: str, **values: Any) -> WorkspaceInvitation:
    return WorkspaceInvitation(
        id=uuid.uuid4(),
        workspace_id=uuid.UUID(workspace_id),
        email="guest@example.com",
        email_normalized="guest@example.com",
        role="member",
        token_hash=_hex(),
        **values,
    )


def _housekeeper(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> Housekeeper:
    return Housekeeper.from_settings(sessionmaker, settings)


async def _seed(client: AsyncClient, db: AsyncSession) -> dict[str, set[uuid.UUID | str]]:
    """One row on each side of every cutoff; returns the ids that must go, by kind."""
    user, headers = await signed_in(client)
    uid = uuid.UUID(user["id"])
    workspace = await create_ws(client, headers)
    now = utcnow()
    doomed: dict[str, set[uuid.UUID | str]] = {}

    def add(kind: str, row: Any, *, goes: bool) -> None:
        db.add(row)
        if goes:
            doomed.setdefault(kind, set()).add(row.id if hasattr(row, "id") else row.key_hash)

    def session(**times: datetime | None) -> LoginSession:
        values: dict[str, Any] = {"created_at": now - 60 * DAY, "expires_at": now + DAY, **times}
        return LoginSession(id=uuid.uuid4(), user_id=uid, last_used_at=values["created_at"], **values)

    sessions = {
        "revoked_long_ago": (session(revoked_at=now - 31 * DAY), True),
        "expired_long_ago": (session(expires_at=now - 31 * DAY), True),
        "revoked_lately": (session(revoked_at=now - DAY), False),
        "expired_lately": (session(expires_at=now - 29 * DAY), False),
        "active": (session(), False),
    }
    for row, goes in sessions.values():
        add("sessions", row, goes=goes)
    await db.flush()
    for row, goes in sessions.values():
        for generation in range(2):  # a rotated token and its successor
            token = RefreshToken(
                id=uuid.uuid4(),
                session_id=row.id,
                token_hash=_hex(),
                generation=generation,
                expires_at=row.expires_at,
            )
            add("refresh_tokens", token, goes=goes)

    def link(**times: datetime | None) -> VerificationToken:
        values: dict[str, Any] = {"expires_at": now + DAY, **times}
        return VerificationToken(
            id=uuid.uuid4(),
            user_id=uid,
            purpose="password_reset",
            token_hash=_hex(),
            email="x@example.com",
            **values,
        )

    add("verification_tokens", link(used_at=now - 8 * DAY), goes=True)
    add("verification_tokens", link(expires_at=now - 8 * DAY), goes=True)
    add("verification_tokens", link(used_at=now - DAY), goes=False)
    add("verification_tokens", link(expires_at=now - 6 * DAY), goes=False)
    add("verification_tokens", link(), goes=False)

    def code(**times: datetime | None) -> PhoneVerification:
        values: dict[str, Any] = {"expires_at": now + DAY, **times}
        return PhoneVerification(
            id=uuid.uuid4(), user_id=uid, phone="+14155550100", code_hash=_hex(), **values
        )

    add("phone_codes", code(expires_at=now - 8 * DAY), goes=True)
    add("phone_codes", code(used_at=now - DAY), goes=False)

    def challenge(**times: datetime | None) -> MfaChallenge:
        values: dict[str, Any] = {"expires_at": now + DAY, **times}
        return MfaChallenge(id=uuid.uuid4(), user_id=uid, token_hash=_hex(), **values)

    add("mfa_challenges", challenge(used_at=now - 8 * DAY), goes=True)
    add("mfa_challenges", challenge(), goes=False)

    def invitation(**times: datetime | None) -> WorkspaceInvitation:
        return _invitation(workspace["id"], **{"expires_at": now + DAY, **times})

    add("invitations", invitation(expires_at=now - 8 * DAY), goes=True)
    add("invitations", invitation(accepted_at=now - 8 * DAY), goes=True)
    add("invitations", invitation(revoked_at=now - 8 * DAY), goes=True)
    add("invitations", invitation(revoked_at=now - DAY), goes=False)
    add("invitations", invitation(), goes=False)

    def message(status: str, age: timedelta) -> OutboxMessage:
        at = now - age
        return OutboxMessage(
            id=uuid.uuid4(),
            channel="email",
            template="password_reset",
            recipient="x@example.com",
            context={"link": "https://example.com/reset?token=secret"},
            idempotency_key=_hex(),
            status=status,
            created_at=at,
            updated_at=at,
        )

    for status in housekeeping.FINISHED_MESSAGES:
        add("messages", message(status, 15 * DAY), goes=True)
        add("messages", message(status, 13 * DAY), goes=False)
    add("messages", message("pending", 15 * DAY), goes=False)  # still to deliver: never purged
    add("messages", message("sending", 15 * DAY), goes=False)

    def throttle(last: timedelta, locked_until: datetime | None = None) -> LoginThrottle:
        return LoginThrottle(
            key_hash=_hex(), failures=12, last_failure_at=now - last, locked_until=locked_until
        )

    add("login_throttles", throttle(31 * DAY), goes=True)
    add("login_throttles", throttle(31 * DAY, locked_until=now + DAY), goes=False)  # still holding back
    add("login_throttles", throttle(DAY), goes=False)
    await db.commit()
    return doomed


KINDS = {
    "sessions": (LoginSession, LoginSession.id),
    "refresh_tokens": (RefreshToken, RefreshToken.id),
    "verification_tokens": (VerificationToken, VerificationToken.id),
    "phone_codes": (PhoneVerification, PhoneVerification.id),
    "mfa_challenges": (MfaChallenge, MfaChallenge.id),
    "invitations": (WorkspaceInvitation, WorkspaceInvitation.id),
    "messages": (OutboxMessage, OutboxMessage.id),
    "login_throttles": (LoginThrottle, LoginThrottle.key_hash),
}


async def _ids(db: AsyncSession, column: Any) -> set[Any]:
    return set((await db.scalars(select(column))).all())


async def test_purge_deletes_only_what_ended_before_its_retention(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    doomed = await _seed(client, db)
    before = {kind: await _ids(db, column) for kind, (_model, column) in KINDS.items()}

    report = await _housekeeper(sessionmaker, settings).purge()

    db.expire_all()
    for kind, (_model, column) in KINDS.items():
        after = await _ids(db, column)
        assert report[kind] == len(doomed[kind]), kind
        assert after == before[kind] - doomed[kind], kind
    assert report["accounts"] == report["accounts_kept"] == 0


async def test_dry_run_counts_and_deletes_nothing(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    doomed = await _seed(client, db)
    before = {kind: await _ids(db, column) for kind, (_model, column) in KINDS.items()}

    report = await _housekeeper(sessionmaker, settings).purge(dry_run=True)

    assert {kind: report[kind] for kind in KINDS} == {kind: len(ids) for kind, ids in doomed.items()}
    db.expire_all()
    assert {kind: await _ids(db, column) for kind, (_model, column) in KINDS.items()} == before


async def test_a_second_purge_finds_nothing_and_batches_are_drained(
    client: AsyncClient,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(housekeeping, "BATCH", 2)  # every kind needs more than one batch
    doomed = await _seed(client, db)
    keeper = _housekeeper(sessionmaker, settings)
    first = await keeper.purge()
    assert first["refresh_tokens"] == len(doomed["refresh_tokens"]) == 4
    assert first["messages"] == len(doomed["messages"]) == 3
    second = await keeper.purge()
    assert set(second.values()) == {0}


async def test_retention_comes_from_settings(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    await _seed(client, db)
    longer = settings.model_copy(
        update={
            "retention": RetentionSettings(
                ended_sessions=90 * DAY, spent_tokens=90 * DAY, finished_messages=90 * DAY
            )
        }
    )
    report = await _housekeeper(sessionmaker, longer).purge()
    assert {kind: report[kind] for kind in KINDS} == dict.fromkeys(KINDS, 0)
    # 62 days on, the sessions that ended 29 and more days ago are past the 90 days.
    later = await _housekeeper(sessionmaker, longer).purge(dry_run=True, now=utcnow() + 62 * DAY)
    assert later["sessions"] == 3


# --- deleted accounts ----------------------------------------------------------------------------


async def _deleted_account(
    client: AsyncClient, db: AsyncSession, *, days_ago: int, avatar: bool = False
) -> uuid.UUID:
    user, headers = await signed_in(client)
    if avatar:
        upload = {"files": {"file": ("me.png", images.png(), "image/png")}}
        assert (await client.put("/api/v1/users/me/avatar", headers=headers, **upload)).status_code == 200  # type: ignore[arg-type]
    deleted = await client.request("DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=headers)
    assert deleted.status_code == 204, deleted.text
    uid = uuid.UUID(user["id"])
    await db.execute(update(User).where(User.id == uid).values(deleted_at=utcnow() - days_ago * DAY))
    await db.commit()
    return uid


async def test_deleted_accounts_are_erased_after_their_retention(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    gone = await _deleted_account(client, db, days_ago=31, avatar=True)
    recent = await _deleted_account(client, db, days_ago=29)
    avatar_key = await db.scalar(select(UserProfile.avatar_key).where(UserProfile.user_id == gone))
    assert avatar_key is not None
    avatar_file = settings.upload_dir / "avatars" / avatar_key
    assert avatar_file.exists()
    active, _ = await signed_in(client)
    gone_email, recent_email = [
        await db.scalar(select(User.email).where(User.id == u)) for u in (gone, recent)
    ]
    again = {"email": gone_email, "password": PASSWORD}
    assert_problem(await client.post("/api/v1/auth/register", json=again), 409, "email_taken")

    report = await _housekeeper(sessionmaker, settings).purge()

    assert report["accounts"] == 1 and report["accounts_kept"] == 0
    # SPEC §6: the address is freed once the retention period is over, not before.
    assert (await client.post("/api/v1/auth/register", json=again)).status_code == 201
    still = {"email": recent_email, "password": PASSWORD}
    assert_problem(await client.post("/api/v1/auth/register", json=still), 409, "email_taken")
    db.expire_all()
    assert await db.get(User, gone) is None
    assert await _count(db, UserProfile, UserProfile.user_id == gone) == 0  # cascaded
    assert await _count(db, LoginSession, LoginSession.user_id == gone) == 0
    assert not avatar_file.exists()
    assert await db.get(User, recent) is not None
    assert await db.get(User, uuid.UUID(active["id"])) is not None
    purged = (await db.scalars(select(AuditEvent).where(AuditEvent.action == "user.purged"))).all()
    assert [(e.actor_type, e.target_id) for e in purged] == [("system", str(gone))]
    assert (await verify_chain(db)).broken_event_id is None
    # The erased account's own history stays in the audit trail, by id.
    assert (
        await _count(db, AuditEvent, AuditEvent.target_id == str(gone), AuditEvent.action == "user.deleted")
        == 1
    )


async def test_erasure_takes_memberships_keys_and_deleted_workspaces_and_keeps_others_whole(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner, owner_headers = await signed_in(client)
    shared = await create_ws(client, owner_headers, name="Shared")
    gone_user, gone_headers = await signed_in(client)
    gone = uuid.UUID(gone_user["id"])
    key = await client.post("/api/v1/api-keys", headers=gone_headers, json={"name": "ci", "scopes": []})
    assert key.status_code == 201, key.text
    abandoned = await create_ws(client, gone_headers, name="Abandoned")
    assert (
        await client.delete(f"/api/v1/workspaces/{abandoned['id']}", headers=gone_headers)
    ).status_code == 204
    db.add(WorkspaceMember(workspace_id=uuid.UUID(shared["id"]), user_id=gone, role="member"))
    invitation = _invitation(shared["id"], invited_by_id=gone, expires_at=utcnow() + DAY)
    db.add(invitation)
    invitation_id = invitation.id
    await db.commit()
    assert (
        await client.request("DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=gone_headers)
    ).status_code == 204
    await db.execute(update(User).where(User.id == gone).values(deleted_at=utcnow() - 31 * DAY))
    await db.commit()

    report = await _housekeeper(sessionmaker, settings).purge()

    assert (report["accounts"], report["accounts_kept"]) == (1, 0)  # a deleted workspace does not hold it
    db.expire_all()
    assert await db.get(User, gone) is None
    assert await _count(db, ApiKey, ApiKey.user_id == gone) == 0
    assert await _count(db, WorkspaceMember, WorkspaceMember.user_id == gone) == 0
    assert await db.get(Workspace, uuid.UUID(abandoned["id"])) is None
    kept = await db.get(WorkspaceInvitation, invitation_id)
    assert kept is not None and kept.invited_by_id is None  # the shared workspace keeps its invitation
    assert await db.get(Workspace, uuid.UUID(shared["id"])) is not None
    assert await _count(db, WorkspaceMember, WorkspaceMember.user_id == uuid.UUID(owner["id"])) == 1


async def test_an_account_restored_after_it_was_found_is_not_erased(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """The delete checks the condition again: a restore between the scan and the delete wins."""
    user, headers = await signed_in(client)
    uid = uuid.UUID(user["id"])
    abandoned = await create_ws(client, headers, name="Kept")
    assert (await client.delete(f"/api/v1/workspaces/{abandoned['id']}", headers=headers)).status_code == 204
    await db.execute(update(User).where(User.id == uid).values(deleted_at=utcnow() - 31 * DAY))
    await db.commit()
    due = User.deleted_at < utcnow() - 30 * DAY
    await db.execute(update(User).where(User.id == uid).values(deleted_at=None))  # restored meanwhile
    await db.commit()
    async with sessionmaker() as session, session.begin():
        erased, files = await Housekeeper._erase(session, [uid], due)
    assert (erased, files) == (0, [])
    db.expire_all()
    assert await db.get(User, uid) is not None
    assert await db.get(Workspace, uuid.UUID(abandoned["id"])) is not None  # its records stay too
    assert await _count(db, AuditEvent, AuditEvent.action == "user.purged") == 0


async def test_a_deleted_account_that_owns_a_workspace_is_kept_until_an_administrator_hands_it_over(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    user, headers = await signed_in(client)
    workspace = await create_ws(client, headers)
    member, _ = await signed_in(client)
    await add_member(db, workspace["id"], member["id"], "member")
    assert (
        await client.request("DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=headers)
    ).status_code == 204
    uid = uuid.UUID(user["id"])
    await db.execute(update(User).where(User.id == uid).values(deleted_at=utcnow() - 31 * DAY))
    await db.commit()

    report = await _housekeeper(sessionmaker, settings).purge()

    assert report["accounts"] == 0 and report["accounts_kept"] == 1
    db.expire_all()
    assert await db.get(User, uid) is not None

    admin, admin_headers = await signed_in(client)
    await grant_admin(db, admin["id"])
    transfer = await client.post(
        f"/api/v1/workspaces/{workspace['id']}/transfer",
        json={"user_id": member["id"]},
        headers=admin_headers,
    )
    assert transfer.status_code == 200, transfer.text

    report = await _housekeeper(sessionmaker, settings).purge()

    assert report["accounts"] == 1 and report["accounts_kept"] == 0
    db.expire_all()
    assert await db.get(User, uid) is None
    assert (await db.get(Workspace, uuid.UUID(workspace["id"]))) is not None
    members = select(WorkspaceMember.user_id).where(
        WorkspaceMember.workspace_id == uuid.UUID(workspace["id"])
    )
    assert (await db.scalars(members)).all() == [uuid.UUID(member["id"])]


# --- where it runs -------------------------------------------------------------------------------


async def test_run_purges_at_once_and_stops_when_asked(
    client: AsyncClient, db: AsyncSession, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    doomed = await _seed(client, db)
    stop = asyncio.Event()
    task = asyncio.create_task(_housekeeper(sessionmaker, settings).run(stop))
    for _ in range(500):  # the first round runs at once; wait for it, not for the interval
        db.expire_all()
        if not (await _ids(db, LoginSession.id)) & doomed["sessions"]:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, timeout=5)
    assert not (await _ids(db, LoginSession.id)) & doomed["sessions"]
    assert task.done() and task.exception() is None


def test_retention_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTHGATE_RETENTION__SPENT_TOKENS", "P3D")
    monkeypatch.setenv("AUTHGATE_RETENTION__FINISHED_MESSAGES", "86400")
    monkeypatch.setenv("AUTHGATE_RETENTION__AUTOMATIC", "false")
    settings = make_settings("sqlite+aiosqlite:///:memory:")
    assert settings.retention.spent_tokens == 3 * DAY
    assert settings.retention.finished_messages == DAY
    assert settings.retention.ended_sessions == 30 * DAY  # default
    assert settings.retention.automatic is False
    monkeypatch.setenv("AUTHGATE_RETENTION__DELETED_ACCOUNTS", "0")
    with pytest.raises(ValidationError, match="deleted_accounts"):
        make_settings("sqlite+aiosqlite:///:memory:")
    monkeypatch.delenv("AUTHGATE_RETENTION__DELETED_ACCOUNTS")
    # Shorter than a day would let the purge undercut the daily SMS caps and the sign-in lockout.
    monkeypatch.setenv("AUTHGATE_RETENTION__SPENT_TOKENS", "PT12H")
    with pytest.raises(ValidationError, match="spent_tokens"):
        make_settings("sqlite+aiosqlite:///:memory:")
    monkeypatch.setenv("AUTHGATE_RETENTION__SPENT_TOKENS", "P1D")
    monkeypatch.setenv("AUTHGATE_RETENTION__ENDED_SESSIONS", "3600")
    with pytest.raises(ValidationError, match="ended_sessions"):
        make_settings("sqlite+aiosqlite:///:memory:")
    # Nor shorter than the window in which the lockout counts failed sign-ins.
    monkeypatch.setenv("AUTHGATE_RETENTION__ENDED_SESSIONS", "P2D")
    monkeypatch.setenv("AUTHGATE_RATE_LIMIT__LOCKOUT_FAILURE_RESET", "P3D")
    with pytest.raises(ValidationError, match="LOCKOUT_FAILURE_RESET"):
        make_settings("sqlite+aiosqlite:///:memory:")


def test_purge_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from authgate.config import get_settings

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AUTHGATE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/purge.db")
    monkeypatch.setenv("AUTHGATE_ENV", "test")
    monkeypatch.setenv("AUTHGATE_SECRET_KEY", "cli-secret-key-long-enough-0123456789abcdef")
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        assert runner.invoke(cli_app, ["migrate", "upgrade"]).exit_code == 0
        dry = runner.invoke(cli_app, ["purge", "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "due" in dry.output and "refresh tokens" in dry.output and "accounts kept" in dry.output
        done = runner.invoke(cli_app, ["purge"])
        assert done.exit_code == 0, done.output
        assert "deleted" in done.output and "sessions" in done.output
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize("automatic", [True, False])
async def test_serve_purges_alongside_the_in_process_courier(settings: Settings, automatic: bool) -> None:
    from authgate.main import create_app

    embedded = settings.model_copy(
        update={
            "outbox": settings.outbox.model_copy(update={"in_process": True}),
            "retention": RetentionSettings(automatic=automatic),
        }
    )
    # The app's own engine: its background tasks must not share the test's single connection.
    app = create_app(embedded)
    async with app.router.lifespan_context(app):
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert "outbox-dispatcher" in names
        assert ("housekeeping" in names) is automatic
    assert not {t.get_name() for t in asyncio.all_tasks()} & {"housekeeping", "outbox-dispatcher"}


@pytest.mark.postgres_only  # SQLite's single writer runs the purges one after another
async def test_purges_side_by_side_erase_each_account_once(
    live_client: AsyncClient, live_engine: Any, settings: Settings
) -> None:
    """Several workers purge at once on real connections: every erasure is recorded exactly once."""
    from authgate.db import create_sessionmaker

    factory = create_sessionmaker(live_engine)
    ids = []
    for _ in range(6):
        _, headers = await signed_in(live_client)
        me = await live_client.get("/api/v1/users/me", headers=headers)
        deleted = await live_client.request(
            "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=headers
        )
        assert deleted.status_code == 204
        ids.append(uuid.UUID(me.json()["id"]))
    async with factory() as session, session.begin():
        await session.execute(update(User).where(User.id.in_(ids)).values(deleted_at=utcnow() - 31 * DAY))

    reports = await asyncio.gather(*(_housekeeper(factory, settings).purge() for _ in range(3)))

    assert sum(r["accounts"] for r in reports) == 6
    async with factory() as session:
        assert await _count(session, User, User.id.in_(ids)) == 0
        purged = (
            await session.scalars(select(AuditEvent.target_id).where(AuditEvent.action == "user.purged"))
        ).all()
        assert sorted(purged) == sorted(str(i) for i in ids)
        assert (await verify_chain(session)).broken_event_id is None


@pytest.mark.postgres_only  # the plans of PostgreSQL; SQLite's indexes come from the same migration
@pytest.mark.parametrize(
    ("rule", "indexes"),
    [
        ("sessions", {"ix_login_session_expires_at", "ix_login_session_revoked_at"}),
        ("messages", {"ix_outbox_message_finished"}),
    ],
)
async def test_the_purge_finds_its_batches_through_indexes(
    db: AsyncSession, rule: str, indexes: set[str]
) -> None:
    """Sequential scans switched off: the plan names the indexes made for the purge's conditions."""
    now = utcnow()
    (found,) = [r for r in housekeeping.RULES if r.name == rule]
    (key,) = found.table.primary_key.columns
    plan = await _plan(db, housekeeping.scan(key, found.where(now, now), housekeeping.BATCH))
    assert all(index in plan for index in indexes), plan


@pytest.mark.postgres_only
async def test_the_purge_finds_deleted_accounts_through_an_index(db: AsyncSession) -> None:
    due = User.deleted_at < utcnow()
    plan = await _plan(db, housekeeping.scan(User.id, due, housekeeping.ACCOUNT_BATCH))
    assert "ix_user_account_deleted_at" in plan
    assert "Seq Scan on user_account" not in plan


async def _plan(db: AsyncSession, statement: Any) -> str:
    await db.execute(text("SET LOCAL enable_seqscan = off"))
    compiled = statement.compile(dialect=db.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    connection = await db.connection()
    rows = await connection.exec_driver_sql(f"EXPLAIN {compiled}", params)
    return "\n".join(row[0] for row in rows)
