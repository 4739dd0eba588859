"""Operations and integration endpoints: health, readiness, metrics, JWKS, discovery, feature flags."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from authgate.deps import SettingsDep
from authgate.ops.metrics import DB_POOL_CHECKED_OUT, render
from authgate.outbox.service import refresh_outbox_gauge
from authgate.schemas import APIModel
from authgate.security.keys import KeyRing

router = APIRouter(tags=["operations"])
log = structlog.get_logger("authgate.ops")


class HealthRead(APIModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


@router.get("/health")
async def health() -> HealthRead:
    """Liveness for load balancers: the process answers."""
    return HealthRead(status="ok")


@router.get("/live")
async def live() -> HealthRead:
    """Liveness probe (Kubernetes style): the process answers."""
    return HealthRead(status="ok")


@router.get("/ready", responses={503: {"description": "A dependency is down; `checks` names which"}})
async def ready(request: Request) -> JSONResponse:
    """Readiness: the database (and Redis when configured) answer. 503 names the failing dependency.

    The database check reads a table, not `SELECT 1`: a SQLite file that is damaged, or a database
    whose tables are gone, accepts connections but cannot serve.
    """
    checks: dict[str, str] = {}
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT version_num FROM alembic_version"))
        checks["database"] = "ok"
    except Exception as exc:  # any driver error means not ready
        checks["database"] = f"down: {type(exc).__name__}"
    redis = request.app.state.redis
    if redis is not None:
        try:
            await redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"down: {type(exc).__name__}"
    failed = [name for name, state in checks.items() if state != "ok"]
    body = {"status": "ok" if not failed else "unavailable", "checks": checks}
    if failed:
        body["detail"] = f"not ready: {', '.join(failed)} down"
    return JSONResponse(body, status_code=503 if failed else 200)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})
async def metrics(request: Request) -> Response:
    """Prometheus metrics. Bind or restrict this endpoint in production."""
    await refresh_outbox_gauge(request.app.state.sessionmaker)
    pool = request.app.state.engine.pool
    if isinstance(pool, QueuePool):  # not the single connection some tests run on
        DB_POOL_CHECKED_OUT.set(pool.checkedout())
    return Response(render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@router.get("/.well-known/jwks.json")
async def jwks(request: Request) -> JSONResponse:
    """The public keys that verify access tokens, including retired keys until their tokens expire.

    A `keys rotate` run elsewhere shows here within a second. When the database cannot be asked,
    the keys this process holds are served.
    """
    ring: KeyRing = request.app.state.keyring
    try:
        await ring.refresh_from(request.app.state.sessionmaker)
    except Exception:  # resource servers keep verifying with what this process knows
        log.warning("jwks_refresh_failed", exc_info=True)
    return JSONResponse(ring.jwks, headers={"Cache-Control": "public, max-age=300"})


@router.get("/.well-known/openid-configuration")
async def openid_configuration(settings: SettingsDep) -> dict[str, Any]:
    """Discovery document: issuer, token endpoint, JWKS location and supported algorithms."""
    base = settings.public_url.rstrip("/")
    return {
        "issuer": settings.token_issuer,
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "token_endpoint": f"{base}/api/v1/auth/token",
        "introspection_endpoint": f"{base}/api/v1/auth/introspect",
        "userinfo_endpoint": f"{base}/api/v1/users/me",
        "grant_types_supported": ["password", "refresh_token"],
        "response_types_supported": ["token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [settings.jwt_algorithm],
        "token_endpoint_auth_methods_supported": ["none"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "sid", "roles", "scope"],
    }


@router.get("/api/v1/features", tags=["features"])
async def features(settings: SettingsDep) -> dict[str, bool]:
    """Feature flags clients may read (`AUTHGATE_FEATURES__<NAME>`)."""
    return settings.features.model_dump()
