"""API keys (SPEC §7): issue, list and revoke your own keys."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, status

from authgate.api_keys.dependencies import ApiKeyServiceDep
from authgate.api_keys.errors import ApiKeyNotFoundError
from authgate.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from authgate.auth.dependencies import AUTH_PROBLEMS, CurrentUser, UserSession
from authgate.bodies import NoBody
from authgate.errors import InvalidInputError, PermissionDeniedError, problem_schema
from authgate.pagination import PageParamsDep
from authgate.schemas import Page

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, InvalidInputError),
)
async def create_api_key(body: ApiKeyCreate, principal: UserSession, keys: ApiKeyServiceDep) -> ApiKeyCreated:
    """Issue a key `ag_<prefix>_<secret>` acting as you. The `key` is shown only in this response.

    `scopes` must be permissions you hold (403 otherwise); at every use the key gets the
    intersection of its scopes and your current permissions. Without scopes it has
    self-service access only. Not allowed with an API key (403).
    """
    issued = await keys.create(principal.user_id, principal.permissions, body)
    return ApiKeyCreated(**ApiKeyRead.model_validate(issued.key).model_dump(), key=issued.raw)


@router.get("", responses=problem_schema(*AUTH_PROBLEMS))
async def list_api_keys(
    principal: CurrentUser, keys: ApiKeyServiceDep, page: PageParamsDep
) -> Page[ApiKeyRead]:
    """Your keys that are not revoked, newest first. Secrets are never shown again."""
    items, cursor = await keys.list_for(principal.user_id, page)
    return Page[ApiKeyRead](items=[ApiKeyRead.model_validate(k) for k in items], next_cursor=cursor)


@router.delete(
    "/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, ApiKeyNotFoundError),
)
async def revoke_api_key(
    key_id: uuid.UUID, principal: UserSession, keys: ApiKeyServiceDep, _body: NoBody
) -> None:
    """Revoke one of your keys; it stops working at once. Another user's key is 404."""
    await keys.revoke(principal.user_id, key_id, principal.actor)
