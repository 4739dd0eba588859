"""Opaque secrets handed out once: refresh tokens, emailed links, invitation and MFA tokens, API
key secrets, recovery codes. Random and URL-safe; stored only as their SHA-256, which is enough
for values with this much entropy (a slow password hash would add cost and nothing else)."""

from __future__ import annotations

import hashlib
import secrets

TOKEN_BYTES = 32  # 256 bits


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    return secrets.token_urlsafe(nbytes)


def hash_token(raw: str) -> str:
    """The stored form of a token: its SHA-256, hex (64 characters), looked up by equality."""
    return hashlib.sha256(raw.encode()).hexdigest()
