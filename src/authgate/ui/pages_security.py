"""Console security pages: change password, TOTP two-step verification, the caller's security events.

Thin adapters over `PasswordService.change`, `MfaService` / `mfa.workflows.disable_mfa` and
`AuditRepository.security_page`, the same code as the JSON API's endpoints.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from authgate.audit.repository import AuditRepository
from authgate.db import SessionDep
from authgate.deps import PasswordHasherDep
from authgate.errors import AuthgateError, InvalidInputError
from authgate.mfa.dependencies import MfaServiceDep
from authgate.mfa.schemas import MfaCodeBody, MfaDisableBody
from authgate.mfa.workflows import disable_mfa, enable_mfa
from authgate.pagination import PageParams
from authgate.ui.console import (
    CheckedForm,
    FormErrors,
    SignedInConsole,
    errors_from_domain,
    errors_from_validation,
    redirect,
    render,
    text_field,
)
from authgate.verification.dependencies import PasswordServiceDep
from authgate.verification.schemas import PasswordChange

router = APIRouter(prefix="/ui", include_in_schema=False)

EVENTS_PER_PAGE = 25


@router.get("/security", response_model=None)
async def security_home(console: SignedInConsole) -> Response:
    """Security alert emails link here; the section starts with the sessions page."""
    return redirect(console, "/ui/security/sessions")


def _with_field(errors: FormErrors, code: str, field: str, exc: AuthgateError) -> FormErrors:
    """Put a domain error that concerns one input next to that input."""
    if exc.code == code:
        errors.fields.setdefault(field, errors.summary)
    return errors


# --- password ----------------------------------------------------------------------------------


@router.get("/security/password")
async def password_page(console: SignedInConsole) -> HTMLResponse:
    """The change-password form."""
    return render(console, "security_password.html")


@router.post("/security/password", response_model=None)
async def password_submit(
    console: SignedInConsole, form: CheckedForm, passwords: PasswordServiceDep
) -> Response:
    """Change the password (`PasswordService.change`); the other sessions are signed out, this one stays."""
    try:
        body = PasswordChange(
            current_password=text_field(form, "current_password"),
            new_password=text_field(form, "new_password"),
        )
        await passwords.change(
            await console.user(),
            console.session_id,
            body.current_password.get_secret_value(),
            body.new_password.get_secret_value(),
        )
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await console.rollback()
        errors = _with_field(errors_from_domain(exc), "invalid_credentials", "current_password", exc)
    else:
        return redirect(console, "/ui/security/password?notice=password_changed")
    return render(console, "security_password.html", {"errors": errors}, status=errors.status)


# --- two-step verification (TOTP) --------------------------------------------------------------


SVG_NS = "http://www.w3.org/2000/svg"


def _qr_data_uri(svg: str) -> str:
    """The QR SVG as a data: URI for an <img>: the console CSP allows `img-src data:`, not inline SVG styles.

    `MfaService.setup` makes an SVG for inlining in HTML, without the namespace; as a document of
    its own (an image) an SVG without `xmlns` does not render, so it is added here.
    """
    opening = svg.split(">", 1)[0]
    if "xmlns=" not in opening:
        svg = svg.replace("<svg", f'<svg xmlns="{SVG_NS}"', 1)
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _mfa_page(
    console: SignedInConsole, context: dict[str, object] | None = None, errors: FormErrors | None = None
) -> HTMLResponse:
    enabled = console.viewer.mfa_enabled if console.viewer else False
    values = {"mfa_enabled": enabled, "errors": errors, **(context or {})}
    return render(console, "security_mfa.html", values, status=errors.status if errors else 200)


@router.get("/security/mfa")
async def mfa_page(console: SignedInConsole) -> HTMLResponse:
    """Whether two-step verification is on, with the way to set it up or turn it off."""
    return _mfa_page(console)


@router.post("/security/mfa/setup")
async def mfa_setup(console: SignedInConsole, _: CheckedForm, mfa: MfaServiceDep) -> HTMLResponse:
    """Start TOTP set-up (`MfaService.setup`): a QR code and the secret for typing in by hand."""
    try:
        setup = await mfa.setup(await console.user())
    except AuthgateError as exc:
        await console.rollback()
        return _mfa_page(console, errors=errors_from_domain(exc))
    context = {"setup": True, "qr": _qr_data_uri(setup.qr_svg), "secret": setup.secret}
    return _mfa_page(console, context)


@router.post("/security/mfa/enable")
async def mfa_enable(console: SignedInConsole, form: CheckedForm, mfa: MfaServiceDep) -> HTMLResponse:
    """Confirm set-up with a code (`mfa.workflows.enable_mfa`); the 10 recovery codes are shown this once."""
    try:
        body = MfaCodeBody(code=text_field(form, "code").strip())
        codes = await enable_mfa(console.db, console.settings, mfa, await console.user(), body.code)
    except ValidationError as exc:
        return _mfa_page(console, {"setup": True}, errors_from_validation(exc))
    except AuthgateError as exc:
        await console.rollback()
        errors = _with_field(errors_from_domain(exc), "code_invalid", "code", exc)
        return _mfa_page(console, {"setup": exc.code == "code_invalid"}, errors)
    # The snapshot was taken before the change; this page already shows the new state.
    return _mfa_page(console, {"mfa_enabled": True, "recovery_codes": codes})


@router.post("/security/mfa/disable", response_model=None)
async def mfa_disable(
    console: SignedInConsole,
    form: CheckedForm,
    mfa: MfaServiceDep,
    session: SessionDep,
    passwords: PasswordHasherDep,
    request: Request,
) -> Response:
    """Turn two-step verification off with the password and a code (`mfa.workflows.disable_mfa`)."""
    try:
        body = MfaDisableBody(password=text_field(form, "password"), code=text_field(form, "code").strip())
        await disable_mfa(
            session,
            console.settings,
            mfa,
            passwords,
            await console.user(),
            body.password.get_secret_value(),
            body.code,
            request.is_disconnected,
        )
    except ValidationError as exc:
        return _mfa_page(console, errors=errors_from_validation(exc))
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
        _with_field(errors, "invalid_credentials", "password", exc)
        return _mfa_page(console, errors=_with_field(errors, "code_invalid", "code", exc))
    return redirect(console, "/ui/security/mfa?notice=mfa_disabled")


# --- security events ---------------------------------------------------------------------------


@router.get("/security/events")
async def events_page(
    console: SignedInConsole, session: SessionDep, cursor: str | None = None
) -> HTMLResponse:
    """The caller's own sign-ins, sign-outs, session, password and MFA events, newest first, paged."""
    try:
        page = PageParams(limit=EVENTS_PER_PAGE, cursor=cursor[:64] if cursor else None)
    except InvalidInputError:
        errors = FormErrors(422, "This page of events does not exist. Start from the newest events.")
        return render(console, "security_events.html", {"events": [], "errors": errors}, status=422)
    rows, next_cursor = await AuditRepository(session).security_page(console.signed_in_user_id, page)
    return render(
        console, "security_events.html", {"events": rows, "next_cursor": next_cursor, "is_first": not cursor}
    )
