"""TOTP multi-factor authentication: set-up, confirmation, recovery codes and sign-in challenges."""

from __future__ import annotations

import base64
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import pyotp
import segno
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import undefer

from authgate.audit.service import Actor, AuditLog
from authgate.db import utcnow
from authgate.mfa.errors import MfaInvalidError, MfaStateError
from authgate.mfa.models import MfaChallenge, RecoveryCode, TotpCredential
from authgate.security.opaque import hash_token, new_token
from authgate.users.models import User
from authgate.verification.errors import CodeInvalidError

TOTP_PERIOD = 30
TOTP_DIGITS = 6
TOTP_DRIFT_STEPS = 1  # accept the previous and next code too: clocks drift and people type slowly
RECOVERY_CODE_COUNT = 10
CHALLENGE_TTL = timedelta(minutes=5)

MfaMethod = Literal["totp", "recovery_code"]
MFA_METHODS: tuple[MfaMethod, ...] = ("totp", "recovery_code")


def _fernet(secret: str) -> Fernet:
    # Its own HKDF `info`, so the TOTP key differs from the signing-key one derived from the same secret.
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"authgate totp secrets").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _normalize_recovery(code: str) -> str:
    return code.strip().lower().replace("-", "").replace(" ", "")


def _new_recovery_code() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()  # 16 characters, 80 bits
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:]}"


async def discard_challenges(session: AsyncSession, user_id: uuid.UUID) -> None:
    """End the user's sign-ins waiting for a second factor. Whatever ends their sessions (a password
    reset or change, a sign-out everywhere, a deletion) calls it: a challenge won with the old
    password must not open a session afterwards. Call it before ending the sessions: a sign-in that
    holds its challenge finishes first, and its new session is then ended with the others."""
    await session.execute(
        delete(MfaChallenge).where(MfaChallenge.user_id == user_id, MfaChallenge.used_at.is_(None))
    )


@dataclass(frozen=True, slots=True)
class TotpSetup:
    secret: str
    otpauth_uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class MfaPending:
    """A correct password for an account with MFA on: the client must finish with a code."""

    user_id: uuid.UUID
    mfa_token: str
    methods: tuple[MfaMethod, ...] = MFA_METHODS


class MfaService:
    def __init__(self, session: AsyncSession, secret_key: str, issuer: str = "authgate") -> None:
        self._db = session
        self._fernet = _fernet(secret_key)
        self._issuer = issuer
        self._audit = AuditLog(session)

    async def _credential(self, user_id: uuid.UUID, *, lock: bool = False) -> TotpCredential | None:
        stmt = (
            select(TotpCredential)
            .options(undefer(TotpCredential.secret_encrypted))
            .where(TotpCredential.user_id == user_id)
        )
        if lock:
            stmt = stmt.with_for_update()
        return await self._db.scalar(stmt)

    async def setup(self, user: User) -> TotpSetup:
        """Start (or restart) TOTP set-up with a new secret; it takes effect once a code confirms it."""
        if user.mfa_enabled:
            raise MfaStateError("MFA is already on; disable it first to set up a new authenticator")
        secret = pyotp.random_base32()
        encrypted = self._fernet.encrypt(secret.encode()).decode()
        credential = await self._credential(user.id, lock=True)
        if credential is not None and credential.enabled_at is not None:  # enabled while we waited
            raise MfaStateError("MFA is already on; disable it first to set up a new authenticator")
        if credential is None:
            self._db.add(TotpCredential(user_id=user.id, secret_encrypted=encrypted))
        else:
            credential.secret_encrypted, credential.enabled_at, credential.last_used_step = (
                encrypted,
                None,
                None,
            )
            credential.created_at = utcnow()
        await self._db.flush()
        uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_PERIOD).provisioning_uri(
            name=user.email, issuer_name=self._issuer
        )
        svg = segno.make(uri, error="m").svg_inline(scale=4, title="TOTP QR code")
        return TotpSetup(secret=secret, otpauth_uri=uri, qr_svg=svg)

    async def enable(self, user: User, code: str) -> list[str]:
        """Confirm set-up with a current code; returns 10 new single-use recovery codes (shown once)."""
        credential = await self._credential(user.id, lock=True)
        if credential is None or credential.enabled_at is not None:
            raise MfaStateError("Start with POST /api/v1/auth/mfa/totp/setup")
        if not self._accept_totp(credential, code):
            raise CodeInvalidError("The code does not match; check the device's clock")
        credential.enabled_at = utcnow()
        user.mfa_enabled = True
        codes = await self._replace_recovery_codes(user.id)
        await self._audit.record(
            "mfa.enabled",
            actor=Actor.user(user.id),
            target_type="user",
            target_id=user.id,
            data={"method": "totp"},
        )
        return codes

    async def disable(self, user: User, code: str) -> None:
        """Turn MFA off after a valid TOTP or recovery code (the caller has checked the password)."""
        credential = await self._credential(user.id, lock=True)
        if credential is None or credential.enabled_at is None:
            raise MfaStateError("MFA is not on")
        if await self.verify_code(user.id, code, credential=credential) is None:
            raise CodeInvalidError()
        await self._db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        await self._db.delete(credential)
        user.mfa_enabled = False
        await self._db.flush()
        await self._audit.record(
            "mfa.disabled", actor=Actor.user(user.id), target_type="user", target_id=user.id
        )

    async def verify_code(
        self, user_id: uuid.UUID, code: str, *, credential: TotpCredential | None = None
    ) -> MfaMethod | None:
        """Accept a TOTP code (once per time step) or an unused recovery code (then spent), else None."""
        credential = credential or await self._credential(user_id, lock=True)
        if credential is None or credential.enabled_at is None:
            return None
        compact = code.strip().replace(" ", "")
        if compact.isdigit() and len(compact) == TOTP_DIGITS:
            return "totp" if self._accept_totp(credential, compact) else None
        spent = await self._db.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == hash_token(_normalize_recovery(code)),
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if spent.rowcount != 1:  # type: ignore[attr-defined]
            return None
        left = await self._db.scalar(
            select(RecoveryCode.id)
            .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            .limit(1)
        )
        await self._audit.record(
            "mfa.recovery_code.used",
            actor=Actor.user(user_id),
            target_type="user",
            target_id=user_id,
            data={"codes_left": left is not None},
        )
        return "recovery_code"

    def _accept_totp(self, credential: TotpCredential, code: str) -> bool:
        """Check a code at the current step ± drift; a step used before (or older) is refused: no replay."""
        code = code.strip().replace(" ", "")
        if not (code.isdigit() and len(code) == TOTP_DIGITS):
            return False
        totp = pyotp.TOTP(
            self._fernet.decrypt(credential.secret_encrypted.encode()).decode(),
            digits=TOTP_DIGITS,
            interval=TOTP_PERIOD,
        )
        now_step = int(time.time()) // TOTP_PERIOD
        for step in range(now_step - TOTP_DRIFT_STEPS, now_step + TOTP_DRIFT_STEPS + 1):
            if credential.last_used_step is not None and step <= credential.last_used_step:
                continue
            if secrets.compare_digest(totp.generate_otp(step), code):
                credential.last_used_step = step
                return True
        return False

    async def _replace_recovery_codes(self, user_id: uuid.UUID) -> list[str]:
        await self._db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
        self._db.add_all(
            RecoveryCode(user_id=user_id, code_hash=hash_token(_normalize_recovery(c))) for c in codes
        )
        await self._db.flush()
        return codes

    async def issue_challenge(self, user_id: uuid.UUID) -> MfaPending:
        """A 5-minute, single-use token naming the user who passed the password step."""
        raw = new_token()
        self._db.add(
            MfaChallenge(user_id=user_id, token_hash=hash_token(raw), expires_at=utcnow() + CHALLENGE_TTL)
        )
        await self._db.flush()
        return MfaPending(user_id=user_id, mfa_token=raw)

    async def open_challenge(self, raw: str) -> MfaChallenge:
        """The live challenge for `raw`, locked; wrong, expired and used tokens are one `mfa_invalid`."""
        challenge = await self._db.scalar(
            select(MfaChallenge).where(MfaChallenge.token_hash == hash_token(raw)).with_for_update()
        )
        if challenge is None or challenge.used_at is not None or challenge.expires_at <= utcnow():
            raise MfaInvalidError("The MFA token is invalid or expired; sign in again")
        return challenge
