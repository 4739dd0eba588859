from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from authgate.db import SessionDep
from authgate.deps import PasswordHasherDep, SessionmakerDep, SettingsDep
from authgate.verification.phone import PhoneVerificationService
from authgate.verification.service import EmailVerificationService, PasswordService


async def get_email_verification(session: SessionDep, settings: SettingsDep) -> EmailVerificationService:
    return EmailVerificationService(session, settings)


async def get_phone_verification(
    session: SessionDep, factory: SessionmakerDep, settings: SettingsDep
) -> PhoneVerificationService:
    return PhoneVerificationService(session, factory, settings)


async def get_password_service(
    session: SessionDep, settings: SettingsDep, passwords: PasswordHasherDep
) -> PasswordService:
    return PasswordService(session, settings, passwords)


EmailVerificationDep = Annotated[EmailVerificationService, Depends(get_email_verification)]
PhoneVerificationDep = Annotated[PhoneVerificationService, Depends(get_phone_verification)]
PasswordServiceDep = Annotated[PasswordService, Depends(get_password_service)]
