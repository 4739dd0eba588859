"""Console API keys: list, create (the key shown once) and revoke, over `ApiKeyService` like the API."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from authgate.api_keys.dependencies import ApiKeyServiceDep
from authgate.api_keys.errors import ApiKeyNotFoundError
from authgate.api_keys.schemas import ApiKeyCreate
from authgate.api_keys.service import ApiKeyService
from authgate.audit.service import Actor
from authgate.errors import AuthgateError, InvalidInputError
from authgate.pagination import PageParams
from authgate.roles.permissions import PERMISSIONS
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

router = APIRouter(prefix="/ui", include_in_schema=False)

KEYS_PER_PAGE = 50


def _expiry(value: str) -> datetime | None:
    """A date input (YYYY-MM-DD): the key works through the end of that day, UTC."""
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value) + timedelta(days=1), time(0), tzinfo=UTC)
    except (ValueError, OverflowError) as exc:  # not a date, or 9999-12-31 (no day after it)
        raise InvalidInputError("Enter a date as YYYY-MM-DD", ("body", "expires_at")) from exc


async def _keys_page(
    console: SignedInConsole,
    keys: ApiKeyService,
    *,
    cursor: str | None = None,
    values: dict[str, Any] | None = None,
    errors: FormErrors | None = None,
    created: dict[str, Any] | None = None,
) -> HTMLResponse:
    try:
        page = PageParams(limit=KEYS_PER_PAGE, cursor=cursor[:64] if cursor else None)
    except InvalidInputError:
        page, errors = PageParams(limit=KEYS_PER_PAGE), FormErrors(422, "This page of keys does not exist.")
    rows, next_cursor = await keys.list_for(console.signed_in_user_id, page)
    held = sorted(console.signed_in.permissions)
    context = {
        "keys": rows,
        "next_cursor": next_cursor,
        "is_first": not cursor,
        "scopes": [(name, PERMISSIONS.get(name, "")) for name in held],
        "values": values or {"name": "", "scopes": [], "expires_at": ""},
        "errors": errors,
        "created": created,
        "today": datetime.now(UTC).date().isoformat(),
    }
    return render(console, "api_keys.html", context, status=errors.status if errors else 200)


@router.get("/api-keys")
async def api_keys_page(
    console: SignedInConsole, keys: ApiKeyServiceDep, cursor: str | None = None
) -> HTMLResponse:
    """Your API keys that are not revoked, newest first, and the form to create one."""
    return await _keys_page(console, keys, cursor=cursor)


@router.post("/api-keys")
async def api_key_create(console: SignedInConsole, form: CheckedForm, keys: ApiKeyServiceDep) -> HTMLResponse:
    """Create a key (`ApiKeyService.create`): scopes only among the permissions you hold; shown once."""
    scopes = [s for s in form.getlist("scopes") if isinstance(s, str)]
    name, expires = text_field(form, "name"), text_field(form, "expires_at").strip()
    values: dict[str, Any] = {"name": name, "scopes": scopes, "expires_at": expires}
    try:
        data = ApiKeyCreate(name=name, scopes=scopes, expires_at=_expiry(expires))
        issued = await keys.create(console.signed_in_user_id, console.signed_in.permissions, data)
    except ValidationError as exc:
        errors = errors_from_validation(exc)
    except AuthgateError as exc:
        await console.rollback()
        errors = errors_from_domain(exc)
        if exc.code == "permission_denied":
            errors.fields.setdefault("scopes", errors.summary)
    else:
        created = {"name": issued.key.name, "key": issued.raw}
        return await _keys_page(console, keys, created=created)
    return await _keys_page(console, keys, values=values, errors=errors)


@router.post("/api-keys/{key_id}/revoke", response_model=None)
async def api_key_revoke(
    key_id: str, console: SignedInConsole, _: CheckedForm, keys: ApiKeyServiceDep
) -> Response:
    """Revoke one of your keys (`ApiKeyService.revoke`); another user's key is 404."""
    try:
        await keys.revoke(console.signed_in_user_id, uuid.UUID(key_id), Actor.user(console.signed_in_user_id))
    except ValueError:
        return await _keys_page(console, keys, errors=errors_from_domain(ApiKeyNotFoundError()))
    except AuthgateError as exc:
        await console.rollback()
        return await _keys_page(console, keys, errors=errors_from_domain(exc))
    return redirect(console, "/ui/api-keys?notice=api_key_revoked")
