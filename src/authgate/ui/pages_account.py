"""Console account pages: profile (with the avatar) and settings, over `ProfileService` like the API."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from authgate.errors import AuthgateError, InvalidInputError
from authgate.profiles.dependencies import ProfileServiceDep
from authgate.profiles.schemas import ProfileUpdate, SettingsRead, SettingsUpdate
from authgate.ui.console import (
    CheckedForm,
    FormErrors,
    SignedInConsole,
    errors_from_domain,
    errors_from_validation,
    optional_field,
    redirect,
    render,
    text_field,
)

router = APIRouter(prefix="/ui", include_in_schema=False)

PROFILE_FIELDS = ("bio", "locale", "timezone", "website")


def _avatar_src(avatar_url: str | None) -> str | None:
    """The avatar as a same-origin path: the console CSP allows images from 'self' only, and
    `PUBLIC_URL` (which the API's `avatar_url` starts with) may name another host or scheme."""
    if avatar_url is None:
        return None
    parts = urlsplit(avatar_url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def _profile_page(
    console: SignedInConsole,
    profiles: ProfileServiceDep,
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    avatar_errors: FormErrors | None = None,
) -> HTMLResponse:
    current = profiles.read(await profiles.profile(console.signed_in_user_id))
    context = {
        "values": values if values is not None else current.model_dump(include=set(PROFILE_FIELDS)),
        "avatar_src": _avatar_src(current.avatar_url),
        "errors": errors,
        "avatar_errors": avatar_errors,
    }
    failed = errors or avatar_errors
    return render(console, "account_profile.html", context, status=failed.status if failed else 200)


@router.get("/account/profile")
async def profile_page(console: SignedInConsole, profiles: ProfileServiceDep) -> HTMLResponse:
    """Bio, language, time zone, website and the profile picture."""
    return await _profile_page(console, profiles)


@router.post("/account/profile", response_model=None)
async def profile_submit(
    console: SignedInConsole, form: CheckedForm, profiles: ProfileServiceDep
) -> Response:
    """Save the profile (`ProfileService.update_profile`); an empty field clears it."""
    values = {name: text_field(form, name) for name in PROFILE_FIELDS}
    try:
        data = ProfileUpdate.model_validate({name: optional_field(form, name) for name in PROFILE_FIELDS})
        await profiles.update_profile(console.signed_in_user_id, data)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
    else:
        return redirect(console, "/ui/account/profile?notice=saved")
    return await _profile_page(console, profiles, values, errors)


@router.post("/account/avatar", response_model=None)
async def avatar_submit(console: SignedInConsole, form: CheckedForm, profiles: ProfileServiceDep) -> Response:
    """Upload a new picture (multipart, field `file`; `ProfileService.set_avatar` checks and re-encodes it).

    Multipart bodies are accepted only on paths ending in `/avatar`, so this form posts here; its
    CSRF value travels in the multipart body like any other field.
    """
    upload = form.get("file")
    try:
        if not isinstance(upload, UploadFile) or not upload.filename:
            raise InvalidInputError("Choose an image file to upload", ("body", "file"))
        data = await upload.read()
        await profiles.set_avatar(console.signed_in_user_id, data)
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
        errors.fields.setdefault("file", errors.summary)
        return await _profile_page(console, profiles, avatar_errors=errors)
    finally:
        await form.close()  # the upload was spooled to a temporary file
    return redirect(console, "/ui/account/profile?notice=saved")


@router.post("/account/avatar/remove", response_model=None)
async def avatar_remove(console: SignedInConsole, _: CheckedForm, profiles: ProfileServiceDep) -> Response:
    """Remove the profile picture (`ProfileService.delete_avatar`)."""
    await profiles.delete_avatar(console.signed_in_user_id)
    return redirect(console, "/ui/account/profile?notice=avatar_removed")


# --- settings ----------------------------------------------------------------------------------


@router.get("/account/settings")
async def settings_page(console: SignedInConsole, profiles: ProfileServiceDep) -> HTMLResponse:
    """Who sees the profile picture, which emails to receive, the colour theme."""
    current = SettingsRead.model_validate(await profiles.settings(console.signed_in_user_id))
    return render(console, "account_settings.html", {"values": current.model_dump()})


@router.post("/account/settings", response_model=None)
async def settings_submit(
    console: SignedInConsole, form: CheckedForm, profiles: ProfileServiceDep
) -> Response:
    """Save the settings (`ProfileService.update_settings`); an unticked box is `false`."""
    values: dict[str, Any] = {
        "profile_visibility": text_field(form, "profile_visibility"),
        "security_alerts": "security_alerts" in form,
        "marketing_emails": "marketing_emails" in form,
        "theme": text_field(form, "theme"),
    }
    try:
        data = SettingsUpdate.model_validate(values)
        await profiles.update_settings(console.signed_in_user_id, data)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
    else:
        return redirect(console, "/ui/account/settings?notice=saved")
    context = {"values": values, "errors": errors}
    return render(console, "account_settings.html", context, status=errors.status)
