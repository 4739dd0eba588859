"""Access tokens: JWTs signed with the key ring's current key, verified with pinned algorithms."""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import jwt
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from authgate.db import utcnow
from authgate.errors import SigningUnavailableError, TokenExpiredError, TokenInvalidError
from authgate.security.keys import KeyRing

LEEWAY_SECONDS = 5
# Verified tokens remembered per process, so a client's next requests with the same token skip the
# signature check (PyJWT's segment checks in Python plus ECDSA: about a quarter of an authenticated
# read). Only tokens that passed `jwt.decode` go in; the session is still checked on every request.
VERIFIED_CACHE_SIZE = 4096
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT `typ`, not a secret; RFC 9068: the header names the token's one purpose
_REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid"]


def _unverified_header(token: str) -> dict[str, Any]:
    """The header only, to pick the key: `jwt.decode` below checks every segment strictly.

    `jwt.get_unverified_header` would decode and validate all three segments character by
    character in Python, only for `jwt.decode` to do it again.
    """
    try:
        segment = token[: token.index(".")]
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, binascii.Error, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise TokenInvalidError("Malformed token") from exc
    if not isinstance(header, dict):
        raise TokenInvalidError("Malformed token")
    return header


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    jti: str
    expires_at: int
    scope: str
    raw: dict[str, Any]


class TokenService:
    def __init__(
        self,
        ring: KeyRing,
        factory: async_sessionmaker[AsyncSession],
        *,
        issuer: str,
        audience: str,
        ttl: timedelta,
    ) -> None:
        self._ring, self._factory = ring, factory
        self.issuer, self.audience, self.ttl = issuer, audience, ttl
        self._verified: OrderedDict[str, tuple[str, AccessClaims]] = OrderedDict()  # token -> (kid, claims)

    async def refresh_keys(self, session: AsyncSession) -> None:
        """Pick up keys rotated by another process (a key-id query at most once a second)."""
        await self._ring.refresh(session)

    def issue_access(self, user_id: uuid.UUID, session_id: uuid.UUID, roles: list[str], scope: str) -> str:
        key = self._ring.current
        if key is None:
            raise SigningUnavailableError(
                "This process cannot open the current signing key; restart it with the current AUTHGATE_SECRET_KEY"
            )
        now = utcnow()
        claims = {
            "iss": self.issuer,
            "sub": str(user_id),
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + self.ttl,
            "jti": uuid.uuid4().hex,
            "sid": str(session_id),
            "roles": roles,
            "scope": scope,
        }
        headers = {"kid": key.kid, "typ": ACCESS_TOKEN_TYPE}
        return jwt.encode(claims, key.signing_key, algorithm=key.algorithm, headers=headers)

    async def decode_access(self, token: str) -> AccessClaims:
        """Verify signature (algorithm pinned to the key's own), type, iss, aud, exp and nbf.

        A token verified before is answered from memory while it has not expired and its key is
        still in the ring (a key that was retired and expired drops out at the next reload).
        """
        cached = self._verified.get(token)
        if cached is not None:
            cached_kid, known = cached
            if cached_kid in self._ring.keys and time.time() <= known.expires_at + LEEWAY_SECONDS:
                return known
            del self._verified[token]
        header = _unverified_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("typ") != ACCESS_TOKEN_TYPE:
            raise TokenInvalidError("Not an access token")
        key = await self._ring.find(kid, self._factory)
        if key is None:
            raise TokenInvalidError("Unknown signing key")
        try:
            claims = jwt.decode(
                token,
                key.verifying_key,
                algorithms=[key.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED_CLAIMS},
                leeway=LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpiredError() from exc
        except (jwt.PyJWTError, RecursionError) as exc:
            raise TokenInvalidError() from exc
        sub, sid, jti = claims["sub"], claims["sid"], claims["jti"]
        if not (isinstance(sub, str) and isinstance(sid, str) and isinstance(jti, str)):
            raise TokenInvalidError()
        try:
            verified = AccessClaims(
                user_id=uuid.UUID(sub),
                session_id=uuid.UUID(sid),
                jti=jti,
                expires_at=int(claims["exp"]),
                scope=str(claims.get("scope", "")),
                raw=claims,
            )
        except (ValueError, TypeError) as exc:
            raise TokenInvalidError() from exc
        self._verified[token] = (kid, verified)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)  # the oldest first
        return verified
