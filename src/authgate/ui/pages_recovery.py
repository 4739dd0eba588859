"""Console pages that emails link to: verify an email address, forgotten and reset passwords.

Each page is a thin adapter over `verification.service` (the same methods as the JSON API under
`/api/v1/auth/verify-email/*` and `/api/v1/auth/password/*`). Links open a page with a button that
posts the token: mail scanners that follow links do not spend it.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from authgate.errors import AuthgateError, RateLimitedError, SingleUseTokenInvalidError
from authgate.ratelimit.dependencies import RateLimiterDep, client_ip
from authgate.ui.console import (
    CheckedForm,
    ConsoleDep,
    SignedInConsole,
    errors_from_domain,
    errors_from_validation,
    redirect,
    render,
    retry_headers,
    signed_out_redirect,
    text_field,
)
from authgate.verification.dependencies import EmailVerificationDep, PasswordServiceDep
from authgate.verification.schemas import EmailVerificationConfirm, PasswordForgot, PasswordReset
from authgate.verification.service import count_reset_request

router = APIRouter(prefix="/ui", include_in_schema=False)

MAX_TOKEN = 256  # EmailVerificationConfirm / PasswordReset allow no longer tokens
BAD_LINK = (
    "This link is invalid, has expired or was used already. Ask for a new one and use the latest email."
)


def _bad_link(console: ConsoleDep, template: str, context: dict[str, object] | None = None) -> HTMLResponse:
    errors = errors_from_domain(SingleUseTokenInvalidError(BAD_LINK))
    return render(console, template, {**(context or {}), "errors": errors, "token": ""}, status=errors.status)


# --- email verification ------------------------------------------------------------------------


@router.get("/verify-email")
async def verify_email_page(console: ConsoleDep, token: str = "") -> HTMLResponse:
    """The page the verification email links to: a button confirms (a GET never spends the token)."""
    if not token or len(token) > MAX_TOKEN:
        return _bad_link(console, "verify_email.html")
    return render(console, "verify_email.html", {"token": token})


@router.post("/verify-email")
async def verify_email_submit(
    console: ConsoleDep, form: CheckedForm, emails: EmailVerificationDep
) -> HTMLResponse:
    """Confirm the address (`EmailVerificationService.confirm`, like `POST /api/v1/auth/verify-email/confirm`)."""
    try:
        body = EmailVerificationConfirm(token=text_field(form, "token"))
        user = await emails.confirm(body.token)
    except ValidationError:
        return _bad_link(console, "verify_email.html")
    except AuthgateError:
        await console.rollback()
        return _bad_link(console, "verify_email.html")
    return render(console, "verify_email.html", {"verified_email": user.email})


@router.post("/account/verify-email", response_model=None)
async def resend_verification(
    console: SignedInConsole, _: CheckedForm, emails: EmailVerificationDep
) -> Response:
    """Email a new verification link (none when the address is verified already)."""
    await emails.send(await console.user())
    return redirect(console, "/ui/account?notice=verification_sent")


# --- forgotten and reset passwords -------------------------------------------------------------


@router.get("/password/forgot")
async def forgot_page(console: ConsoleDep, email: str = "") -> HTMLResponse:
    """Ask for a reset link; `?email=` fills the field in (the admin invite links here)."""
    return render(console, "password_forgot.html", {"email": email[:320]})


@router.post("/password/forgot")
async def forgot_submit(
    console: ConsoleDep,
    form: CheckedForm,
    passwords: PasswordServiceDep,
    request: Request,
    limiter: RateLimiterDep,
) -> HTMLResponse:
    """Send a reset link (`PasswordService.forgot`): the same page for known and unknown addresses.

    Limited like the API: per client address and per submitted address.
    """
    email = text_field(form, "email").strip()
    try:
        body = PasswordForgot(email=email)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
        return render(
            console, "password_forgot.html", {"email": email[:320], "errors": errors}, status=errors.status
        )
    try:
        await limiter.hit("verification_per_ip", client_ip(request))
        await count_reset_request(limiter, body.email)
    except RateLimitedError as exc:
        errors = errors_from_domain(exc)
        return render(
            console,
            "password_forgot.html",
            {"email": email[:320], "errors": errors},
            status=errors.status,
            headers=retry_headers(exc),
        )
    await passwords.forgot(body.email)
    return render(console, "password_forgot.html", {"sent": True, "email": ""})


@router.get("/password/reset")
async def reset_page(console: ConsoleDep, token: str = "") -> HTMLResponse:
    """The page the reset email links to: choose a new password."""
    if not token or len(token) > MAX_TOKEN:
        return _bad_link(console, "password_reset.html")
    return render(console, "password_reset.html", {"token": token})


@router.post("/password/reset", response_model=None)
async def reset_submit(
    console: ConsoleDep,
    form: CheckedForm,
    passwords: PasswordServiceDep,
    request: Request,
    limiter: RateLimiterDep,
) -> Response:
    """Set the new password (`PasswordService.reset`); every session is signed out, this browser too.

    A password the policy refuses keeps the token usable, so the form comes back with it.
    """
    token = text_field(form, "token")
    try:
        body = PasswordReset(token=token, new_password=text_field(form, "new_password"))
    except ValidationError as exc:
        errors = errors_from_validation(exc)
        if "token" in errors.fields:
            return _bad_link(console, "password_reset.html")
        return render(
            console, "password_reset.html", {"token": token, "errors": errors}, status=errors.status
        )
    try:
        await limiter.hit("verification_per_ip", client_ip(request))
        await passwords.reset(body.token, body.new_password.get_secret_value())
    except SingleUseTokenInvalidError:
        await console.rollback()
        return _bad_link(console, "password_reset.html")
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
        return render(
            console,
            "password_reset.html",
            {"token": token, "errors": errors},
            status=errors.status,
            headers=retry_headers(exc),
        )
    return signed_out_redirect(console, "/ui/login?notice=password_reset")


# Links in emails sent before the paths settled on `/ui/password/...` keep working.
@router.get("/reset-password")
async def reset_page_old_path(console: ConsoleDep, token: str = "") -> RedirectResponse:
    """Old address of the reset page."""
    return _moved(console, "/ui/password/reset", token)


@router.get("/forgot-password")
async def forgot_page_old_path(console: ConsoleDep) -> RedirectResponse:
    """Old address of the forgot-password page."""
    return _moved(console, "/ui/password/forgot", "")


def _moved(console: ConsoleDep, path: str, token: str) -> RedirectResponse:
    if token and len(token) <= MAX_TOKEN:
        return redirect(console, f"{path}?{urlencode({'token': token})}")
    return redirect(console, path)
