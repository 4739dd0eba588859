"""The ceilings: bare FastAPI endpoints that do only the unavoidable work.

* `GET /api/v1/users/me` verifies an ES256 JWT with PyJWT: what one uvicorn worker can do at most
  for a request that carries a bearer token. The bench script passes the public key's PEM file in
  `BENCH_CEILING_PUBLIC_KEY` and signs the tokens with the private half.
* `POST /api/v1/auth/login` verifies the password against one Argon2id hash at authgate's default
  parameters, in a worker thread (one per core, as authgate does), and signs an ES256 JWT: what a
  sign-in costs at the least on this machine, with HTTP and the load generator included.

No database, no middleware.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import anyio
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import FastAPI, Header, HTTPException
from pwdlib.hashers.argon2 import Argon2Hasher
from pydantic import BaseModel

from authgate.config import PasswordPolicy

ISSUER = "http://bench.example"
AUDIENCE = "bench"
PUBLIC_KEY = load_pem_public_key(Path(os.environ["BENCH_CEILING_PUBLIC_KEY"]).read_bytes())
_policy = PasswordPolicy()
HASHER = Argon2Hasher(
    memory_cost=_policy.argon2_memory_cost,
    time_cost=_policy.argon2_time_cost,
    parallelism=_policy.argon2_parallelism,
)
DIGEST = HASHER.hash(os.environ.get("BENCH_PASSWORD", "Bench-horse-battery-staple-2026"))
SIGNING_KEY = ec.generate_private_key(ec.SECP256R1())
HASH_THREADS = anyio.CapacityLimiter(os.cpu_count() or 1)

app = FastAPI()


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/v1/users/me")
async def me(authorization: Annotated[str, Header()]) -> dict[str, str]:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise HTTPException(401)
    try:
        claims = jwt.decode(
            token,
            PUBLIC_KEY,  # type: ignore[arg-type]
            algorithms=["ES256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["iss", "sub", "aud", "exp", "iat", "nbf"]},
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401) from exc
    return {"sub": str(claims["sub"])}


class Credentials(BaseModel):
    email: str
    password: str


@app.post("/api/v1/auth/login")
async def login(body: Credentials) -> dict[str, str]:
    async with HASH_THREADS:
        valid = await anyio.to_thread.run_sync(HASHER.verify, body.password, DIGEST)
    if not valid:
        raise HTTPException(401)
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": body.email,
        "iat": now,
        "exp": now + timedelta(minutes=15),
    }
    return {"access_token": jwt.encode(claims, SIGNING_KEY, algorithm="ES256"), "token_type": "bearer"}
