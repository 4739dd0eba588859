"""Verification and recovery (SPEC §5): email and phone verification, forgotten and changed passwords."""

from __future__ import annotations

from fastapi import APIRouter, status

from authgate.auth.dependencies import AUTH_PROBLEMS, CallerUser, UserSession
from authgate.errors import (
    InvalidInputError,
    PermissionDeniedError,
    RateLimitedError,
    ServiceBusyError,
    SingleUseTokenInvalidError,
    WrongPasswordError,
    problem_schema,
)
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

router = APIRouter(prefix="/api/v1/auth", tags=["verification"])


@router.post(
    "/verify-email/request", status_code=status.HTTP_202_ACCEPTED, responses=problem_schema(*AUTH_PROBLEMS)
)
async def request_email_verification(user: CallerUser, emails: EmailVerificationDep) -> Accepted:
    """Email the caller a verification link (single use, valid 24 hours); none when already verified."""
    await emails.send(user)
    return Accepted(detail="If your email address is not verified yet, a link is on its way.")


@router.post("/verify-email/confirm", responses=problem_schema(SingleUseTokenInvalidError))
async def confirm_email_verification(
    body: EmailVerificationConfirm, emails: EmailVerificationDep
) -> UserRead:
    """Verify an email address with the token from the link; a bad one is 400 `token_invalid`."""
    return UserRead.model_validate(await emails.confirm(body.token))


@router.post(
    "/verify-phone/request",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_schema(*AUTH_PROBLEMS, PhoneTakenError, RateLimitedError),
)
async def request_phone_verification(
    body: PhoneVerificationRequest, user: CallerUser, phones: PhoneVerificationDep
) -> Accepted:
    """Text a 6-digit code to `phone` (E.164 or international form; valid 10 minutes, 5 tries).

    Another code for the same account within 60 seconds, or beyond the daily cap per number or per
    account, is 429 with `Retry-After`. A number another account has verified is 409 `phone_taken`.
    """
    await phones.request(user, body.phone)
    return Accepted(detail="A verification code is on its way.")


@router.post(
    "/verify-phone/confirm", responses=problem_schema(*AUTH_PROBLEMS, CodeInvalidError, PhoneTakenError)
)
async def confirm_phone_verification(
    body: PhoneVerificationConfirm, user: CallerUser, phones: PhoneVerificationDep
) -> UserRead:
    """Confirm the code: the number becomes the verified phone. Wrong codes are 400 `code_invalid`."""
    return UserRead.model_validate(await phones.confirm(user, body.phone, body.code))


@router.post("/password/forgot", status_code=status.HTTP_202_ACCEPTED)
async def forgot_password(body: PasswordForgot, passwords: PasswordServiceDep) -> Accepted:
    """Email a password-reset link (single use, valid 1 hour).

    The answer is the same, in about the same time, whether or not the address has an account.
    """
    await passwords.forgot(body.email)
    return Accepted(detail="If the address has an account, a reset link is on its way.")


@router.post(
    "/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(SingleUseTokenInvalidError, InvalidInputError, ServiceBusyError),
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
