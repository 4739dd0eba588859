"""Access-token verification against the usual attacks (SPEC §4: pinned algorithms, iss, aud, exp, nbf, sid)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from httpx import AsyncClient

from tests.factories import PASSWORD, assert_problem, bearer, login, register


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def _signed_in_claims(client: AsyncClient) -> tuple[str, dict[str, Any], dict[str, Any]]:
    user = await register(client)
    tokens = await login(client, user["email"])
    client.cookies.clear()
    token = tokens["access_token"]
    return token, jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def _sign(app: FastAPI, claims: dict[str, Any], header: dict[str, Any]) -> str:
    key = app.state.keyring.current
    return jwt.encode(claims, key.signing_key, algorithm=key.algorithm, headers=header)


async def _me(client: AsyncClient, token: str) -> Any:
    return await client.get("/api/v1/users/me", headers=bearer(token))


async def test_valid_token_has_the_documented_claims(client: AsyncClient, app: FastAPI) -> None:
    token, header, claims = await _signed_in_claims(client)
    assert (
        header["alg"] == "ES256"
        and header["typ"] == "at+jwt"
        and header["kid"] == app.state.keyring.current.kid
    )
    assert {"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "roles", "scope"} <= set(claims)
    assert claims["iss"] == "http://test" and claims["aud"] == "authgate"
    assert (await _me(client, token)).status_code == 200


async def test_alg_none_is_rejected(client: AsyncClient) -> None:
    _, header, claims = await _signed_in_claims(client)
    forged = f"{_b64(json.dumps({**header, 'alg': 'none'}).encode())}.{_b64(json.dumps(claims).encode())}."
    assert_problem(await _me(client, forged), 401, "token_invalid")


async def test_hs256_signed_with_the_public_key_is_rejected(client: AsyncClient, app: FastAPI) -> None:
    """The classic key-confusion attack: HMAC over the published public key."""
    _, header, claims = await _signed_in_claims(client)
    public_pem = app.state.keyring.current.verifying_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = (
        f"{_b64(json.dumps({**header, 'alg': 'HS256'}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    signature = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    assert_problem(await _me(client, f"{signing_input}.{_b64(signature)}"), 401, "token_invalid")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"iss": "https://evil.example"}, "token_invalid"),
        ({"aud": "another-service"}, "token_invalid"),
        ({"exp": int(time.time()) - 60}, "token_expired"),
        ({"nbf": int(time.time()) + 600}, "token_invalid"),
        ({"sub": "not-a-uuid"}, "token_invalid"),
        ({"sid": "00000000-0000-7000-8000-000000000000"}, "token_invalid"),
        # Signed by the real key but of the wrong JSON type: a 401, never a 500.
        ({"sid": 123}, "token_invalid"),
        ({"sid": ["a"]}, "token_invalid"),
        ({"sub": {"id": 1}}, "token_invalid"),
        ({"jti": 7}, "token_invalid"),
    ],
)
async def test_claims_are_checked(
    client: AsyncClient, app: FastAPI, change: dict[str, Any], code: str
) -> None:
    _, header, claims = await _signed_in_claims(client)
    assert_problem(await _me(client, _sign(app, {**claims, **change}, header)), 401, code)


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "sid", "sub", "jti"])
async def test_missing_required_claim(client: AsyncClient, app: FastAPI, claim: str) -> None:
    _, header, claims = await _signed_in_claims(client)
    claims.pop(claim)
    assert_problem(await _me(client, _sign(app, claims, header)), 401, "token_invalid")


async def test_tampered_signature_and_payload(client: AsyncClient) -> None:
    token, _, claims = await _signed_in_claims(client)
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    assert_problem(await _me(client, f"{head}.{payload}.{flipped}"), 401, "token_invalid")
    other = _b64(json.dumps({**claims, "roles": ["admin"]}).encode())
    assert_problem(await _me(client, f"{head}.{other}.{signature}"), 401, "token_invalid")


async def test_unknown_kid_and_wrong_type(client: AsyncClient, app: FastAPI) -> None:
    _, header, claims = await _signed_in_claims(client)
    assert_problem(await _me(client, _sign(app, claims, {**header, "kid": "nope"})), 401, "token_invalid")
    assert_problem(await _me(client, _sign(app, claims, {**header, "typ": "JWT"})), 401, "token_invalid")


@pytest.mark.parametrize("garbage", ["abc", "a.b.c", "Bearer", "ag_", "a.b.c.d", "e30.e30.e30"])
async def test_garbage_tokens(client: AsyncClient, garbage: str) -> None:
    response = await _me(client, garbage)
    assert response.status_code == 401
    assert response.json()["code"] == "token_invalid"


async def test_revoked_session_token_is_refused(client: AsyncClient) -> None:
    token, _, _ = await _signed_in_claims(client)
    assert (await client.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
    assert_problem(await _me(client, token), 401, "session_revoked")


async def test_jwks_verifies_issued_tokens(client: AsyncClient) -> None:
    token, header, _ = await _signed_in_claims(client)
    keys = (await client.get("/.well-known/jwks.json")).json()["keys"]
    jwk = next(k for k in keys if k["kid"] == header["kid"])
    assert "d" not in jwk  # never the private half
    public = jwt.PyJWK(jwk)
    claims = jwt.decode(token, public.key, algorithms=["ES256"], audience="authgate", issuer="http://test")
    assert claims["sub"]


async def test_rotated_key_keeps_old_tokens_valid_and_signs_new_ones(
    client: AsyncClient, app: FastAPI, sessionmaker: Any, settings: Any
) -> None:
    from authgate.security.keys import rotate

    old_token, old_header, _ = await _signed_in_claims(client)
    new_kid = await rotate(sessionmaker, settings.secret(), "ES256", settings.access_token_ttl)
    await app.state.keyring.load(sessionmaker, create=False)
    assert app.state.keyring.current.kid == new_kid != old_header["kid"]
    assert (await _me(client, old_token)).status_code == 200
    kids = {k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]}
    assert {new_kid, old_header["kid"]} <= kids
    new_token, new_header, _ = await _signed_in_claims(client)
    assert new_header["kid"] == new_kid and (await _me(client, new_token)).status_code == 200


async def test_a_rotation_elsewhere_shows_in_the_jwks_and_signs_at_once(
    client: AsyncClient, app: FastAPI, sessionmaker: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`authgate keys rotate` runs in another process: no reload by hand, no waiting for the watcher."""
    from authgate.security.keys import KeyRing, rotate

    old_token, old_header, _ = await _signed_in_claims(client)
    new_kid = await rotate(sessionmaker, settings.secret(), "ES256", settings.access_token_ttl)
    monkeypatch.setattr(KeyRing, "FRESHNESS_SECONDS", 0.0)  # the sign-in just above looked a moment ago

    kids = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]
    assert kids == [old_header["kid"], new_kid]  # the retired key stays until its tokens expire
    new_token, new_header, _ = await _signed_in_claims(client)
    assert new_header["kid"] == new_kid
    assert (await _me(client, new_token)).status_code == 200
    assert (await _me(client, old_token)).status_code == 200


async def test_a_recent_look_at_the_keys_is_not_repeated(
    app: FastAPI, db: Any, sessionmaker: Any, settings: Any
) -> None:
    from authgate.security.keys import rotate

    ring = app.state.keyring
    await ring.refresh(db, max_age=0)
    before = ring.current.kid
    new_kid = await rotate(sessionmaker, settings.secret(), "ES256", settings.access_token_ttl)
    await ring.refresh(db, max_age=3600)  # looked a moment ago: no query, the old key signs on
    assert ring.current.kid == before
    await ring.refresh(db, max_age=0)
    assert ring.current.kid == new_kid


async def test_the_jwks_serves_the_keys_it_holds_when_the_database_is_down(
    client: AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from authgate.security.keys import KeyRing

    held = [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]

    def down() -> None:
        raise ConnectionError("database down")

    monkeypatch.setattr(KeyRing, "FRESHNESS_SECONDS", 0.0)
    monkeypatch.setattr(app.state, "sessionmaker", down)
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert [k["kid"] for k in response.json()["keys"]] == held


async def test_key_ring_watcher_picks_up_a_rotation(app: FastAPI, sessionmaker: Any, settings: Any) -> None:
    import asyncio
    import contextlib

    from authgate.security.keys import rotate

    ring = app.state.keyring
    new_kid = await rotate(sessionmaker, settings.secret(), "ES256", settings.access_token_ttl)
    assert ring.current.kid != new_kid
    watcher = asyncio.create_task(ring.watch(sessionmaker, interval=0.01))
    for _ in range(200):
        if ring.current.kid == new_kid:
            break
        await asyncio.sleep(0.01)
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    assert ring.current.kid == new_kid


# --- the verified-token cache --------------------------------------------------------------------


async def test_a_token_is_verified_once_per_process(
    client: AsyncClient, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, _, _ = await _signed_in_claims(client)
    tokens = app.state.tokens
    calls = 0
    real_decode = jwt.decode

    def counting_decode(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return real_decode(*args, **kwargs)

    monkeypatch.setattr("authgate.security.tokens.jwt.decode", counting_decode)
    first = await tokens.decode_access(token)
    assert await tokens.decode_access(token) == first
    assert (await _me(client, token)).status_code == 200
    assert calls <= 1  # 0 when the login's own requests already verified it


async def test_forged_tokens_are_never_remembered(client: AsyncClient, app: FastAPI) -> None:
    token, _, claims = await _signed_in_claims(client)
    head, _, signature = token.split(".")
    tampered = f"{head}.{_b64(json.dumps({**claims, 'sub': claims['sid']}).encode())}.{signature}"
    assert_problem(await _me(client, tampered), 401, "token_invalid")
    assert_problem(await _me(client, tampered), 401, "token_invalid")
    assert tampered not in app.state.tokens._verified


async def test_a_remembered_token_fails_once_its_key_leaves_the_ring(
    client: AsyncClient, app: FastAPI
) -> None:
    token, _, _ = await _signed_in_claims(client)
    assert (await _me(client, token)).status_code == 200  # verified and remembered
    ring = app.state.keyring
    ring.keys = {}  # as after a reload that no longer finds the key (retired and expired)
    ring._loaded_at = time.monotonic()  # and no reload for a while (the throttle)
    assert_problem(await _me(client, token), 401, "token_invalid")
    assert token not in app.state.tokens._verified


async def test_a_remembered_token_expires_on_time(client: AsyncClient, app: FastAPI) -> None:
    token, _, _ = await _signed_in_claims(client)
    tokens = app.state.tokens
    claims = await tokens.decode_access(token)
    kid = tokens._verified[token][0]
    stale = dataclasses.replace(claims, expires_at=int(time.time()) - 60)
    tokens._verified[token] = (kid, stale)
    # The stale entry is not trusted: the token is verified again (it is still valid in truth).
    assert (await tokens.decode_access(token)).expires_at == claims.expires_at
    assert tokens._verified[token][1].expires_at == claims.expires_at


async def test_the_private_half_of_a_signing_key_is_stored_encrypted_with_the_secret(
    client: AsyncClient, db: Any, settings: Any
) -> None:
    """SPEC §4: keys live in the database, private halves encrypted with SECRET_KEY."""
    from cryptography.fernet import InvalidToken
    from sqlalchemy import select
    from sqlalchemy.orm import undefer

    from authgate.security.keys import SigningKey, _fernet

    token, header, claims = await _signed_in_claims(client)
    row = await db.scalar(
        select(SigningKey)
        .where(SigningKey.id == header["kid"])
        .options(undefer(SigningKey.private_key_encrypted))
    )
    assert row is not None and row.algorithm == "ES256"
    stored = row.private_key_encrypted
    # Not a PEM, and no PEM inside its base64 either.
    assert "BEGIN" not in stored and "PRIVATE" not in stored
    assert b"PRIVATE KEY" not in base64.urlsafe_b64decode(stored + "=" * (-len(stored) % 4))
    # The right secret opens it, and what it holds is the key that signed the token ...
    pem = _fernet(settings.secret_key.get_secret_value()).decrypt(stored.encode())
    private = serialization.load_pem_private_key(pem, password=None)
    verified = jwt.decode(token, private.public_key(), algorithms=["ES256"], audience=claims["aud"])  # type: ignore[arg-type]
    assert verified["sub"] == claims["sub"]
    # ... another secret does not.
    with pytest.raises(InvalidToken):
        _fernet("another-secret-key-that-is-long-enough-987654").decrypt(stored.encode())


async def test_a_changed_secret_keeps_tokens_verifying_and_signs_after_a_rotation(
    client: AsyncClient, app: FastAPI, sessionmaker: Any, settings: Any
) -> None:
    """docs/operations.md: set a new SECRET_KEY, then `keys rotate`. Keys the new secret cannot open
    verify from their public halves; a process still on the old secret verifies but signs nothing."""
    from authgate.security.keys import KeyRing, UnreadableKeysError, rotate

    new_secret = "a-new-secret-key-that-is-long-enough-0123456789"
    old_token, old_header, claims = await _signed_in_claims(client)
    changed = KeyRing(new_secret, "ES256")
    with pytest.raises(UnreadableKeysError, match="keys rotate"):  # nothing it could sign with
        await changed.load(sessionmaker)
    assert changed.current is None and old_header["kid"] in changed.keys  # but it verifies
    old = changed.keys[old_header["kid"]]
    assert old.signing_key is None
    assert (
        jwt.decode(old_token, old.verifying_key, algorithms=["ES256"], audience=claims["aud"])["sub"]
        == claims["sub"]
    )

    new_kid = await rotate(sessionmaker, new_secret, "ES256", settings.access_token_ttl)
    await changed.load(sessionmaker)  # the process started on the new secret
    assert changed.current is not None and changed.current.kid == new_kid
    await app.state.keyring.load(sessionmaker, create=False)  # a process left on the old secret
    assert app.state.keyring.current is None  # a retired key never signs
    assert (await _me(client, old_token)).status_code == 200  # it still verifies
    user = await register(client)
    refused = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert_problem(refused, 503, "signing_unavailable")
