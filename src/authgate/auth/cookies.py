"""The browser transport for tokens: HttpOnly access/refresh cookies plus a readable CSRF cookie."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Literal, cast

from starlette.responses import Response

from authgate.auth.schemas import TokenResponse
from authgate.config import Settings
from authgate.users.schemas import UserRead

if TYPE_CHECKING:
    from authgate.auth.workflows import IssuedTokens

ACCESS_COOKIE = "authgate_access"
REFRESH_COOKIE = "authgate_refresh"
CSRF_COOKIE = "authgate_csrf"
CSRF_HEADER = "X-CSRF-Token"
REFRESH_COOKIE_PATH = "/api/v1/auth"
# The web console refreshes on page loads, outside the auth endpoints' path, so it gets its own
# copy of the refresh token scoped to /ui. Both copies are always set and cleared together: one
# left behind after a rotation would later look like a reused token and revoke the session.
CONSOLE_REFRESH_COOKIE = "authgate_ui_refresh"
CONSOLE_PATH = "/ui"
# Spelled as SPEC §4 writes it (`SameSite=Lax`); Starlette's type admits only the lower-case form and
# writes the value as given. Browsers read the attribute in any letter case.
SAME_SITE = cast(Literal["lax"], "Lax")


def set_auth_cookies(
    response: Response,
    settings: Settings,
    *,
    access_token: str,
    refresh_token: str,
    csrf_token: str | None = None,
) -> None:
    """Set the token cookies; a new CSRF value unless the caller keeps one already in pages' forms."""
    secure = settings.secure_cookies
    response.set_cookie(
        ACCESS_COOKIE,
        access_token,
        max_age=int(settings.access_token_ttl.total_seconds()),
        httponly=True,
        secure=secure,
        samesite=SAME_SITE,
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=int(settings.refresh_token_ttl.total_seconds()),
        httponly=True,
        secure=secure,
        samesite=SAME_SITE,
        path=REFRESH_COOKIE_PATH,
    )
    response.set_cookie(
        CONSOLE_REFRESH_COOKIE,
        refresh_token,
        max_age=int(settings.refresh_token_ttl.total_seconds()),
        httponly=True,
        secure=secure,
        samesite=SAME_SITE,
        path=CONSOLE_PATH,
    )
    set_csrf_cookie(response, settings, csrf_token or new_csrf_token())


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def set_csrf_cookie(response: Response, settings: Settings, value: str) -> None:
    # Readable by scripts on purpose: the double-submit value they echo in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        value,
        max_age=int(settings.refresh_token_ttl.total_seconds()),
        httponly=False,
        secure=settings.secure_cookies,
        samesite=SAME_SITE,
        path="/",
    )


def clear_auth_cookies(response: Response, settings: Settings) -> None:
    secure = settings.secure_cookies
    response.delete_cookie(ACCESS_COOKIE, path="/", secure=secure, httponly=True, samesite=SAME_SITE)
    response.delete_cookie(
        REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, secure=secure, httponly=True, samesite=SAME_SITE
    )
    response.delete_cookie(
        CONSOLE_REFRESH_COOKIE, path=CONSOLE_PATH, secure=secure, httponly=True, samesite=SAME_SITE
    )
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite=SAME_SITE)


def token_response(issued: IssuedTokens, response: Response, settings: Settings) -> TokenResponse:
    """The JSON token response of login, refresh and the MFA step, with the cookies set alongside."""
    set_auth_cookies(response, settings, access_token=issued.access_token, refresh_token=issued.refresh_token)
    return TokenResponse(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        user=UserRead.model_validate(issued.user),
    )
