"""Verification and recovery (SPEC §5): email and phone verification, forgotten and changed passwords."""

from __future__ import annotations

from fastapi import APIRouter, Depends, status

from authgate.auth.dependencies import AUTH_PROBLEMS, CallerUser, CurrentUser, UserSession
from authgate.bodies import NoBody
from authgate.errors import (
    InvalidInputError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceBusyError,
    SingleUseTokenInvalidError,
    WrongPasswordError,
    problem_schema,
)
from authgate.ratelimit.dependencies import RateLimiterDep, limit_by_ip
from authgate.ratelimit.errors import RateLimitExceededError
from authgate.users.errors import PhoneTakenError
from authgate.users.schemas import UserRead
from authgate.verification.dependencies import EmailVerificationDep, PasswordServiceDep, PhoneVerificationDep
from authgate.verification.errors import CodeInvalidError
from authgate.verification.schemas import (
    Accepted,
    EmailVerificationConfirm,
    PasswordChange,
    PasswordForgot,
    PasswordReset,
    PhoneVerificationConfirm,
    PhoneVerificationRequest,
)
from authgate.verification.service import count_reset_request, count_verification_request

router = APIRouter(prefix="/api/v1/auth", tags=["verification"])

# Every route here sends mail or texts, or checks a secret sent that way: `VERIFICATION_PER_IP`
# for each client address, and `VERIFICATION_PER_ACCOUNT` for each account (or submitted email).
PER_IP = [Depends(limit_by_ip("verification_per_ip"))]
LIMITED = (RateLimitExceededError,)


@router.post(
    "/verify-email/request",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=PER_IP,
    responses=problem_schema(*AUTH_PROBLEMS, *LIMITED),
)
async def request_email_verification(
    user: CallerUser,
    emails: EmailVerificationDep,
    limiter: RateLimiterDep,
    _body: NoBody,
) -> Accepted:
    """Email the caller a verification link (single use, valid 24 hours); none when already verified.

    Limited per client address (`VERIFICATION_PER_IP`) and per account (`VERIFICATION_PER_ACCOUNT`):
    429 `rate_limited` with `Retry-After`.
    """
    await count_verification_request(limiter, user.id)
    await emails.send(user)
    return Accepted(detail="If your email address is not verified yet, a link is on its way.")


@router.post(
    "/verify-email/confirm",
    dependencies=PER_IP,
    responses=problem_schema(SingleUseTokenInvalidError, *LIMITED),
)
async def confirm_email_verification(
    body: EmailVerificationConfirm, emails: EmailVerificationDep
) -> UserRead:
    """Verify an email address with the token from the link; a bad one is 400 `token_invalid`."""
    return UserRead.model_validate(await emails.confirm(body.token))


@router.post(
    "/verify-phone/request",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=PER_IP,
    responses=problem_schema(*AUTH_PROBLEMS, PhoneTakenError, RateLimitedError),
)
async def request_phone_verification(
    body: PhoneVerificationRequest, user: CallerUser, phones: PhoneVerificationDep, limiter: RateLimiterDep
) -> Accepted:
    """Text a 6-digit code to `phone` (E.164 or international form; valid 10 minutes, 5 tries).

    Another code for the same account within 60 seconds, or beyond the daily cap per number or per
    account, is 429 with `Retry-After`. A number another account has verified is 409 `phone_taken`.
    """
    await count_verification_request(limiter, user.id)
    await phones.request(user, body.phone)
    return Accepted(detail="A verification code is on its way.")


@router.post(
    "/verify-phone/confirm",
    dependencies=PER_IP,
    responses=problem_schema(*AUTH_PROBLEMS, CodeInvalidError, PhoneTakenError, *LIMITED),
)
async def confirm_phone_verification(
    body: PhoneVerificationConfirm, principal: CurrentUser, user: CallerUser, phones: PhoneVerificationDep
) -> UserRead:
    """Confirm the code: the number becomes the verified phone. Wrong codes are 400 `code_invalid`."""
    return UserRead.model_validate(await phones.confirm(user, body.phone, body.code, principal.actor))


@router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=PER_IP,
    responses=problem_schema(*LIMITED),
)
async def forgot_password(
    body: PasswordForgot, passwords: PasswordServiceDep, limiter: RateLimiterDep
) -> Accepted:
    """Email a password-reset link (single use, valid 1 hour).

    The answer is the same, in about the same time, whether or not the address has an account.

    Limited per client address and per submitted address (429 `rate_limited`, the same for
    every address, account or not).
    """
    await count_reset_request(limiter, body.email)
    await passwords.forgot(body.email)
    return Accepted(detail="If the address has an account, a reset link is on its way.")


@router.post(
    "/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=PER_IP,
    responses=problem_schema(SingleUseTokenInvalidError, InvalidInputError, ServiceBusyError, *LIMITED),
)
async def reset_password(body: PasswordReset, passwords: PasswordServiceDep) -> None:
    """Set a new password with the token from the reset link; every session of the account is signed out.

    A new password that fails the policy is 422 and leaves the token usable.
    """
    await passwords.reset(body.token, body.new_password.get_secret_value())


@router.post(
    "/password/change",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*AUTH_PROBLEMS, WrongPasswordError, PermissionDeniedError, InvalidInputError),
)
async def change_password(
    body: PasswordChange, principal: UserSession, user: CallerUser, passwords: PasswordServiceDep
) -> None:
    """Change your password; your other sessions are signed out.

    A wrong current password is 403 `invalid_credentials`.

    API keys cannot change passwords (403).
    """
    await passwords.change(
        user,
        principal.session_id,
        body.current_password.get_secret_value(),
        body.new_password.get_secret_value(),
    )
