"""Signing keys: stored in the database with the private half encrypted, cached in a key ring."""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from sqlalchemy import JSON, ColumnElement, String, Text, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column, undefer

from authgate.db import Base, read_intent, utcnow

log = structlog.get_logger("authgate.keys")
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


class SigningKey(Base):
    __tablename__ = "signing_key"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the JWT `kid`
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # None for HS256 (nothing to publish)
    private_key_encrypted: Mapped[str] = mapped_column(Text, deferred=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]  # None: the current signing key
    expires_at: Mapped[datetime | None]  # retired keys verify (and stay in the JWKS) until then


def _fernet(secret: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"authgate signing keys").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def _generate(algorithm: str) -> tuple[bytes, dict[str, Any] | None]:
    """A new key as (private material, public JWK)."""
    if algorithm == "HS256":
        return secrets.token_bytes(64), None
    private: PrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif algorithm == "RS256":
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, jwk


def _public_from_jwk(algorithm: str, jwk: dict[str, Any]) -> Any:
    """The public key a stored JWK describes (it has no private members)."""
    if algorithm == "ES256":
        return ECAlgorithm.from_jwk(jwk)
    if algorithm == "RS256":
        return RSAAlgorithm.from_jwk(jwk)
    return OKPAlgorithm.from_jwk(jwk)


def _load_private(algorithm: str, material: bytes) -> Any:
    if algorithm == "HS256":
        return material
    return serialization.load_pem_private_key(material, password=None)


@dataclass(frozen=True, slots=True)
class LoadedKey:
    kid: str
    algorithm: str
    signing_key: Any  # private key object or HMAC secret; None when this SECRET_KEY cannot open it
    verifying_key: Any  # public key object or HMAC secret


class UnreadableKeysError(RuntimeError):
    """Signing keys exist, but this process's SECRET_KEY opens none of them."""

    def __init__(self) -> None:
        super().__init__(
            "no signing key opens with this AUTHGATE_SECRET_KEY (was it changed?): run "
            "`authgate keys rotate` with it, then start again"
        )


class KeyRing:
    """The process's cached view of the signing keys.

    Another process (`authgate keys rotate`, another API worker) may change the keys at any time.
    This one notices when it meets an unknown `kid`, when it serves the JWKS or is about to sign
    (each at most once a `FRESHNESS_SECONDS`), and every minute in `watch`. Each look is one small
    query of the key ids; the keys are decrypted again only when they changed, by one coroutine.
    """

    RELOAD_THROTTLE_SECONDS = 5.0
    FRESHNESS_SECONDS = 1.0

    def __init__(self, secret: str, algorithm: str) -> None:
        self._fernet = _fernet(secret)
        self.algorithm = algorithm
        self.current: LoadedKey | None = None
        self.keys: dict[str, LoadedKey] = {}
        self.unreadable = 0  # keys this SECRET_KEY cannot open (they only verify)
        self.has_current = False  # whether a current key for `algorithm` exists, readable or not
        self.jwks: dict[str, Any] = {"keys": []}
        self._loaded_at = self._checked_at = 0.0
        self._fingerprint: frozenset[tuple[str, bool]] = frozenset()
        self._reloading = asyncio.Lock()

    async def load(self, factory: async_sessionmaker[AsyncSession], *, create: bool = True) -> None:
        """Read every usable key; create the first one (for the configured algorithm) if none exists."""
        async with factory() as session, session.begin():
            rows = await _usable_keys(session)
            if create and not any(r.retired_at is None and r.algorithm == self.algorithm for r in rows):
                await rotate_keys(session, self._fernet, self.algorithm, retire_after=None)
                rows = await _usable_keys(session)
        self._install(rows)
        if create:
            self.require_signing()

    def require_signing(self) -> None:
        """Refuse to serve when the current key exists but this process cannot open it (with none
        at all, `load` makes one)."""
        if self.current is None and self.has_current:
            raise UnreadableKeysError()

    def _install(self, rows: list[SigningKey]) -> None:
        """Load `rows` (oldest first). A key this process's `SECRET_KEY` cannot open (the secret was
        changed, here or elsewhere) still verifies from its public half; it cannot sign. A process
        left on the old secret after a rotation therefore verifies but signs nothing (503) until it
        is restarted with the new one: a retired key, possibly retired for a reason, never signs."""
        keys: dict[str, LoadedKey] = {}
        current: LoadedKey | None = None
        self.has_current = False
        self.unreadable = 0
        for row in rows:
            private = self._open(row)
            self.unreadable += private is None
            if private is not None:
                public = private if row.algorithm == "HS256" else private.public_key()
            elif row.public_jwk is not None:
                public = _public_from_jwk(row.algorithm, row.public_jwk)
            else:  # HS256: the secret is the only way to verify
                continue
            loaded = LoadedKey(row.id, row.algorithm, private, public)
            keys[row.id] = loaded
            if row.retired_at is None and row.algorithm == self.algorithm:
                self.has_current = True
                if private is not None:
                    current = loaded
        self.keys, self.current = keys, current
        self._fingerprint = frozenset((row.id, row.retired_at is None) for row in rows)
        self.jwks = {
            "keys": [
                {**row.public_jwk, "kid": row.id, "alg": row.algorithm, "use": "sig"}
                for row in rows
                if row.public_jwk is not None
            ]
        }
        self._loaded_at = self._checked_at = time.monotonic()

    def _open(self, row: SigningKey) -> Any:
        """The private key, or None when this `SECRET_KEY` cannot decrypt it."""
        try:
            material = self._fernet.decrypt(row.private_key_encrypted.encode())
        except InvalidToken:
            log.warning(
                "signing_key_unreadable", kid=row.id, hint="encrypted under another AUTHGATE_SECRET_KEY"
            )
            return None
        return _load_private(row.algorithm, material)

    def _looked_within(self, max_age: float | None) -> bool:
        max_age = self.FRESHNESS_SECONDS if max_age is None else max_age
        return time.monotonic() - self._checked_at < max_age

    async def refresh(self, session: AsyncSession, *, max_age: float | None = None) -> None:
        """Reload if the keys changed since the last look, looking at most once a `max_age` seconds
        (default `FRESHNESS_SECONDS`; 0 looks every time). `session` is only read."""
        if self._looked_within(max_age):
            return
        self._checked_at = time.monotonic()
        # On the caller's session and in its transaction (a sign-in's writes share it): no second
        # connection, and the transaction begins as the request's own would (SQLite write intent).
        rows = (
            await session.execute(select(SigningKey.id, SigningKey.retired_at.is_(None)).where(_usable()))
        ).all()
        found = frozenset((kid, current) for kid, current in rows)
        if found != self._fingerprint:
            async with self._reloading:  # one reload however many requests noticed the change
                if found != self._fingerprint:
                    self._install(await _usable_keys(session))

    async def refresh_from(
        self, factory: async_sessionmaker[AsyncSession], *, max_age: float | None = None
    ) -> None:
        """`refresh` on a short session of its own (the JWKS, the watcher); none is opened when the
        last look is recent enough."""
        if self._looked_within(max_age):
            return
        async with factory() as session:
            await self.refresh(session, max_age=max_age)

    async def watch(self, factory: async_sessionmaker[AsyncSession], interval: float = 60.0) -> None:
        """Reload periodically, so a `keys rotate` elsewhere is signed with here without a restart."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh_from(factory, max_age=0)
            except Exception:  # a database hiccup must not end the watcher; the old keys still work
                log.warning("key_reload_failed", exc_info=True)

    async def find(self, kid: str, factory: async_sessionmaker[AsyncSession]) -> LoadedKey | None:
        """The key for `kid`, reloading once (throttled) in case another process rotated."""
        key = self.keys.get(kid)
        if key is None and time.monotonic() - self._loaded_at > self.RELOAD_THROTTLE_SECONDS:
            with read_intent():  # a read, even inside a POST that may hold the write lock later
                await self.load(factory, create=False)
            key = self.keys.get(kid)
        return key


def _usable() -> ColumnElement[bool]:
    return or_(SigningKey.expires_at.is_(None), SigningKey.expires_at > utcnow())


async def _usable_keys(session: AsyncSession) -> list[SigningKey]:
    stmt = (
        select(SigningKey)
        .options(undefer(SigningKey.private_key_encrypted))
        .where(_usable())
        .order_by(SigningKey.created_at)
    )
    return list((await session.scalars(stmt)).all())


async def rotate_keys(
    session: AsyncSession, fernet: Fernet, algorithm: str, *, retire_after: timedelta | None
) -> SigningKey:
    """Create a new current key; the old ones keep verifying for `retire_after` (the access TTL)."""
    now = utcnow()
    for old in (await session.scalars(select(SigningKey).where(SigningKey.retired_at.is_(None)))).all():
        old.retired_at = now
        old.expires_at = now + (retire_after or timedelta(0))
    material, jwk = _generate(algorithm)
    key = SigningKey(
        id=secrets.token_urlsafe(12),
        algorithm=algorithm,
        public_jwk=jwk,
        private_key_encrypted=fernet.encrypt(material).decode(),
        created_at=now,
    )
    session.add(key)
    await session.flush()
    return key


async def rotate(
    factory: async_sessionmaker[AsyncSession], secret: str, algorithm: str, ttl: timedelta
) -> str:
    """CLI entry: rotate and return the new `kid`; retired keys stay published for one access TTL."""
    async with factory() as session, session.begin():
        key = await rotate_keys(session, _fernet(secret), algorithm, retire_after=ttl + timedelta(minutes=1))
        return key.id
