"""Request-scoped providers of the API key service, for the API and the console alike."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from authgate.api_keys.service import ApiKeyService
from authgate.db import SessionDep


async def get_api_key_service(session: SessionDep) -> ApiKeyService:
    return ApiKeyService(session)


ApiKeyServiceDep = Annotated[ApiKeyService, Depends(get_api_key_service)]
