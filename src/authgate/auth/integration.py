"""How other services check authgate's tokens: RFC 7662 introspection and forward-auth."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request, Response

from authgate.auth.dependencies import (
    AUTH_PROBLEMS,
    Principal,
    api_key_scheme,
    bearer_scheme,
    get_principal,
    require_permission,
)
from authgate.auth.service import AccessReader
from authgate.deps import TokenServiceDep
from authgate.errors import (
    AccountDisabledError,
    AuthgateError,
    CSRFError,
    ForwardAuthDisabledError,
    InvalidInputError,
    PermissionDeniedError,
    problem_schema,
)
from authgate.schemas import APIModel

router = APIRouter(prefix="/api/v1/auth", tags=["integration"])

IntrospectorDep = Annotated[Principal, Depends(require_permission("tokens:introspect"))]

# Printable ASCII but `%`: what a header value carries as it is (header values are bytes, and an
# address may be internationalised, RFC 6531).
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


class IntrospectionRead(APIModel):
    """RFC 7662 §2.2; only `active` is present for an inactive token."""

    active: bool
    sub: str | None = None
    exp: int | None = None
    iat: int | None = None
    iss: str | None = None
    aud: str | None = None
    jti: str | None = None
    sid: str | None = None
    scope: str | None = None
    username: str | None = None
    email: str | None = None
    roles: list[str] | None = None
    token_type: str | None = None


class ForwardAuthRead(APIModel):
    user_id: str
    email: str
    roles: list[str]


@router.post(
    "/introspect",
    response_model_exclude_none=True,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, InvalidInputError),
)
async def introspect(
    _: IntrospectorDep,
    request: Request,
    tokens: TokenServiceDep,
    token: Annotated[str | None, Form(max_length=8192, description="The access token to check")] = None,
    token_type_hint: Annotated[str | None, Form(max_length=32)] = None,
) -> IntrospectionRead:
    """RFC 7662 token introspection (form body `token=...`) for services holding `tokens:introspect`.

    Call it with an API key (`X-API-Key` or bearer) that carries the permission. An invalid,
    expired or revoked token, or one whose user is deactivated, answers `{"active": false}`.
    """
    if not token:
        raise InvalidInputError("token is required", ("body", "token"), "missing")
    try:
        claims = await tokens.decode_access(token)
        reader: AccessReader = request.app.state.access
        access = await reader.resolve(claims)
    except AuthgateError:
        return IntrospectionRead(active=False)
    user = access.account
    raw = claims.raw
    return IntrospectionRead(
        active=True,
        sub=str(user.id),
        exp=int(raw["exp"]),
        iat=int(raw["iat"]),
        iss=str(raw["iss"]),
        aud=str(raw["aud"]),
        jti=claims.jti,
        sid=str(access.session_id),
        scope=" ".join(sorted(user.permissions)),  # as of now, like `roles`: the claim may be stale
        username=user.username,
        email=user.email,
        roles=list(user.role_names),
        token_type="Bearer",  # noqa: S106 - RFC 7662 token type, not a secret
    )


async def forward_principal(
    request: Request,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    api_key: Annotated[str | None, Depends(api_key_scheme)],
    background: BackgroundTasks,
) -> Principal:
    """The caller, as for any route, except that a deactivated account is 401 like every other refusal."""
    try:
        return await get_principal(request, bearer, api_key, background)
    except AccountDisabledError as exc:
        raise ForwardAuthDisabledError(exc.detail) from None


@router.get(
    "/verify",
    responses=problem_schema(
        *(e for e in AUTH_PROBLEMS if e is not AccountDisabledError and e is not CSRFError),
        ForwardAuthDisabledError,
    ),
)
async def forward_auth(
    principal: Annotated[Principal, Depends(forward_principal)], response: Response
) -> ForwardAuthRead:
    """Forward-auth for nginx `auth_request` or Traefik ForwardAuth: 200 with identity headers, else 401
    (a deactivated account too, `account_disabled`).

    Headers: `X-Auth-User-Id`, `X-Auth-Email`, `X-Auth-Roles` (comma-separated). An address with
    characters outside printable ASCII has them percent-encoded as UTF-8 in `X-Auth-Email` (and a
    `%` as `%25`), so URL-decoding the header always gives the address; an ASCII one is unchanged.
    """
    user = principal.account
    response.headers["X-Auth-User-Id"] = str(user.id)
    response.headers["X-Auth-Email"] = quote(user.email, safe=_HEADER_SAFE)
    response.headers["X-Auth-Roles"] = ",".join(user.role_names)
    return ForwardAuthRead(user_id=str(user.id), email=user.email, roles=list(user.role_names))
