"""The web console (SPEC §11): server-rendered pages over the same workflows as the JSON API."""

from __future__ import annotations

import uuid
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError

from authgate.auth.cookies import set_auth_cookies
from authgate.auth.dependencies import AuthWorkflowDep
from authgate.auth.schemas import LoginRequest
from authgate.auth.workflows import AuthWorkflow, IssuedTokens
from authgate.db import SessionDep
from authgate.deps import SessionmakerDep, SettingsDep
from authgate.errors import (
    AuthgateError,
    NotFoundError,
    PermissionDeniedError,
    allowed_methods,
    serves_nothing,
)
from authgate.mfa.service import MfaPending, MfaService
from authgate.mfa.workflows import MfaLoginWorkflow
from authgate.ratelimit.bruteforce import login_identifier
from authgate.ratelimit.dependencies import RateLimiterDep, client_ip
from authgate.ui import (
    pages_account,
    pages_admin,
    pages_admin_roles,
    pages_api_keys,
    pages_recovery,
    pages_security,
    pages_workspace_members,
    pages_workspaces,
)
from authgate.ui.console import (
    CheckedForm,
    ConsoleCSRFError,
    ConsoleDep,
    FormErrors,
    SignedInConsole,
    SignInRequiredError,
    errors_from_domain,
    errors_from_validation,
    login_url,
    optional_field,
    redirect,
    render,
    render_csrf_failure,
    retry_headers,
    safe_next,
    signed_out_redirect,
    text_field,
)
from authgate.ui.pages_common import install_page_errors
from authgate.users.dependencies import UserServiceDep
from authgate.users.schemas import UserRegister, UserUpdateMe
from authgate.verification.workflows import RegistrationWorkflow

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/")
async def home(console: SignedInConsole, auth: AuthWorkflowDep) -> HTMLResponse:
    """The dashboard: the account at a glance and where to go next."""
    sessions = await auth.list_sessions(console.signed_in_user_id)
    return render(console, "home.html", {"session_count": len(sessions)})


@router.get("/styleguide")
async def styleguide(console: ConsoleDep) -> HTMLResponse:
    """Every component of the design system, in light and dark."""
    return render(console, "styleguide.html")


# --- sign in, register, sign out ---------------------------------------------------------------


@router.get("/login", response_model=None)
async def login_page(console: ConsoleDep, next: str | None = None) -> Response:
    """The sign-in form; someone already signed in goes straight on."""
    if console.principal is not None:
        return redirect(console, safe_next(next))
    return render(console, "login.html", {"next": safe_next(next), "identifier": ""})


@router.post("/login", response_model=None)
async def login_submit(
    console: ConsoleDep, form: CheckedForm, auth: AuthWorkflowDep, request: Request, limiter: RateLimiterDep
) -> Response:
    """Sign in with an email or username and password; sets the same cookies and limits as the API."""
    identifier = text_field(form, "identifier").strip()
    target = safe_next(text_field(form, "next"))
    context = {"next": target, "identifier": identifier}
    is_email = "@" in identifier
    try:
        body = LoginRequest(
            email=identifier if is_email else None,
            username=None if is_email else identifier,
            password=text_field(form, "password"),
        )
    except ValidationError:
        errors = FormErrors(422, "Enter your email or username and your password.")
        return render(console, "login.html", {**context, "errors": errors}, status=422)
    try:
        await limiter.hit("login_per_ip", client_ip(request))
        await limiter.hit("login_per_account", login_identifier(body.email, body.username))
        issued = await auth.login(
            email=body.email,
            username=body.username,
            password=body.password.get_secret_value(),
            client_gone=request.is_disconnected,
        )
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
        return render(
            console,
            "login.html",
            {**context, "errors": errors},
            status=errors.status,
            headers=retry_headers(exc),
        )
    if isinstance(issued, MfaPending):  # the second step: a code from the authenticator app
        return render(console, "login_mfa.html", {"next": target, "mfa_token": issued.mfa_token})
    return _signed_in(console, issued, target)


def _signed_in(console: ConsoleDep, issued: IssuedTokens, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    set_auth_cookies(
        response, console.settings, access_token=issued.access_token, refresh_token=issued.refresh_token
    )
    return response


@router.post("/login/mfa", response_model=None)
async def login_mfa_submit(
    console: ConsoleDep,
    form: CheckedForm,
    auth: AuthWorkflowDep,
    session: SessionDep,
    factory: SessionmakerDep,
    settings: SettingsDep,
    request: Request,
    limiter: RateLimiterDep,
) -> Response:
    """Finish a sign-in with a TOTP or recovery code (the same rules as `POST /api/v1/auth/login/mfa`)."""
    target = safe_next(text_field(form, "next"))
    mfa_token = text_field(form, "mfa_token")[:256]
    code = text_field(form, "code").strip()[:64]
    context = {"next": target, "mfa_token": mfa_token}
    if not mfa_token or not code:
        errors = FormErrors(422, "Enter the code from your authenticator app or a recovery code.")
        return render(console, "login_mfa.html", {**context, "errors": errors}, status=422)
    workflow = MfaLoginWorkflow(session, factory, settings, auth, MfaService(session, settings.secret()))
    try:
        await limiter.hit("login_per_ip", client_ip(request))
        issued = await workflow.finish(mfa_token, code)
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
        return render(
            console,
            "login_mfa.html",
            {**context, "errors": errors},
            status=errors.status,
            headers=retry_headers(exc),
        )
    return _signed_in(console, issued, target)


@router.get("/register", response_model=None)
async def register_page(console: ConsoleDep) -> Response:
    """The registration form."""
    if console.principal is not None:
        return redirect(console, "/ui/")
    if not console.settings.features.self_registration:
        return _registration_closed(console)
    return render(console, "register.html", {"values": {}})


@router.post("/register", response_model=None)
async def register_submit(
    console: ConsoleDep, form: CheckedForm, users: UserServiceDep, request: Request, limiter: RateLimiterDep
) -> Response:
    """Create an account and email the verification link (`RegistrationWorkflow`, as the API does).

    With `FEATURES__ENUMERATION_SAFE_REGISTRATION` a new and a taken email get the same answer.
    """
    if not console.settings.features.self_registration:
        return _registration_closed(console)
    if console.principal is not None:  # signed in already (another tab): nothing to create
        return redirect(console, "/ui/")
    values = {name: text_field(form, name) for name in ("email", "username", "full_name", "phone")}
    retry: dict[str, str] | None = None
    try:
        await limiter.hit("register_per_ip", client_ip(request))
        body = UserRegister(
            email=values["email"],
            password=text_field(form, "password"),
            username=optional_field(form, "username"),
            full_name=optional_field(form, "full_name"),
            phone=optional_field(form, "phone"),
        )
        registration = RegistrationWorkflow(console.db, users, console.settings)
        await registration.register(body, request.is_disconnected)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await console.rollback()
        errors, retry = errors_from_domain(exc), retry_headers(exc)
    else:
        safe = console.settings.features.enumeration_safe_registration
        return redirect(console, f"/ui/login?notice={'check_email' if safe else 'registered'}")
    return render(
        console, "register.html", {"values": values, "errors": errors}, status=errors.status, headers=retry
    )


def _registration_closed(console: ConsoleDep) -> HTMLResponse:
    error = PermissionDeniedError("Self-registration is disabled. Ask an administrator for an account.")
    return render(console, "error.html", {"errors": errors_from_domain(error)}, status=403)


@router.post("/logout", response_model=None)
async def logout(console: SignedInConsole, _: CheckedForm, auth: AuthWorkflowDep) -> Response:
    """Sign out of this session (its tokens stop working at once) and clear the cookies."""
    await auth.logout(console.signed_in_user_id, console.session_id)
    return signed_out_redirect(console, "/ui/login?notice=signed_out")


# --- account -----------------------------------------------------------------------------------


@router.get("/account")
async def account_page(console: SignedInConsole) -> HTMLResponse:
    """The signed-in user's details and the form to change username, name and phone."""
    viewer = console.viewer
    values = {
        "username": viewer.username if viewer else "",
        "full_name": viewer.full_name if viewer else "",
        "phone": viewer.phone if viewer else "",
    }
    return render(console, "account.html", {"values": values})


@router.post("/account", response_model=None)
async def account_submit(console: SignedInConsole, form: CheckedForm, users: UserServiceDep) -> Response:
    """Change username, full name and phone (`UserService.update_me`).

    An empty name or phone field clears it; an empty username keeps it (it cannot be removed).
    """
    values = {name: text_field(form, name) for name in ("username", "full_name", "phone")}
    username = optional_field(form, "username")
    try:
        data = UserUpdateMe(
            full_name=optional_field(form, "full_name"),
            phone=optional_field(form, "phone"),
            **({"username": username} if username is not None else {}),
        )
        await users.update_me(await console.user(), data)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
    else:
        return redirect(console, "/ui/account?notice=saved")
    return render(console, "account.html", {"values": values, "errors": errors}, status=errors.status)


# --- security: sessions ------------------------------------------------------------------------


async def _sessions_page(
    console: SignedInConsole, auth: AuthWorkflow, errors: FormErrors | None = None
) -> HTMLResponse:
    rows = await auth.list_sessions(console.signed_in_user_id)
    return render(
        console,
        "sessions.html",
        {"sessions": rows, "current_id": console.session_id, "errors": errors},
        status=errors.status if errors else 200,
    )


@router.get("/security/sessions")
async def sessions_page(console: SignedInConsole, auth: AuthWorkflowDep) -> HTMLResponse:
    """Where the account is signed in, with a button to sign each device out."""
    return await _sessions_page(console, auth)


@router.post("/security/sessions/{session_id}/revoke", response_model=None)
async def revoke_session(
    session_id: str, console: SignedInConsole, _: CheckedForm, auth: AuthWorkflowDep
) -> Response:
    """Sign one of the caller's sessions out; revoking the current one signs this browser out."""
    try:
        target = uuid.UUID(session_id)
        await auth.revoke_session(console.signed_in_user_id, target)
    except ValueError:
        return await _sessions_page(console, auth, errors_from_domain(NotFoundError("No such session")))
    except AuthgateError as exc:
        await console.rollback()
        return await _sessions_page(console, auth, errors_from_domain(exc))
    if target == console.session_id:
        return signed_out_redirect(console, "/ui/login?notice=signed_out")
    return redirect(console, "/ui/security/sessions?notice=session_revoked")


@router.post("/security/sessions/revoke-all", response_model=None)
async def revoke_all_sessions(console: SignedInConsole, _: CheckedForm, auth: AuthWorkflowDep) -> Response:
    """Sign out everywhere: every session of the account, this one included."""
    await auth.logout_all(console.signed_in_user_id)
    return signed_out_redirect(console, "/ui/login?notice=signed_out_everywhere")


# --- wiring ------------------------------------------------------------------------------------


async def _sign_in_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequiredError)  # noqa: S101 - registered for this class only
    # Only a page can be returned to after sign-in; a form post starts again from the dashboard.
    next_path = request.url.path if request.method == "GET" else None
    if next_path and request.url.query:
        next_path = f"{next_path}?{request.url.query}"
    return RedirectResponse(login_url(next_path), status_code=303)


async def _csrf_failed(request: Request, exc: Exception) -> Response:
    return render_csrf_failure(request)


@serves_nothing
async def _page_not_found(request: Request, console: ConsoleDep) -> HTMLResponse:
    """An unknown console address answers a page, not a JSON problem; a form's address opened
    with GET (`/ui/logout`), or a page's with PUT, is 405 with `Allow`, as a page too."""
    if allowed := allowed_methods(request):
        errors = FormErrors(405, "This address takes a form's submission: use the button on its page.")
        return render(console, "error.html", {"errors": errors}, status=405, headers={"Allow": allowed})
    errors = errors_from_domain(NotFoundError("There is no page at this address."))
    return render(console, "error.html", {"errors": errors}, status=404)


def install_console(app: FastAPI) -> None:
    """Mount the console: its pages, its stylesheet and the answers that are pages, not problems.

    Console routers are included here, before the catch-all 404 page, which must stay last.
    """
    app.mount("/ui/static", StaticFiles(directory=STATIC_DIR), name="ui_static")
    app.include_router(router)
    app.include_router(pages_workspaces.router)
    app.include_router(pages_workspace_members.router)
    app.include_router(pages_admin.router)
    app.include_router(pages_admin_roles.router)
    install_page_errors(app)
    app.include_router(pages_recovery.router)
    app.include_router(pages_security.router)
    app.include_router(pages_account.router)
    app.include_router(pages_api_keys.router)
    # Every method: an unknown address is a 404 page whatever the method, a form's address opened
    # with another method a 405 page (the static files, mounted before, answer for themselves).
    app.add_api_route(
        "/ui/{path:path}",
        _page_not_found,
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        include_in_schema=False,
    )
    app.add_exception_handler(SignInRequiredError, _sign_in_required)
    app.add_exception_handler(ConsoleCSRFError, _csrf_failed)
