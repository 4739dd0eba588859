"""TOTP MFA (SPEC §4, §5): set-up, enable, disable, the second sign-in step, replay and recovery codes."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from authgate.audit.models import AuditEvent
from authgate.auth.dependencies import Principal, get_principal
from authgate.auth.service import Account
from authgate.config import RateLimits
from authgate.db import utcnow
from authgate.mfa.models import MfaChallenge, RecoveryCode, TotpCredential
from authgate.outbox.dispatcher import Dispatcher
from authgate.outbox.models import OutboxMessage
from authgate.sessions.models import LoginSession
from authgate.users.models import User
from tests.courier import Mailbox, link_token, mail_to
from tests.factories import PASSWORD, assert_problem, signed_in

SETUP = "/api/v1/auth/mfa/totp/setup"
ENABLE = "/api/v1/auth/mfa/totp/enable"
DISABLE = "/api/v1/auth/mfa/totp/disable"
LOGIN_MFA = "/api/v1/auth/login/mfa"


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).at(step * 30)


def now_step() -> int:
    return int(time.time()) // 30


async def enable_mfa(client: AsyncClient, headers: dict[str, str]) -> tuple[str, list[str]]:
    secret = (await client.post(SETUP, headers=headers)).json()["secret"]
    response = await client.post(ENABLE, json={"code": code_at(secret, now_step())}, headers=headers)
    assert response.status_code == 200, response.text
    return secret, response.json()["recovery_codes"]


async def mfa_user(client: AsyncClient) -> tuple[dict[str, Any], dict[str, str], str, list[str]]:
    user, headers = await signed_in(client)
    secret, codes = await enable_mfa(client, headers)
    return user, headers, secret, codes


async def password_step(client: AsyncClient, email: str) -> str:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "mfa_required": True,
        "mfa_token": body["mfa_token"],
        "methods": ["totp", "recovery_code"],
    }
    return str(body["mfa_token"])


async def actions(db: AsyncSession, user_id: str) -> list[str]:
    rows = await db.scalars(
        select(AuditEvent.action).where((AuditEvent.actor_id == user_id) | (AuditEvent.target_id == user_id))
    )
    return list(rows.all())


async def test_setup_returns_secret_uri_and_svg(client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(client)
    response = await client.post(SETUP, headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"secret", "otpauth_uri", "qr_svg"}
    assert body["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={body['secret']}" in body["otpauth_uri"]
    assert body["qr_svg"].lstrip().startswith("<svg")
    stored = await db.scalar(
        select(TotpCredential.secret_encrypted).where(TotpCredential.user_id == uuid.UUID(user["id"]))
    )
    assert stored is not None
    assert body["secret"] not in stored  # encrypted at rest
    me = (await client.get("/api/v1/users/me", headers=headers)).json()
    assert me["mfa_enabled"] is False  # not until a code confirms it


async def test_enable_with_wrong_code_is_400_and_changes_nothing(
    client: AsyncClient, db: AsyncSession
) -> None:
    user, headers = await signed_in(client)
    secret = (await client.post(SETUP, headers=headers)).json()["secret"]
    wrong = str((int(code_at(secret, now_step())) + 1) % 1_000_000).zfill(6)
    assert_problem(await client.post(ENABLE, json={"code": wrong}, headers=headers), 400, "code_invalid")
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["mfa_enabled"] is False
    assert (
        await db.scalar(
            select(func.count())
            .select_from(RecoveryCode)
            .where(RecoveryCode.user_id == uuid.UUID(user["id"]))
        )
        == 0
    )


async def test_a_setup_that_waited_for_an_enable_does_not_replace_the_enabled_secret(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    """Set-up checks the credential again under its row lock: a second tab's set-up that read the
    account before the first tab's enable committed is 409, and the enabled authenticator stays."""
    from authgate.errors import AuthgateError
    from authgate.mfa.service import MfaService

    user, headers = await signed_in(client)
    secret, _ = await enable_mfa(client, headers)
    stale = await db.get(User, uuid.UUID(user["id"]))
    assert stale is not None
    stale.mfa_enabled = False  # what the waiting request read before the enable
    service = MfaService(db, app.state.settings.secret())
    try:
        with pytest.raises(AuthgateError) as refused:
            await service.setup(stale)
    finally:
        await db.rollback()
    assert (refused.value.status, refused.value.code) == (409, "conflict")
    client.cookies.clear()
    token = await password_step(client, user["email"])  # the enabled authenticator still signs in
    finished = await client.post(
        LOGIN_MFA, json={"mfa_token": token, "code": code_at(secret, now_step() + 1)}
    )
    assert finished.status_code == 200, finished.text


async def test_enable_before_setup_is_409(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    assert_problem(await client.post(ENABLE, json={"code": "123456"}, headers=headers), 409, "conflict")


async def test_enable_returns_ten_recovery_codes_stored_hashed(client: AsyncClient, db: AsyncSession) -> None:
    user, headers, _, codes = await mfa_user(client)
    assert len(codes) == len(set(codes)) == 10
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["mfa_enabled"] is True
    stored = (
        await db.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == uuid.UUID(user["id"])))
    ).all()
    assert len(stored) == 10
    assert not set(codes) & set(stored)
    assert "mfa.enabled" in await actions(db, user["id"])
    # A second set-up while on is refused: disable first.
    assert_problem(await client.post(SETUP, headers=headers), 409, "conflict")


async def test_login_with_mfa_gives_a_challenge_and_no_tokens(client: AsyncClient) -> None:
    user, *_ = await mfa_user(client)
    client.cookies.clear()
    response = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert response.status_code == 200
    assert "access_token" not in response.json()
    assert "set-cookie" not in response.headers


async def test_totp_finishes_sign_in_once(client: AsyncClient, db: AsyncSession) -> None:
    user, _, secret, _ = await mfa_user(client)
    token = await password_step(client, user["email"])
    response = await client.post(
        LOGIN_MFA, json={"mfa_token": token, "code": code_at(secret, now_step() + 1)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["id"] == user["id"]
    assert {c.split("=")[0] for c in response.headers.get_list("set-cookie")} >= {
        "authgate_access",
        "authgate_refresh",
        "authgate_csrf",
    }
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    succeeded = await db.scalar(
        select(AuditEvent)
        .where(AuditEvent.actor_id == user["id"], AuditEvent.action == "auth.login.succeeded")
        .order_by(AuditEvent.seq.desc())
        .limit(1)
    )
    assert succeeded is not None
    assert succeeded.data == {"mfa": "totp"}
    # The token is single use.
    again = await client.post(LOGIN_MFA, json={"mfa_token": token, "code": code_at(secret, now_step() + 1)})
    assert_problem(again, 400, "mfa_invalid")


async def test_a_totp_code_is_accepted_only_once(client: AsyncClient) -> None:
    user, _, secret, _ = await mfa_user(client)
    code = code_at(secret, now_step() + 1)
    first = await client.post(
        LOGIN_MFA, json={"mfa_token": await password_step(client, user["email"]), "code": code}
    )
    assert first.status_code == 200
    replay = await client.post(
        LOGIN_MFA, json={"mfa_token": await password_step(client, user["email"]), "code": code}
    )
    assert_problem(replay, 400, "mfa_invalid")
    older = code_at(secret, now_step())  # the step used to enable, and older than the last one used
    stale = await client.post(
        LOGIN_MFA, json={"mfa_token": await password_step(client, user["email"]), "code": older}
    )
    assert_problem(stale, 400, "mfa_invalid")


async def test_recovery_code_signs_in_once(client: AsyncClient, db: AsyncSession) -> None:
    user, _, _, codes = await mfa_user(client)
    token = await password_step(client, user["email"])
    response = await client.post(LOGIN_MFA, json={"mfa_token": token, "code": codes[0].upper()})
    assert response.status_code == 200, response.text
    assert "mfa.recovery_code.used" in await actions(db, user["id"])
    reuse = await client.post(
        LOGIN_MFA, json={"mfa_token": await password_step(client, user["email"]), "code": codes[0]}
    )
    assert_problem(reuse, 400, "mfa_invalid")
    used = await db.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == uuid.UUID(user["id"]), RecoveryCode.used_at.is_not(None))
    )
    assert used == 1


@pytest.mark.parametrize("ending", ["password reset", "password change", "logout-all", "deletion"])
async def test_a_pending_challenge_dies_with_the_sessions(
    client: AsyncClient, db: AsyncSession, courier: Dispatcher, mailbox: Mailbox, ending: str
) -> None:
    """A second step won with the old password must not open a session after a reset, a change or a
    sign-out everywhere (SPEC §4, §5: they revoke the user's sessions)."""
    user, headers, secret, codes = await mfa_user(client)
    pending = await password_step(client, user["email"])
    if ending == "password reset":
        assert (
            await client.post("/api/v1/auth/password/forgot", json={"email": user["email"]})
        ).status_code == 202
        mail = await mail_to(courier, mailbox, user["email"], "reset your password")
        token = link_token(mail, "/ui/password/reset")
        body = {"token": token, "new_password": "a brand new passphrase 42"}
        assert (await client.post("/api/v1/auth/password/reset", json=body)).status_code == 204
    elif ending == "password change":
        body = {"current_password": PASSWORD, "new_password": "a brand new passphrase 42"}
        assert (
            await client.post("/api/v1/auth/password/change", json=body, headers=headers)
        ).status_code == 204
    elif ending == "logout-all":
        assert (await client.post("/api/v1/auth/logout-all", headers=headers)).status_code == 204
    else:  # deleted, then restored within the challenge's five minutes
        gone = await client.request(
            "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=headers
        )
        assert gone.status_code == 204
        await db.execute(update(User).where(User.id == uuid.UUID(user["id"])).values(deleted_at=None))
        await db.commit()
    for code in (codes[0], code_at(secret, now_step())):
        assert_problem(
            await client.post(LOGIN_MFA, json={"mfa_token": pending, "code": code}), 400, "mfa_invalid"
        )
    sessions = await db.scalar(
        select(func.count())
        .select_from(LoginSession)
        .where(LoginSession.user_id == uuid.UUID(user["id"]), LoginSession.revoked_at.is_(None))
    )
    assert sessions == (1 if ending == "password change" else 0)  # a change keeps the caller's own


async def test_wrong_code_is_400_recorded_and_the_token_stays_usable(
    client: AsyncClient, db: AsyncSession
) -> None:
    user, _, secret, _ = await mfa_user(client)
    token = await password_step(client, user["email"])
    for wrong in ("000000", "not-a-recovery-code"):
        assert_problem(
            await client.post(LOGIN_MFA, json={"mfa_token": token, "code": wrong}), 400, "mfa_invalid"
        )
    failed = (
        await db.scalars(
            select(AuditEvent.data).where(
                AuditEvent.actor_id == user["id"], AuditEvent.action == "auth.login.failed"
            )
        )
    ).all()
    assert {"reason": "mfa_invalid"} in failed
    ok = await client.post(LOGIN_MFA, json={"mfa_token": token, "code": code_at(secret, now_step() + 1)})
    assert ok.status_code == 200


async def test_wrong_codes_count_toward_the_brute_force_wait(app: FastAPI, client: AsyncClient) -> None:
    user, _, secret, _ = await mfa_user(client)
    app.state.settings.rate_limit = RateLimits(failed_logins_before_delay=2)
    token = await password_step(client, user["email"])
    for _ in range(2):
        assert_problem(
            await client.post(LOGIN_MFA, json={"mfa_token": token, "code": "000000"}), 400, "mfa_invalid"
        )
    blocked = await client.post(LOGIN_MFA, json={"mfa_token": token, "code": code_at(secret, now_step() + 1)})
    assert_problem(blocked, 429, "rate_limited")
    assert int(blocked.headers["retry-after"]) >= 1


async def test_a_right_code_answered_after_parallel_wrong_ones_is_held_and_stays_unused(
    app: FastAPI,
    client: AsyncClient,
    db: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Codes guessed in parallel all pass the first check; the one at answer time holds the rest."""
    from authgate.mfa.service import MfaService
    from authgate.ratelimit.bruteforce import LoginGuard, mfa_identifier

    user, _, secret, _ = await mfa_user(client)
    app.state.settings.rate_limit = RateLimits(failed_logins_before_delay=2)
    token = await password_step(client, user["email"])
    verify = MfaService.verify_code

    async def verify_while_others_fail(self: MfaService, *args: Any, **kwargs: Any) -> Any:
        guard = LoginGuard(app.state.settings.rate_limit)
        for _ in range(2):
            async with sessionmaker() as s, s.begin():
                await guard.record_failure(s, mfa_identifier(uuid.UUID(user["id"])))
        return await verify(self, *args, **kwargs)

    monkeypatch.setattr(MfaService, "verify_code", verify_while_others_fail)
    step = now_step() + 1  # once: a 30 s boundary may pass during the request
    code = code_at(secret, step)
    assert_problem(await client.post(LOGIN_MFA, json={"mfa_token": token, "code": code}), 429, "rate_limited")
    db.expire_all()
    credential = await db.scalar(
        select(TotpCredential).where(TotpCredential.user_id == uuid.UUID(user["id"]))
    )
    assert credential is not None and credential.last_used_step != step  # the code stays unused
    challenge = await db.scalar(select(MfaChallenge).where(MfaChallenge.user_id == uuid.UUID(user["id"])))
    assert challenge is not None and challenge.used_at is None


async def test_a_wrong_code_answered_after_parallel_wrong_ones_is_429_and_audited_as_held(
    app: FastAPI, client: AsyncClient, db: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    from authgate.ratelimit.bruteforce import LoginGuard

    user, _, _, _ = await mfa_user(client)
    token = await password_step(client, user["email"])
    app.state.settings.rate_limit = RateLimits(failed_logins_before_delay=2)
    record_failure = LoginGuard.record_failure

    async def two_parallel_guesses_fail_first(
        self: LoginGuard, session: AsyncSession, identifier: str, user_id: Any = None
    ) -> int | None:
        monkeypatch.setattr(LoginGuard, "record_failure", record_failure)
        for _ in range(2):
            await record_failure(self, session, identifier)
        return await record_failure(self, session, identifier, user_id)

    monkeypatch.setattr(LoginGuard, "record_failure", two_parallel_guesses_fail_first)
    held = await client.post(LOGIN_MFA, json={"mfa_token": token, "code": "000000"})
    assert_problem(held, 429, "rate_limited")
    failed = (
        await db.scalars(
            select(AuditEvent.data).where(
                AuditEvent.actor_id == user["id"], AuditEvent.action == "auth.login.failed"
            )
        )
    ).all()
    assert failed == [{"reason": "mfa_invalid", "throttled": True}]


async def test_expired_or_unknown_mfa_token_is_400(client: AsyncClient, db: AsyncSession) -> None:
    user, _, secret, _ = await mfa_user(client)
    token = await password_step(client, user["email"])
    await db.execute(update(MfaChallenge).values(expires_at=utcnow() - timedelta(seconds=1)))
    await db.commit()
    code = code_at(secret, now_step() + 1)
    assert_problem(await client.post(LOGIN_MFA, json={"mfa_token": token, "code": code}), 400, "mfa_invalid")
    assert_problem(
        await client.post(LOGIN_MFA, json={"mfa_token": "made-up", "code": code}), 400, "mfa_invalid"
    )
    # The refused attempts did not use up the code's time step: it finishes a fresh sign-in.
    fresh = await password_step(client, user["email"])
    finished = await client.post(LOGIN_MFA, json={"mfa_token": fresh, "code": code})
    assert finished.status_code == 200, finished.text
    assert finished.json()["access_token"]


async def test_mfa_token_is_stored_hashed_and_short_lived(client: AsyncClient, db: AsyncSession) -> None:
    user, *_ = await mfa_user(client)
    token = await password_step(client, user["email"])
    row = await db.scalar(select(MfaChallenge).where(MfaChallenge.user_id == uuid.UUID(user["id"])))
    assert row is not None
    assert row.token_hash != token
    assert timedelta(minutes=4) < row.expires_at - row.created_at <= timedelta(minutes=5)


async def test_password_grant_for_mfa_user_is_refused(client: AsyncClient, db: AsyncSession) -> None:
    user, *_ = await mfa_user(client)
    form = {"grant_type": "password", "username": user["email"], "password": PASSWORD}
    response = await client.post("/api/v1/auth/token", data=form)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_grant", "error_description": "mfa_required"}
    assert (
        await db.scalar(
            select(func.count())
            .select_from(MfaChallenge)
            .where(MfaChallenge.user_id == uuid.UUID(user["id"]))
        )
        == 0
    )


async def test_disable_checks_password_then_code(client: AsyncClient, db: AsyncSession) -> None:
    user, headers, secret, _ = await mfa_user(client)
    code = code_at(secret, now_step() + 1)
    wrong_pw = await client.post(DISABLE, json={"password": "wrong password", "code": code}, headers=headers)
    assert_problem(wrong_pw, 403, "invalid_credentials")
    wrong_code = await client.post(DISABLE, json={"password": PASSWORD, "code": "000000"}, headers=headers)
    assert_problem(wrong_code, 400, "code_invalid")
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["mfa_enabled"] is True

    assert (
        await client.post(DISABLE, json={"password": PASSWORD, "code": code}, headers=headers)
    ).status_code == 204
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["mfa_enabled"] is False
    uid = uuid.UUID(user["id"])
    assert (
        await db.scalar(select(func.count()).select_from(RecoveryCode).where(RecoveryCode.user_id == uid))
        == 0
    )
    assert (
        await db.scalar(select(func.count()).select_from(TotpCredential).where(TotpCredential.user_id == uid))
        == 0
    )
    assert "mfa.disabled" in await actions(db, user["id"])
    direct = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert "access_token" in direct.json()


async def test_disable_with_a_recovery_code(client: AsyncClient, db: AsyncSession) -> None:
    user, headers, _, codes = await mfa_user(client)
    response = await client.post(DISABLE, json={"password": PASSWORD, "code": codes[3]}, headers=headers)
    assert response.status_code == 204
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["mfa_enabled"] is False
    uid = uuid.UUID(user["id"])
    for model in (RecoveryCode, TotpCredential):
        assert await db.scalar(select(func.count()).select_from(model).where(model.user_id == uid)) == 0
    disabled = (
        await db.scalars(
            select(AuditEvent).where(AuditEvent.action == "mfa.disabled", AuditEvent.target_id == user["id"])
        )
    ).all()
    assert len(disabled) == 1 and disabled[0].request_id == response.headers["x-request-id"]
    direct = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert direct.status_code == 200
    assert direct.json()["access_token"] and "mfa_required" not in direct.json()


async def test_mfa_management_refuses_api_keys(app: FastAPI, client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(client)
    row = await db.scalar(
        select(User).options(selectinload(User.roles)).where(User.id == uuid.UUID(user["id"]))
    )
    assert row is not None

    async def as_api_key() -> Principal:
        return Principal(
            account=Account.of(row),
            session_id=None,
            permissions=frozenset(),
            api_key_id=uuid.uuid4(),
        )

    app.dependency_overrides[get_principal] = as_api_key
    try:
        for path, body in (
            (SETUP, None),
            (ENABLE, {"code": "123456"}),
            (DISABLE, {"password": PASSWORD, "code": "123456"}),
        ):
            assert_problem(await client.post(path, json=body, headers=headers), 403, "permission_denied")
    finally:
        app.dependency_overrides.clear()
    assert (
        await db.scalar(
            select(func.count()).select_from(TotpCredential).where(TotpCredential.user_id == row.id)
        )
        == 0
    )


async def test_mfa_needs_sign_in_and_valid_bodies(client: AsyncClient) -> None:
    assert_problem(await client.post(SETUP), 401, "not_authenticated")
    _, headers = await signed_in(client)
    await client.post(SETUP, headers=headers)
    for body in ({"code": "12"}, {"code": 123456}, {"code": "123456", "extra": 1}, {}):
        assert_problem(await client.post(ENABLE, json=body, headers=headers), 422, "validation_error")
    assert (await client.get("/api/v1/users/me", headers=headers)).json()["mfa_enabled"] is False
    for body in ({"mfa_token": "x"}, {"mfa_token": "x", "code": "123456", "more": True}):
        assert_problem(await client.post(LOGIN_MFA, json=body), 422, "validation_error")


async def test_setup_again_before_enabling_replaces_the_secret(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    first = (await client.post(SETUP, headers=headers)).json()["secret"]
    second = (await client.post(SETUP, headers=headers)).json()["secret"]
    assert first != second
    stale = await client.post(ENABLE, json={"code": code_at(first, now_step())}, headers=headers)
    assert_problem(stale, 400, "code_invalid")
    ok = await client.post(ENABLE, json={"code": code_at(second, now_step())}, headers=headers)
    assert ok.status_code == 200


async def test_enable_and_disable_email_the_owner(client: AsyncClient, db: AsyncSession) -> None:
    user, headers, _, codes = await mfa_user(client)
    response = await client.post(DISABLE, json={"password": PASSWORD, "code": codes[0]}, headers=headers)
    assert response.status_code == 204
    rows = await db.scalars(
        select(OutboxMessage.template)
        .where(OutboxMessage.recipient == user["email"], OutboxMessage.template.startswith("mfa_"))
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    )
    assert list(rows.all()) == ["mfa_enabled", "mfa_disabled"]
