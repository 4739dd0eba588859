"""Profiles, settings and avatars of users."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from authgate.config import Settings
from authgate.db import utcnow
from authgate.errors import NotFoundError, PayloadTooLargeError
from authgate.profiles.images import OUTPUT_EXTENSION, normalize_avatar
from authgate.profiles.models import UserProfile, UserSettings
from authgate.profiles.schemas import ProfileRead, ProfileUpdate, SettingsUpdate
from authgate.storage.local import LocalStorage, Storage
from authgate.users.models import User


def avatar_storage(settings: Settings) -> LocalStorage:
    """Where avatar files live: one place for the API that writes them and the purge that erases them."""
    return LocalStorage(settings.upload_dir / "avatars")


class ProfileService:
    def __init__(self, session: AsyncSession, storage: Storage, *, public_url: str, max_upload: int) -> None:
        self._db = session
        self._storage = storage
        self._public_url, self._max_upload = public_url.rstrip("/"), max_upload

    async def profile(self, user_id: uuid.UUID) -> UserProfile:
        """The user's profile row; created here for accounts that predate profiles."""
        row = await self._db.get(UserProfile, user_id)
        if row is None:
            row = UserProfile(user_id=user_id)
            self._db.add(row)
            await self._db.flush()
        return row

    async def _locked_profile(self, user_id: uuid.UUID) -> UserProfile:
        """The profile row, locked and read afresh: uploads side by side each delete the file they
        replace, so none is left behind (PostgreSQL; SQLite's write lock already orders them)."""
        profile = await self.profile(user_id)
        await self._db.refresh(profile, with_for_update=True)
        return profile

    async def settings(self, user_id: uuid.UUID) -> UserSettings:
        row = await self._db.get(UserSettings, user_id)
        if row is None:
            row = UserSettings(user_id=user_id)
            self._db.add(row)
            await self._db.flush()
        return row

    def read(self, profile: UserProfile) -> ProfileRead:
        url = None
        if profile.avatar_key is not None:
            url = f"{self._public_url}/api/v1/users/{profile.user_id}/avatar?v={profile.avatar_key[:8]}"
        return ProfileRead(
            bio=profile.bio,
            locale=profile.locale,
            timezone=profile.timezone,
            website=profile.website,
            avatar_url=url,
        )

    async def update_profile(self, user_id: uuid.UUID, data: ProfileUpdate) -> UserProfile:
        profile = await self.profile(user_id)
        for field, value in data.model_dump(exclude_unset=True).items():
            setattr(profile, field, value)
        await self._db.flush()
        return profile

    async def update_settings(self, user_id: uuid.UUID, data: SettingsUpdate) -> UserSettings:
        row = await self.settings(user_id)
        for field, value in data.model_dump(exclude_unset=True).items():
            setattr(row, field, value)
        await self._db.flush()
        return row

    async def set_avatar(self, user_id: uuid.UUID, data: bytes) -> UserProfile:
        """Validate, re-encode and store a new avatar; the old file is removed after the swap."""
        if len(data) > self._max_upload:
            raise PayloadTooLargeError(f"Avatars may be at most {self._max_upload} bytes")
        image = await asyncio.to_thread(normalize_avatar, data)
        profile = await self._locked_profile(user_id)
        old = profile.avatar_key
        profile.avatar_key = await self._storage.save(image, OUTPUT_EXTENSION)
        profile.avatar_updated_at = utcnow()
        await self._db.flush()
        if old is not None:
            await self._storage.delete(old)
        return profile

    async def delete_avatar(self, user_id: uuid.UUID) -> None:
        profile = await self._locked_profile(user_id)
        old, profile.avatar_key, profile.avatar_updated_at = profile.avatar_key, None, None
        await self._db.flush()
        if old is not None:
            await self._storage.delete(old)

    async def avatar_for(
        self, owner_id: uuid.UUID, viewer_id: uuid.UUID | None, viewer_permissions: frozenset[str]
    ) -> tuple[bytes, str, str]:
        """The avatar bytes, storage name and visibility, if the viewer may see it; 404 if hidden or absent."""
        owner = await self._db.get(User, owner_id)
        if owner is None or owner.deleted_at is not None:
            raise NotFoundError("Avatar not found")
        profile = await self._db.get(UserProfile, owner.id)
        if profile is None or profile.avatar_key is None:
            raise NotFoundError("Avatar not found")
        visibility = (await self.settings(owner.id)).profile_visibility
        allowed = (
            visibility == "public"
            or (visibility == "members" and viewer_id is not None)
            or (viewer_id is not None and (viewer_id == owner.id or "users:read" in viewer_permissions))
        )
        if not allowed:
            raise NotFoundError("Avatar not found")
        data = await self._storage.read(profile.avatar_key)
        if data is None:
            raise NotFoundError("Avatar not found")
        return data, profile.avatar_key, visibility
