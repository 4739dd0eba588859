"""The browser transport for tokens: HttpOnly access/refresh cookies plus a readable CSRF cookie."""

from __future__ import annotations

import secrets

from starlette.responses import Response

from authgate.config import Settings

ACCESS_COOKIE = "authgate_access"
REFRESH_COOKIE = "authgate_refresh"
CSRF_COOKIE = "authgate_csrf"
CSRF_HEADER = "X-CSRF-Token"
REFRESH_COOKIE_PATH = "/api/v1/auth"


def set_auth_cookies(
    response: Response, settings: Settings, *, access_token: str, refresh_token: str
) -> None:
    secure = settings.secure_cookies
    response.set_cookie(
        ACCESS_COOKIE,
        access_token,
        max_age=int(settings.access_token_ttl.total_seconds()),
        httponly=True,
        secure=secure,
        samesite="lax",
        path="/",
    )
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=int(settings.refresh_token_ttl.total_seconds()),
        httponly=True,
        secure=secure,
        samesite="lax",
        path=REFRESH_COOKIE_PATH,
    )
    # Readable by scripts on purpose: the double-submit value they echo in X-CSRF-Token.
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(32),
        max_age=int(settings.refresh_token_ttl.total_seconds()),
        httponly=False,
        secure=secure,
        samesite="lax",
        path="/",
    )


def clear_auth_cookies(response: Response, settings: Settings) -> None:
    secure = settings.secure_cookies
    response.delete_cookie(ACCESS_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
    response.delete_cookie(
        REFRESH_COOKIE, path=REFRESH_COOKIE_PATH, secure=secure, httponly=True, samesite="lax"
    )
    response.delete_cookie(CSRF_COOKIE, path="/", secure=secure, samesite="lax")
