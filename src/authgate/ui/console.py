"""The web console's adapter layer: cookie sign-in with transparent refresh, CSRF, rendering.

Pages authenticate with the same HttpOnly cookies as the JSON API. An expired access cookie is
renewed on the page load from the `/ui`-scoped refresh cookie through `AuthWorkflow.refresh`, so the
rotation, reuse detection and grace window are the API's own. Forms carry the `authgate_csrf`
cookie's value in a hidden `csrf_token` field (double submit).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

import structlog
from fastapi import BackgroundTasks, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.datastructures import FormData
from starlette.responses import Response

from authgate.auth.cookies import (
    ACCESS_COOKIE,
    CONSOLE_REFRESH_COOKIE,
    CSRF_COOKIE,
    clear_auth_cookies,
    new_csrf_token,
    set_auth_cookies,
    set_csrf_cookie,
)
from authgate.auth.dependencies import Principal, load_caller, principal_from_access_token
from authgate.auth.service import Account
from authgate.auth.workflows import AuthWorkflow, IssuedTokens
from authgate.config import Settings
from authgate.db import SessionDep, read_intent
from authgate.deps import PasswordHasherDep, SessionmakerDep, SettingsDep, TokenServiceDep
from authgate.errors import AuthgateError
from authgate.middleware import CLEAR_SITE_DATA
from authgate.profiles.models import UserSettings
from authgate.users.models import User
from authgate.users.schemas import UserRead

log = structlog.get_logger("authgate.ui")

HOME = "/ui/"
LOGIN = "/ui/login"
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


@dataclass(frozen=True, slots=True)
class NavItem:
    """A console section. `permission` hides it from users who lack it (admin pages, later)."""

    href: str
    label: str
    section: str | None = None  # a path prefix whose pages all belong to this item
    permission: str | None = None

    def is_current(self, path: str) -> bool:
        return path == self.href or (self.section is not None and path.startswith(self.section))


# The primary navigation; MFA, profile, API keys, workspaces and admin pages join this list.
NAV: tuple[NavItem, ...] = (
    NavItem("/ui/", "Home"),
    NavItem("/ui/account", "Account", section="/ui/account/"),
    NavItem("/ui/security/sessions", "Security", section="/ui/security/"),
    NavItem("/ui/api-keys", "API keys", section="/ui/api-keys/"),
    NavItem("/ui/workspaces", "Workspaces", section="/ui/workspaces/"),
    NavItem("/ui/admin/users", "Users", section="/ui/admin/users/", permission="users:read"),
    NavItem("/ui/admin/roles", "Roles", section="/ui/admin/roles/", permission="roles:read"),
    NavItem("/ui/admin/audit", "Audit log", permission="audit:read"),
)

# Fixed notices chosen by a query parameter after a redirect (post/redirect/get); the text is
# never taken from the URL.
NOTICES = {
    "registered": "Your account was created and a link to confirm your email is on its way. Sign in to continue.",
    "signed_out": "You are signed out.",
    "signed_out_everywhere": "You are signed out on every device.",
    "saved": "Your changes were saved.",
    "session_revoked": "That session was signed out.",
    "check_email": "Thank you. Check your email: we sent you a message about your registration.",
    "verification_sent": "If your address is not verified yet, a new confirmation link is on its way.",
    "password_reset": "Your password was changed and you were signed out everywhere. Sign in with it now.",
    "password_changed": "Your password was changed. Your other sessions were signed out.",
    "mfa_disabled": "Two-step verification is off.",
    "avatar_removed": "Your picture was removed.",
    "api_key_revoked": "The API key was revoked; it stops working at once.",
}


@dataclass(slots=True)
class Console:
    """One console request: who is signed in (if anyone), the CSRF value and cookies to send."""

    request: Request
    settings: Settings
    db: AsyncSession
    principal: Principal | None
    viewer: UserRead | None  # a snapshot: still readable after a rollback expires the ORM objects
    csrf_token: str
    csrf_is_new: bool
    refreshed: IssuedTokens | None = None
    # Plain copies: a rollback after a domain error expires the ORM user, and the error page that
    # follows must not lazy-load it.
    user_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    nav: list[NavItem] = field(default_factory=list)
    theme: str = "system"  # the signed-in user's choice (system | light | dark), on <html data-theme>

    @property
    def signed_in(self) -> Principal:
        if self.principal is None:  # guarded by the `SignedInConsole` dependency
            raise SignInRequiredError(self.request)
        return self.principal

    @property
    def signed_in_user_id(self) -> uuid.UUID:
        if self.user_id is None:
            raise SignInRequiredError(self.request)
        return self.user_id

    async def user(self) -> User:
        """The signed-in user's ORM row in this request's transaction, for pages that change it."""
        return await load_caller(self.db, self.signed_in)

    async def rollback(self) -> None:
        """Undo the request's writes after a domain error, including a refresh done on the way in."""
        await self.db.rollback()
        self.refreshed = None


class SignInRequiredError(Exception):
    """Raised by page dependencies; answered with a 303 to the sign-in page."""

    def __init__(self, request: Request) -> None:
        super().__init__("sign-in required")
        self.request = request


class ConsoleCSRFError(Exception):
    """A console form without the matching `csrf_token`; answered with a 403 page."""


def safe_next(value: str | None) -> str:
    """A redirect target after sign-in: only a path inside the console, never another origin."""
    if not value or len(value) > 2048 or any(ord(c) < 0x20 or c == "\\" for c in value):
        return HOME
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or value.startswith("//"):
        return HOME
    if not (parts.path == "/ui" or parts.path.startswith("/ui/")) or ".." in parts.path.split("/"):
        return HOME
    return value


def login_url(next_path: str | None = None) -> str:
    target = safe_next(next_path)
    return LOGIN if target == HOME else f"{LOGIN}?next={quote(target, safe='/')}"


async def _from_access_cookie(request: Request, background: BackgroundTasks) -> Principal | None:
    token = request.cookies.get(ACCESS_COOKIE)
    if not token:
        return None
    try:
        return await principal_from_access_token(request, token, background)
    except AuthgateError:
        return None  # expired or revoked: the refresh cookie decides


async def get_console(
    request: Request,
    db: SessionDep,
    settings: SettingsDep,
    tokens: TokenServiceDep,
    factory: SessionmakerDep,
    passwords: PasswordHasherDep,
    background: BackgroundTasks,
) -> Console:
    """The console context; signs in from the cookies when it can, never raises."""
    principal = await _from_access_cookie(request, background)
    refreshed: IssuedTokens | None = None
    raw_refresh = request.cookies.get(CONSOLE_REFRESH_COOKIE)
    if principal is None and raw_refresh:
        try:
            refreshed = await AuthWorkflow(db, factory, settings, passwords, tokens).refresh(raw_refresh)
        except AuthgateError as exc:
            log.info("console_refresh_failed", problem=exc.code)
        else:
            account = Account.of(refreshed.user)
            principal = Principal(
                account=account,
                session_id=refreshed.session_id,
                permissions=account.permissions,
            )
    csrf = request.cookies.get(CSRF_COOKIE)
    console = Console(
        request=request,
        settings=settings,
        db=db,
        principal=principal,
        viewer=UserRead.model_validate(principal.account) if principal else None,
        csrf_token=csrf or new_csrf_token(),
        csrf_is_new=not csrf,
        refreshed=refreshed,
        user_id=principal.user_id if principal else None,
        session_id=principal.session_id if principal else None,
    )
    if principal is not None:
        console.nav = [n for n in NAV if n.permission is None or n.permission in principal.permissions]
        # After a refresh the request's session holds a connection already: read on it, not a second.
        console.theme = await _theme(db if refreshed is not None else factory, principal.user_id)
    return console


async def _theme(source: AsyncSession | async_sessionmaker[AsyncSession], user_id: uuid.UUID) -> str:
    """The user's colour theme. From a session factory it is read on a short session of its own, so
    the request's session is not opened for it (on SQLite a form post's first query takes the write
    lock, held to the end); an open session is read as it is."""
    query = select(UserSettings.theme).where(UserSettings.user_id == user_id)
    if isinstance(source, AsyncSession):
        return await source.scalar(query) or "system"
    with read_intent():
        async with source() as session:
            return await session.scalar(query) or "system"


async def require_console(console: Annotated[Console, Depends(get_console)]) -> Console:
    if console.principal is None:
        raise SignInRequiredError(console.request)
    return console


async def read_checked_form(request: Request) -> FormData:
    """The posted form, once its `csrf_token` matches the `authgate_csrf` cookie."""
    form = await request.form()
    sent = form.get("csrf_token")
    cookie = request.cookies.get(CSRF_COOKIE)
    if not isinstance(sent, str) or not cookie or not secrets.compare_digest(sent.encode(), cookie.encode()):
        await form.close()  # uploads (multipart) are spooled to temporary files
        raise ConsoleCSRFError()
    return form


ConsoleDep = Annotated[Console, Depends(get_console)]
SignedInConsole = Annotated[Console, Depends(require_console)]
CheckedForm = Annotated[FormData, Depends(read_checked_form)]


def text_field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def optional_field(form: FormData, name: str) -> str | None:
    """A text input where an empty value means "none"."""
    value = text_field(form, name).strip()
    return value or None


def _apply_cookies(console: Console, response: Response) -> None:
    if console.refreshed is not None:
        set_auth_cookies(
            response,
            console.settings,
            access_token=console.refreshed.access_token,
            refresh_token=console.refreshed.refresh_token,
            csrf_token=console.csrf_token,  # keep the value already in this page's (and other tabs') forms
        )
    elif console.csrf_is_new:
        set_csrf_cookie(response, console.settings, console.csrf_token)


def render(
    console: Console,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    notice = NOTICES.get(console.request.query_params.get("notice", ""))
    values: dict[str, Any] = {
        "console": console,
        "viewer": console.viewer,
        "nav": console.nav,
        "csrf_token": console.csrf_token,
        "notice": notice,
        "path": console.request.url.path,
        "self_registration": console.settings.features.self_registration,
        **(context or {}),
    }
    response = templates.TemplateResponse(
        console.request, template, values, status_code=status, headers=headers
    )
    _apply_cookies(console, response)
    return response


def render_csrf_failure(request: Request) -> HTMLResponse:
    """403 for a form whose CSRF value is missing or stale; a fresh cookie lets a reload succeed."""
    settings: Settings = request.app.state.settings
    errors = FormErrors(
        403,
        "This form has expired or did not come from this site. Go back, reload the page and try again.",
    )
    values: dict[str, Any] = {
        "errors": errors,
        "viewer": None,
        "nav": [],
        "notice": None,
        "path": request.url.path,
    }
    response = templates.TemplateResponse(request, "error.html", values, status_code=403)
    if not request.cookies.get(CSRF_COOKIE):
        set_csrf_cookie(response, settings, new_csrf_token())
    return response


def redirect(console: Console, url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    _apply_cookies(console, response)
    return response


def signed_out_redirect(console: Console, url: str) -> RedirectResponse:
    """After a sign-out: the cookies expired by name and, as the API's logout does, the browser's
    cache and storage for this origin cleared (not `"cookies"`: sibling apps keep theirs)."""
    response = RedirectResponse(url, status_code=303)
    clear_auth_cookies(response, console.settings)
    response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
    return response


@dataclass(slots=True)
class FormErrors:
    """What a rejected form shows: a summary and messages next to the fields they concern."""

    status: int
    summary: str
    fields: dict[str, str] = field(default_factory=dict)


_FIELD_FOR_CODE = {"email_taken": "email", "username_taken": "username"}


def _message(err: Any) -> str:
    """Pydantic's message, in words for people (its length errors speak of "items")."""
    ctx = err.get("ctx") or {}
    if err["type"] in ("too_short", "string_too_short") and "min_length" in ctx:
        return f"Must be at least {ctx['min_length']} characters"
    if err["type"] in ("too_long", "string_too_long") and "max_length" in ctx:
        return f"Must be at most {ctx['max_length']} characters"
    return str(err["msg"]).removeprefix("Value error, ")


def errors_from_validation(exc: ValidationError) -> FormErrors:
    fields: dict[str, str] = {}
    for err in exc.errors():
        name = str(err["loc"][-1]) if err["loc"] else "form"
        fields.setdefault(name, _message(err))
    return FormErrors(422, "Please correct the fields marked below.", fields)


def retry_headers(exc: AuthgateError) -> dict[str, str] | None:
    """`Retry-After` of a 429 (or 503) for the page that reports it."""
    headers = exc.response_headers()
    return {k: v for k, v in headers.items() if k == "Retry-After"} or None


def errors_from_domain(exc: AuthgateError) -> FormErrors:
    fields: dict[str, str] = {}
    summary = exc.detail or exc.title
    if exc.code in _FIELD_FOR_CODE:
        fields[_FIELD_FOR_CODE[exc.code]] = summary
    for err in exc.extensions.get("errors", []):
        loc = err.get("loc") or []
        if loc:
            fields.setdefault(str(loc[-1]), str(err.get("msg", summary)))
    return FormErrors(exc.status, summary, fields)
