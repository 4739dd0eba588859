from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from authgate.audit.service import AuditLog
from authgate.db import SessionDep
from authgate.deps import PasswordHasherDep, SettingsDep
from authgate.users.admin_service import UserAdminService
from authgate.users.repository import UserRepository
from authgate.users.service import UserService
from authgate.verification.notifications import SecurityNotifier


async def get_user_service(
    session: SessionDep, passwords: PasswordHasherDep, settings: SettingsDep
) -> UserService:
    return UserService(
        UserRepository(session),
        passwords,
        AuditLog(session),
        notifier=SecurityNotifier(session, settings),
    )


UserServiceDep = Annotated[UserService, Depends(get_user_service)]


async def get_user_admin_service(
    session: SessionDep, passwords: PasswordHasherDep, settings: SettingsDep
) -> UserAdminService:
    return UserAdminService(session, passwords, settings)


UserAdminServiceDep = Annotated[UserAdminService, Depends(get_user_admin_service)]
