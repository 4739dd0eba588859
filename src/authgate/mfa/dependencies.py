"""Request-scoped providers of the MFA service, for the API and the console alike."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from authgate.db import SessionDep
from authgate.deps import SettingsDep
from authgate.mfa.service import MfaService


async def get_mfa_service(session: SessionDep, settings: SettingsDep) -> MfaService:
    return MfaService(session, settings.secret(), issuer=settings.token_issuer)


MfaServiceDep = Annotated[MfaService, Depends(get_mfa_service)]
