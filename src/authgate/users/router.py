"""The caller's own account (SPEC §6)."""

from __future__ import annotations

from fastapi import APIRouter

from authgate.auth.dependencies import AUTH_PROBLEMS, CurrentUser
from authgate.errors import problem_schema
from authgate.users.dependencies import UserServiceDep
from authgate.users.errors import PhoneTakenError, UsernameTakenError
from authgate.users.schemas import UserRead, UserUpdateMe

router = APIRouter(prefix="/api/v1/users", tags=["users"])

AUTH_ERRORS = problem_schema(*AUTH_PROBLEMS)


@router.get("/me", responses=AUTH_ERRORS)
async def read_me(principal: CurrentUser) -> UserRead:
    """The signed-in user."""
    return UserRead.model_validate(principal.user)


@router.patch("/me", responses=problem_schema(*AUTH_PROBLEMS, UsernameTakenError, PhoneTakenError))
async def update_me(body: UserUpdateMe, principal: CurrentUser, users: UserServiceDep) -> UserRead:
    """Change your username, full name or phone. A new phone number starts unverified."""
    return UserRead.model_validate(await users.update_me(principal.user, body))
