"""The caller's profile, settings and avatar, and avatars as others see them (SPEC §6)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, Response, UploadFile, status

from authgate.auth.dependencies import AUTH_PROBLEMS, CurrentUser, OptionalPrincipal, Principal
from authgate.bodies import NoBody, extra_fields
from authgate.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
    problem_schema,
)
from authgate.profiles.dependencies import ProfileServiceDep
from authgate.profiles.images import OUTPUT_MEDIA_TYPE
from authgate.profiles.schemas import ProfileRead, ProfileUpdate, SettingsRead, SettingsUpdate

router = APIRouter(prefix="/api/v1/users", tags=["profiles"])
AUTH_ERRORS = problem_schema(*AUTH_PROBLEMS)


@router.get("/me/profile", responses=AUTH_ERRORS)
async def read_profile(principal: CurrentUser, profiles: ProfileServiceDep) -> ProfileRead:
    """Your profile: bio, locale, time zone, website and the URL of your avatar."""
    return profiles.read(await profiles.profile(principal.user_id))


@router.patch("/me/profile", responses=AUTH_ERRORS)
async def update_profile(
    body: ProfileUpdate, principal: CurrentUser, profiles: ProfileServiceDep
) -> ProfileRead:
    """Change your profile. `locale` is a BCP 47 tag (`en-GB`), `timezone` an IANA zone (`Europe/Paris`),
    `website` an http(s) URL of at most 2,048 characters, `bio` at most 2,000 characters; `null` clears."""
    return profiles.read(await profiles.update_profile(principal.user_id, body))


@router.get("/me/settings", responses=AUTH_ERRORS)
async def read_settings(principal: CurrentUser, profiles: ProfileServiceDep) -> SettingsRead:
    """Your settings."""
    return SettingsRead.model_validate(await profiles.settings(principal.user_id))


@router.patch("/me/settings", responses=AUTH_ERRORS)
async def update_settings(
    body: SettingsUpdate, principal: CurrentUser, profiles: ProfileServiceDep
) -> SettingsRead:
    """Change your settings. `profile_visibility` decides who sees your avatar: `public` (anyone),
    `members` (signed-in users) or `private` (you and user administrators)."""
    return SettingsRead.model_validate(await profiles.update_settings(principal.user_id, body))


async def require_multipart(request: Request, principal: CurrentUser) -> Principal:
    """Uploads are multipart only: any other content type is 415 (checked after authentication)."""
    if not request.headers.get("content-type", "").lower().startswith("multipart/form-data"):
        raise UnsupportedMediaTypeError("Send the image as multipart/form-data in the field `file`")
    return principal


@router.put(
    "/me/avatar",
    responses=problem_schema(*AUTH_PROBLEMS, PayloadTooLargeError, UnsupportedMediaTypeError),
)
async def upload_avatar(
    principal: Annotated[Principal, Depends(require_multipart)],
    profiles: ProfileServiceDep,
    request: Request,
    file: Annotated[UploadFile, File(description="A PNG, JPEG or WebP image")],
) -> ProfileRead:
    """Upload a new avatar (multipart field `file`). The content must decode as PNG, JPEG or WebP —
    the file name and content type are ignored (415 otherwise); bodies over `MAX_UPLOAD_BYTES` are
    refused with 413 before they are read in full. The image is re-encoded as WebP, at most 512×512,
    without metadata. Any other field, or a second `file`, is 422."""
    form = await request.form()  # as parsed for `file` already
    if extra := sorted(set(form.keys()) - {"file"}):
        raise extra_fields(extra)
    if len(form.getlist("file")) != 1:
        raise InvalidInputError("Send one file in the field `file`", ("body", "file"))
    data = await file.read()
    return profiles.read(await profiles.set_avatar(principal.user_id, data))


@router.delete("/me/avatar", status_code=status.HTTP_204_NO_CONTENT, responses=AUTH_ERRORS)
async def delete_avatar(principal: CurrentUser, profiles: ProfileServiceDep, _body: NoBody) -> None:
    """Remove your avatar."""
    await profiles.delete_avatar(principal.user_id)


AVATAR_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {OUTPUT_MEDIA_TYPE: {}}, "description": "The avatar image"},
    304: {"description": "Not modified (`If-None-Match`)"},
}


@router.get(
    "/me/avatar",
    response_class=Response,
    responses={**AVATAR_RESPONSES, **problem_schema(*AUTH_PROBLEMS, NotFoundError)},
)
async def read_my_avatar(principal: CurrentUser, request: Request, profiles: ProfileServiceDep) -> Response:
    """Your own avatar (404 when you have none). Cached by `ETag`; send `If-None-Match` to get 304."""
    return await _avatar(principal.user_id, principal, request, profiles, shared=False)


@router.get(
    "/{user_id}/avatar",
    response_class=Response,
    responses={**AVATAR_RESPONSES, **problem_schema(NotFoundError)},
)
async def read_avatar(
    user_id: uuid.UUID, request: Request, viewer: OptionalPrincipal, profiles: ProfileServiceDep
) -> Response:
    """A user's avatar, subject to their `profile_visibility`: `public` for anyone, `members` for signed-in
    callers, `private` for the owner and holders of `users:read`. Hidden and missing avatars are both 404.
    Cached by `ETag`; send `If-None-Match` to get 304."""
    return await _avatar(user_id, viewer, request, profiles, shared=True)


async def _avatar(
    user_id: uuid.UUID,
    viewer: Principal | None,
    request: Request,
    profiles: ProfileServiceDep,
    *,
    shared: bool,
) -> Response:
    """`shared=False` for `/me`: one URL for every caller, so no shared cache may keep it."""
    data, key, visibility = await profiles.avatar_for(
        user_id, viewer.user_id if viewer else None, viewer.permissions if viewer else frozenset()
    )
    etag = f'"{key.split(".")[0]}"'
    headers = {
        "ETag": etag,
        "Cache-Control": f"{'public' if shared and visibility == 'public' else 'private'}, max-age=300",
        "Vary": "Authorization, Cookie, X-API-Key",
    }
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(data, media_type=OUTPUT_MEDIA_TYPE, headers=headers)
