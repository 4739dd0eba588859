"""Message templates: every template renders in English, HTML is escaped, locales fall back."""

from __future__ import annotations

import pytest

from authgate.outbox.rendering import TemplateError, render

ALERT = {"when": "2026-01-01 00:00 UTC", "sessions_link": "http://test/ui/security"}
EMAILS = {
    "email_verification": {"link": "http://test/v?token=t", "name": None, "expires_hours": 24},
    "account_exists": {"login_link": "http://test/ui/login", "reset_link": "http://test/ui/password/forgot"},
    "username_taken": {"username": "ada", "register_link": "http://test/ui/register"},
    "password_reset": {"link": "http://test/r?token=t", "expires_minutes": 60},
    "password_reset_unknown": {"register_link": "http://test/ui/register"},
    "password_changed": ALERT,
    "password_reset_done": ALERT,
    "email_changed": {**ALERT, "old_email": "a@example.com", "new_email": "b@example.com"},
    "phone_changed": {**ALERT, "phone": "+14155550123"},
    "mfa_enabled": ALERT,
    "mfa_disabled": ALERT,
    "new_device": {**ALERT, "user_agent": "curl/8", "network": "203.0.113.0/24"},
    "user_invite": {"link": "http://test/i?token=t", "inviter": "Ada"},
    "workspace_invitation": {
        "workspace_name": "Acme",
        "inviter": "Ada",
        "link": "http://test/w",
        "role": "admin",
    },
}


@pytest.mark.parametrize(("template", "context"), list(EMAILS.items()))
def test_every_email_template_renders_text_and_html(template: str, context: dict[str, object]) -> None:
    rendered = render("email", template, context)
    assert rendered.subject
    assert "\n" not in rendered.subject
    assert rendered.text
    assert rendered.html
    assert rendered.html.startswith("<!doctype html>")
    for value in context.values():
        if isinstance(value, str) and "://" in value:
            assert value in rendered.text


def test_html_is_escaped_and_text_is_not() -> None:
    rendered = render("email", "user_invite", {"link": "http://test/i", "inviter": "<Eve & co>"})
    assert "&lt;Eve &amp; co&gt;" in (rendered.html or "")
    assert "<Eve & co>" in rendered.text


def test_sms_template_and_locale_fallback() -> None:
    for locale in (None, "en", "de-CH", "pt_BR", "../../etc"):
        rendered = render("sms", "phone_verification", {"code": "123456", "expires_minutes": 10}, locale)
        assert "123456" in rendered.text
        assert rendered.subject is None
        assert rendered.html is None


def test_unknown_template_and_missing_context_are_errors() -> None:
    with pytest.raises(TemplateError):
        render("email", "nope", {})
    with pytest.raises(TemplateError, match="inviter"):
        render("email", "user_invite", {"link": "http://x"})
