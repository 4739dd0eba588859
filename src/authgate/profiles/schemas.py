from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, StringConstraints

from authgate.schemas import APIModel, Flag, refuse_null

# BCP 47 language tags, the common subset: language[-script][-region][-variant...][-extension...]
_BCP47 = re.compile(
    r"^[A-Za-z]{2,3}(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|[0-9]{3}))?(-(?:[A-Za-z0-9]{5,8}|[0-9][A-Za-z0-9]{3}))*"
    r"(-[0-9A-WY-Za-wy-z](-[A-Za-z0-9]{2,8})+)*(-x(-[A-Za-z0-9]{1,8})+)?$"
)

Visibility = Literal["public", "members", "private"]
Theme = Literal["system", "light", "dark"]


_ZONE_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*$")  # no dots: no path tricks


@lru_cache(maxsize=1024)
def _is_zone(key: str) -> bool:
    try:
        zoneinfo.ZoneInfo(key)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):  # unknown, malformed, a directory
        return False
    return True


def _timezone(value: str) -> str:
    """An IANA zone that zoneinfo can load (cheaper than listing every zone on first use)."""
    if not _ZONE_KEY.match(value) or not _is_zone(value):
        raise ValueError("not an IANA time zone, e.g. Europe/Paris")
    return value


def _locale(value: str) -> str:
    if not _BCP47.match(value):
        raise ValueError("not a BCP 47 language tag, e.g. en-GB")
    return value


def _website(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValueError("not an http(s) URL")
    return value


Bio = Annotated[str, StringConstraints(max_length=2000)]
Locale = Annotated[str, StringConstraints(max_length=35), AfterValidator(_locale)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
Website = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_website)]


class ProfileRead(APIModel):
    bio: str | None
    locale: str | None
    timezone: str | None
    website: str | None
    avatar_url: str | None


class ProfileUpdate(APIModel):
    """Fields to change; `null` clears one."""

    bio: Bio | None = None
    locale: Locale | None = None
    timezone: TimeZone | None = None
    website: Website | None = None


class SettingsRead(APIModel):
    profile_visibility: Visibility
    security_alerts: bool
    marketing_emails: bool
    theme: Theme


class SettingsUpdate(APIModel):
    """Settings to change; each can be changed, none cleared (null is 422)."""

    profile_visibility: Visibility | None = None
    security_alerts: Flag | None = None
    marketing_emails: Flag | None = None
    theme: Theme | None = None

    _not_null = refuse_null("profile_visibility", "security_alerts", "marketing_emails", "theme")
