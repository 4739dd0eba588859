"""The ceiling: a bare FastAPI endpoint that only verifies an ES256 JWT with PyJWT.

No database, no middleware: what one uvicorn worker can do at most for a request that
carries a bearer token. The bench script passes the public key's PEM file in
`BENCH_CEILING_PUBLIC_KEY` and signs the tokens with the private half.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import FastAPI, Header, HTTPException

ISSUER = "http://bench.example"
AUDIENCE = "bench"
PUBLIC_KEY = load_pem_public_key(Path(os.environ["BENCH_CEILING_PUBLIC_KEY"]).read_bytes())

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
