"""TOTP MFA (SPEC §5) and the second sign-in step (SPEC §4)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response, status

from authgate.auth.cookies import token_response
from authgate.auth.dependencies import AUTH_PROBLEMS, AuthWorkflowDep, CallerUser, UserSession
from authgate.auth.schemas import TokenResponse
from authgate.bodies import NoBody
from authgate.db import SessionDep
from authgate.deps import PasswordHasherDep, SessionmakerDep, SettingsDep
from authgate.errors import AccountDisabledError, PermissionDeniedError, WrongPasswordError, problem_schema
from authgate.mfa.dependencies import MfaServiceDep
from authgate.mfa.errors import MfaInvalidError, MfaStateError
from authgate.mfa.schemas import MfaCodeBody, MfaDisableBody, MfaLoginBody, RecoveryCodesRead, TotpSetupRead
from authgate.mfa.workflows import MfaLoginWorkflow, disable_mfa, enable_mfa
from authgate.ratelimit.bruteforce import AccountThrottledError
from authgate.ratelimit.dependencies import limit_by_ip
from authgate.ratelimit.errors import RateLimitExceededError
from authgate.verification.errors import CodeInvalidError

router = APIRouter(prefix="/api/v1/auth", tags=["mfa"])


MANAGE_PROBLEMS = (*AUTH_PROBLEMS, PermissionDeniedError, MfaStateError)


@router.post("/mfa/totp/setup", responses=problem_schema(*MANAGE_PROBLEMS))
async def totp_setup(_: UserSession, user: CallerUser, mfa: MfaServiceDep, _body: NoBody) -> TotpSetupRead:
    """Start TOTP set-up: a new secret, its `otpauth://` URI and a QR code of it as SVG.

    Scan the code with an authenticator app, then confirm with `/mfa/totp/enable`. Calling this
    again before confirming replaces the secret. Not available to API keys.
    """
    setup = await mfa.setup(user)
    return TotpSetupRead(secret=setup.secret, otpauth_uri=setup.otpauth_uri, qr_svg=setup.qr_svg)


@router.post("/mfa/totp/enable", responses=problem_schema(*MANAGE_PROBLEMS, CodeInvalidError))
async def totp_enable(
    body: MfaCodeBody,
    _: UserSession,
    user: CallerUser,
    mfa: MfaServiceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> RecoveryCodesRead:
    """Confirm set-up with a current code: MFA is on from now, and 10 single-use recovery codes come back.

    The recovery codes are shown only in this response; each signs in once in place of a TOTP code.
    The account's owner is emailed that two-step verification was turned on.
    """
    codes = await enable_mfa(session, settings, mfa, user, body.code)
    return RecoveryCodesRead(recovery_codes=codes)


@router.post(
    "/mfa/totp/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*MANAGE_PROBLEMS, WrongPasswordError, CodeInvalidError),
)
async def totp_disable(
    body: MfaDisableBody,
    _: UserSession,
    user: CallerUser,
    mfa: MfaServiceDep,
    session: SessionDep,
    passwords: PasswordHasherDep,
    request: Request,
    settings: SettingsDep,
) -> None:
    """Turn MFA off; needs your password (403 `invalid_credentials` if wrong) and a TOTP or recovery code.

    The account's owner is emailed that two-step verification was turned off.
    """
    await disable_mfa(
        session,
        settings,
        mfa,
        passwords,
        user,
        body.password.get_secret_value(),
        body.code,
        request.is_disconnected,
    )


@router.post(
    "/login/mfa",
    dependencies=[Depends(limit_by_ip("login_per_ip"))],
    responses=problem_schema(
        MfaInvalidError, AccountDisabledError, AccountThrottledError, RateLimitExceededError
    ),
)
async def login_mfa(
    body: MfaLoginBody,
    auth: AuthWorkflowDep,
    mfa: MfaServiceDep,
    session: SessionDep,
    factory: SessionmakerDep,
    settings: SettingsDep,
    response: Response,
) -> TokenResponse:
    """Finish a sign-in that answered `mfa_required`: the `mfa_token` and a TOTP or recovery code.

    Returns the usual token response and cookies. A wrong code is 400 `mfa_invalid` (the token stays
    usable until it expires); repeated wrong codes make the account wait (429), like passwords.
    """
    workflow = MfaLoginWorkflow(session, factory, settings, auth, mfa)
    return token_response(await workflow.finish(body.mfa_token, body.code), response, settings)
