"""Bearer values that are not well-formed JWTs answer 401 token_invalid, never a 500."""

from __future__ import annotations

import base64
import json

import pytest
from httpx import AsyncClient

from tests.factories import assert_problem, bearer, signed_in

NESTED_ARRAY = b"[" * 3000 + b"]" * 3000
NESTED_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000


def _raw_segment(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: object) -> str:
    return _raw_segment(json.dumps(value).encode())


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        "a.b.c",
        "!!!.e30.sig",
        f"{_segment([1, 2])}.e30.sig",
        f"{_segment('text')}.e30.sig",
        f"{_segment({'alg': 'ES256', 'typ': 'at+jwt'})}.e30.sig",
        f"{_segment({'alg': 'ES256', 'typ': 'at+jwt', 'kid': 'unknown'})}.e30.sig",
        # A header nested deeper than the JSON parser recurses
        f"{_raw_segment(NESTED_ARRAY)}.e30.sig",
        f"{_raw_segment(NESTED_OBJECT)}.e30.sig",
    ],
)
async def test_malformed_bearer_is_token_invalid(client: AsyncClient, token: str) -> None:
    assert_problem(await client.get("/api/v1/users/me", headers=bearer(token)), 401, "token_invalid")


async def test_token_with_junk_in_its_header_segment_is_refused(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    token = headers["Authorization"].removeprefix("Bearer ")
    head, rest = token.split(".", 1)
    assert (await client.get("/api/v1/users/me", headers=headers)).status_code == 200
    # A lenient base64 reader would skip the "!" and still find the kid; the strict check refuses it.
    tampered = bearer(f"{head[:4]}!{head[4:]}.{rest}")
    assert_problem(await client.get("/api/v1/users/me", headers=tampered), 401, "token_invalid")


async def test_deeply_nested_header_on_cookie_and_forward_auth(client: AsyncClient) -> None:
    token = f"{_raw_segment(NESTED_ARRAY)}.e30.sig"
    assert_problem(await client.get("/api/v1/auth/verify", headers=bearer(token)), 401, "token_invalid")
    client.cookies.set("authgate_access", token)
    assert_problem(await client.get("/api/v1/auth/me"), 401, "token_invalid")
