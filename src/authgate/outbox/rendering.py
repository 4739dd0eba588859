"""Message templates: Jinja2 files under `outbox/templates/<locale>/`, English as the fallback.

An email template `name` is three files: `name.subject.txt`, `name.txt` and `name.html` (the HTML
one extends `_layout.html`); an SMS template is `name.sms.txt`. Missing context variables are
errors (StrictUndefined), so a bad message goes dead instead of out with blanks.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, TemplateNotFound, select_autoescape

DEFAULT_LOCALE = "en"


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


class TemplateError(Exception):
    """The message cannot be rendered (unknown template or missing context); retrying will not help."""


@lru_cache(maxsize=1)
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("authgate.outbox", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _locales(locale: str | None) -> list[str]:
    """Candidates from the most specific: `pt-BR` → `pt-BR`, `pt`, then English."""
    out: list[str] = []
    if locale:
        tag = locale.replace("_", "-")
        out.append(tag)
        if "-" in tag:
            out.append(tag.split("-", 1)[0])
    if DEFAULT_LOCALE not in out:
        out.append(DEFAULT_LOCALE)
    return out


def _render_file(
    name: str, locale: str | None, context: dict[str, Any], *, required: bool = True
) -> str | None:
    env = _environment()
    for candidate in _locales(locale):
        if "/" in candidate or "." in candidate:  # a locale is a tag, never a path
            continue
        try:
            template = env.get_template(f"{candidate}/{name}")
        except TemplateNotFound:
            continue
        return template.render(**context).strip()
    if required:
        raise TemplateError(f"template {name!r} not found")
    return None


def render(channel: str, template: str, context: dict[str, Any], locale: str | None = None) -> Rendered:
    """Render one message for its channel; raises TemplateError when that is impossible."""
    try:
        if channel == "sms":
            return Rendered(
                subject=None, text=_render_file(f"{template}.sms.txt", locale, context) or "", html=None
            )
        subject = _render_file(f"{template}.subject.txt", locale, context) or ""
        text = _render_file(f"{template}.txt", locale, context) or ""
        html = _render_file(f"{template}.html", locale, context, required=False)
    except TemplateError:
        raise
    except Exception as exc:  # undefined variables, syntax errors: permanent for this message
        raise TemplateError(f"{type(exc).__name__}: {exc}") from exc
    return Rendered(subject=" ".join(subject.split()), text=text, html=html)
