from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from authgate.db import SessionDep
from authgate.deps import SettingsDep
from authgate.profiles.service import ProfileService, avatar_storage


async def get_profile_service(session: SessionDep, settings: SettingsDep) -> ProfileService:
    return ProfileService(
        session,
        avatar_storage(settings),
        public_url=settings.public_url,
        max_upload=settings.max_upload_bytes,
    )


ProfileServiceDep = Annotated[ProfileService, Depends(get_profile_service)]
