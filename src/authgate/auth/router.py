"""Accounts and tokens (SPEC §4): register, sign in, refresh, sign out, sessions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status
from fastapi.responses import JSONResponse

from authgate.auth.cookies import REFRESH_COOKIE, clear_auth_cookies, token_response
from authgate.auth.dependencies import AUTH_PROBLEMS, AuthWorkflowDep, CurrentUser, UserSession, check_csrf
from authgate.auth.oauth2 import NO_STORE, OAuth2TokenRoute, oauth_error
from authgate.auth.schemas import (
    LoginRequest,
    OAuth2TokenResponse,
    RefreshRequest,
    SessionRead,
    TokenResponse,
)
from authgate.bodies import NoBody
from authgate.db import SessionDep
from authgate.deps import SettingsDep
from authgate.errors import (
    AccountDisabledError,
    CSRFError,
    InvalidCredentialsError,
    NotAuthenticatedError,
    NotFoundError,
    PermissionDeniedError,
    RefreshReusedError,
    ServiceBusyError,
    SessionRevokedError,
    TokenInvalidError,
    problem_schema,
)
from authgate.mfa.errors import MfaRequiredError
from authgate.mfa.schemas import MfaRequiredRead
from authgate.mfa.service import MfaPending
from authgate.pagination import PageParamsDep
from authgate.ratelimit.bruteforce import AccountThrottledError, login_identifier
from authgate.ratelimit.dependencies import RateLimiterDep, client_ip, limit_by_ip
from authgate.ratelimit.errors import RateLimitExceededError
from authgate.schemas import Page
from authgate.users.dependencies import UserServiceDep
from authgate.users.errors import EmailTakenError, UsernameTakenError
from authgate.users.schemas import UserRead, UserRegister
from authgate.verification.errors import EmailNotVerifiedError
from authgate.verification.schemas import Accepted
from authgate.verification.workflows import RegistrationWorkflow

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

AUTH_ERRORS = problem_schema(*AUTH_PROBLEMS)


async def get_registration(
    session: SessionDep, users: UserServiceDep, settings: SettingsDep
) -> RegistrationWorkflow:
    return RegistrationWorkflow(session, users, settings)


RegistrationDep = Annotated[RegistrationWorkflow, Depends(get_registration)]


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(limit_by_ip("register_per_ip"))],
    responses={
        **problem_schema(
            EmailTakenError,
            UsernameTakenError,
            PermissionDeniedError,
            ServiceBusyError,
            RateLimitExceededError,
        ),
        202: {"model": Accepted, "description": "Enumeration-safe registration: new and taken emails alike"},
    },
)
async def register(
    body: UserRegister,
    registration: RegistrationDep,
    request: Request,
    response: Response,
    settings: SettingsDep,
) -> UserRead | Accepted:
    """Create an account with the `user` role and email a verification link.

    The password must pass the strength policy (422 otherwise). With
    `FEATURES__ENUMERATION_SAFE_REGISTRATION` the answer is 202 whether or not the email or the
    username is taken; the mailbox learns which (the owner of a taken address, or the address
    given when only the username is taken). 403 `permission_denied` when
    self-registration is turned off (`FEATURES__SELF_REGISTRATION=false`).
    """
    if not settings.features.self_registration:
        raise PermissionDeniedError("Self-registration is disabled")
    user = await registration.register(body, request.is_disconnected)
    if settings.features.enumeration_safe_registration:
        response.status_code = status.HTTP_202_ACCEPTED
        return Accepted(detail="Check your inbox to continue.")
    assert user is not None  # noqa: S101 - only the enumeration-safe path answers None
    return UserRead.model_validate(user)


@router.post(
    "/login",
    dependencies=[Depends(limit_by_ip("login_per_ip"))],
    responses=problem_schema(
        InvalidCredentialsError,
        AccountDisabledError,
        EmailNotVerifiedError,
        ServiceBusyError,
        AccountThrottledError,
        RateLimitExceededError,
    ),
)
async def login(
    body: LoginRequest,
    auth: AuthWorkflowDep,
    request: Request,
    response: Response,
    settings: SettingsDep,
    limiter: RateLimiterDep,
) -> TokenResponse | MfaRequiredRead:
    """Sign in with an email or a username and the password.

    Returns an access token, a refresh token and the user, and sets the `authgate_access`,
    `authgate_refresh` and `authgate_csrf` cookies. An unknown account and a wrong password
    answer the same 401 in about the same time.

    With MFA on, the answer is `{mfa_required: true, mfa_token, methods}` and no tokens: finish at
    `POST /api/v1/auth/login/mfa`. After 10 failures in a row an account (known or not) must wait,
    longer with each further failure: 429 `rate_limited` with `Retry-After`.
    """
    await limiter.hit("login_per_account", login_identifier(body.email, body.username))
    issued = await auth.login(
        email=body.email,
        username=body.username,
        password=body.password.get_secret_value(),
        client_gone=request.is_disconnected,
    )
    if isinstance(issued, MfaPending):
        return MfaRequiredRead(mfa_token=issued.mfa_token, methods=list(issued.methods))
    return token_response(issued, response, settings)


# Its own router for its route class; included into `router` at the end of this module.
oauth2_router = APIRouter(route_class=OAuth2TokenRoute)


@oauth2_router.post(
    "/token",
    response_model=OAuth2TokenResponse,
    responses={
        400: {
            "description": "RFC 6749 error: `invalid_request`, `invalid_grant` or `unsupported_grant_type`"
        },
        429: {
            "description": "RFC 6749 form, `temporarily_unavailable` (`code`: `rate_limited`): a rate limit or the sign-in wait"
        },
        503: {
            "description": "RFC 6749 form, `temporarily_unavailable` (`code`: `service_busy`): the hashing queue is full"
        },
    },
)
async def oauth2_token(
    auth: AuthWorkflowDep,
    request: Request,
    response: Response,
    limiter: RateLimiterDep,
    grant_type: Annotated[str | None, Form(max_length=64)] = None,
    username: Annotated[str | None, Form(max_length=320, description="Email or username")] = None,
    password: Annotated[str | None, Form(max_length=1024)] = None,
    refresh_token: Annotated[str | None, Form(max_length=1024)] = None,
    scope: Annotated[str | None, Form(max_length=1024)] = None,
) -> OAuth2TokenResponse | JSONResponse:
    """OAuth2 token endpoint (RFC 6749 form body) for the `password` and `refresh_token` grants.

    Errors use the RFC 6749 shape (`{"error": "invalid_grant"}`), not problem+json, whatever is
    wrong: a parameter sent twice or out of bounds, a wrong content type or a NUL character is
    `invalid_request`; a rate limit, the brute-force wait or a full hashing queue is 429 or 503
    `temporarily_unavailable` with `Retry-After` (and the problem `code` other endpoints give, as an
    extra member). This is the endpoint the Swagger UI "Authorize"
    button signs in with.
    """
    try:
        if grant_type == "password":
            if not username or not password:
                return oauth_error("invalid_request", "username and password are required")
            is_email = "@" in username
            email, name = (username, None) if is_email else (None, username)
            await limiter.hit("login_per_ip", client_ip(request))
            await limiter.hit("login_per_account", login_identifier(email, name))
            issued = await auth.login(
                email=email,
                username=name,
                password=password,
                client_gone=request.is_disconnected,
                allow_mfa=False,
            )
            assert not isinstance(issued, MfaPending)  # noqa: S101 - allow_mfa=False raises instead
        elif grant_type == "refresh_token":
            if not refresh_token:
                return oauth_error("invalid_request", "refresh_token is required")
            issued = await auth.refresh(refresh_token)
            await limiter.hit("refresh_per_session", str(issued.session_id))
        elif grant_type is None:
            return oauth_error("invalid_request", "grant_type is required")
        else:
            return oauth_error("unsupported_grant_type", "Supported: password, refresh_token")
    except MfaRequiredError:
        return oauth_error("invalid_grant", "mfa_required")
    except (
        InvalidCredentialsError,
        AccountDisabledError,
        EmailNotVerifiedError,
        TokenInvalidError,
        SessionRevokedError,
        RefreshReusedError,
    ) as exc:
        return oauth_error("invalid_grant", exc.detail or exc.title)
    response.headers.update(NO_STORE)
    return OAuth2TokenResponse(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        scope=" ".join(sorted(issued.user.permissions)),  # the access token's own `scope` claim
    )


@router.post(
    "/refresh",
    responses=problem_schema(
        NotAuthenticatedError,
        TokenInvalidError,
        SessionRevokedError,
        RefreshReusedError,
        AccountDisabledError,
        CSRFError,
        RateLimitExceededError,
    ),
)
async def refresh(
    auth: AuthWorkflowDep,
    request: Request,
    response: Response,
    settings: SettingsDep,
    limiter: RateLimiterDep,
    body: RefreshRequest | None = None,
) -> TokenResponse:
    """Trade a refresh token (body or `authgate_refresh` cookie) for a new pair; the old one stops working.

    Presenting an already used refresh token revokes the whole session (`refresh_reused`), except the
    immediate parent presented again within the grace window, so two tabs refreshing at once stay
    signed in. A token of a signed-out or revoked session is `session_revoked`. The cookie form needs
    the `X-CSRF-Token` header like every cookie-authenticated write.
    """
    raw = body.refresh_token if body is not None else None
    if raw is None:
        raw = request.cookies.get(REFRESH_COOKIE)
        if raw is None:
            raise NotAuthenticatedError("No refresh token in the body or cookie")
        check_csrf(request)
    issued = await auth.refresh(raw)
    # Counted once the session is known; past the limit the rotation above rolls back with the 429.
    limit_status = await limiter.hit("refresh_per_session", str(issued.session_id))
    if limit_status is not None:
        response.headers.update(limit_status.headers())
    return token_response(issued, response, settings)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH_ERRORS)
async def logout(
    principal: CurrentUser,
    auth: AuthWorkflowDep,
    settings: SettingsDep,
    response: Response,
    _body: NoBody,
) -> None:
    """Revoke the current session: its access and refresh tokens stop working at once. Clears the cookies."""
    await auth.logout(principal.user_id, principal.session_id, principal.actor)
    clear_auth_cookies(response, settings)


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH_ERRORS)
async def logout_all(
    principal: CurrentUser,
    auth: AuthWorkflowDep,
    settings: SettingsDep,
    response: Response,
    _body: NoBody,
) -> None:
    """Revoke every session of the caller, on every device. Clears the cookies.

    With an API key, every session of the key's owner; the key itself keeps working.
    """
    await auth.logout_all(principal.user_id, principal.actor)
    clear_auth_cookies(response, settings)


@router.get("/sessions", responses=AUTH_ERRORS)
async def list_sessions(
    principal: UserSession, auth: AuthWorkflowDep, page: PageParamsDep
) -> Page[SessionRead]:
    """The caller's active sessions, newest first; `current` marks the one making this request."""
    rows, cursor = await auth.page_sessions(principal.user_id, page)
    items = [
        SessionRead(
            id=s.id,
            created_at=s.created_at,
            last_used_at=s.last_used_at,
            ip=s.ip,
            user_agent=s.user_agent,
            current=s.id == principal.session_id,
        )
        for s in rows
    ]
    return Page[SessionRead](items=items, next_cursor=cursor)


@router.delete(
    "/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*AUTH_PROBLEMS, NotFoundError),
)
async def delete_session(
    session_id: uuid.UUID, principal: UserSession, auth: AuthWorkflowDep, _body: NoBody
) -> None:
    """Revoke one of the caller's sessions (sign that device out). Another user's session is 404."""
    await auth.revoke_session(principal.user_id, session_id, principal.actor)


@router.get("/me", responses=AUTH_ERRORS)
async def auth_me(principal: CurrentUser) -> UserRead:
    """The signed-in user (same as `GET /api/v1/users/me`)."""
    return UserRead.model_validate(principal.account)


router.include_router(oauth2_router)
