"""The caller's own account and user administration (SPEC §6)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status

from authgate.auth.dependencies import (
    AUTH_PROBLEMS,
    CallerUser,
    CurrentUser,
    Principal,
    UserSession,
    require_permission,
)
from authgate.bodies import NoBody
from authgate.errors import (
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ServiceBusyError,
    WrongPasswordError,
    problem_schema,
)
from authgate.pagination import PageParamsDep
from authgate.roles.schemas import RoleAssignment
from authgate.schemas import Page, Timestamp
from authgate.users.admin_service import UserFilters
from authgate.users.dependencies import UserAdminServiceDep, UserServiceDep
from authgate.users.errors import EmailTakenError, LastAdminError, PhoneTakenError, UsernameTakenError
from authgate.users.schemas import (
    UserCreateAdmin,
    UserDeleteMe,
    UserEmailChange,
    UserRead,
    UserUpdateAdmin,
    UserUpdateMe,
)

router = APIRouter(prefix="/api/v1/users", tags=["users"])

AUTH_ERRORS = problem_schema(*AUTH_PROBLEMS)
ADMIN_ERRORS = problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, NotFoundError)
UsersReadDep = Annotated[Principal, Depends(require_permission("users:read"))]
UsersWriteDep = Annotated[Principal, Depends(require_permission("users:write"))]
UsersDeleteDep = Annotated[Principal, Depends(require_permission("users:delete"))]
RolesAssignDep = Annotated[Principal, Depends(require_permission("roles:assign"))]


@router.get("/me", responses=AUTH_ERRORS)
async def read_me(principal: CurrentUser) -> UserRead:
    """The signed-in user."""
    return UserRead.model_validate(principal.account)


@router.patch("/me", responses=problem_schema(*AUTH_PROBLEMS, UsernameTakenError, PhoneTakenError))
async def update_me(
    body: UserUpdateMe, principal: CurrentUser, user: CallerUser, users: UserServiceDep
) -> UserRead:
    """Change your username, full name or phone. A new phone number starts unverified."""
    return UserRead.model_validate(await users.update_me(user, body, actor=principal.actor))


@router.delete(
    "/me",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, WrongPasswordError, LastAdminError),
)
async def delete_me(
    request: Request, body: UserDeleteMe, _: UserSession, user: CallerUser, admin: UserAdminServiceDep
) -> None:
    """Delete your account, confirmed with your password (403 `invalid_credentials` if wrong).

    Every session and API key stops working at once. The email address stays taken until the
    account is erased after the retention period (`RETENTION__DELETED_ACCOUNTS`, 30 days).
    Not allowed with an API key. The only active administrator cannot leave (409 `last_admin`).
    """
    await admin.delete_me(user, body.password.get_secret_value(), request.is_disconnected)


@router.get("", responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError))
async def list_users(
    _: UsersReadDep,
    admin: UserAdminServiceDep,
    page: PageParamsDep,
    q: Annotated[
        str | None, Query(max_length=320, description="Prefix of the email, username or name")
    ] = None,
    is_active: bool | None = None,
    role: Annotated[str | None, Query(max_length=64, description="Users holding this role")] = None,
    created_after: Annotated[
        Timestamp | None, Query(description="Created at or after (ISO 8601; UTC unless an offset is given)")
    ] = None,
    created_before: Annotated[
        Timestamp | None, Query(description="Created before (ISO 8601; UTC unless an offset is given)")
    ] = None,
    deleted: Annotated[bool, Query(description="List soft-deleted users instead")] = False,
) -> Page[UserRead]:
    """Users, newest first. Needs `users:read`."""
    filters = UserFilters(
        q=q,
        is_active=is_active,
        role=role,
        created_after=created_after,
        created_before=created_before,
        deleted=deleted,
    )
    items, cursor = await admin.list_page(filters, page)
    return Page[UserRead](items=[UserRead.model_validate(u) for u in items], next_cursor=cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_schema(
        *AUTH_PROBLEMS, PermissionDeniedError, EmailTakenError, UsernameTakenError, ServiceBusyError
    ),
)
async def create_user(
    body: UserCreateAdmin, principal: UsersWriteDep, admin: UserAdminServiceDep
) -> UserRead:
    """Create a user with the `user` role. Needs `users:write`. Without a `password` the user is
    emailed an invitation to set one."""
    return UserRead.model_validate(await admin.create(body, inviter=principal.account, actor=principal.actor))


@router.get("/{user_id}", responses=ADMIN_ERRORS)
async def read_user(user_id: uuid.UUID, principal: CurrentUser, admin: UserAdminServiceDep) -> UserRead:
    """One user. Needs `users:read`, except for yourself."""
    if user_id != principal.user_id and "users:read" not in principal.permissions:
        raise PermissionDeniedError("Missing permission: users:read")
    return UserRead.model_validate(await admin.get(user_id))


@router.patch(
    "/{user_id}",
    responses=problem_schema(
        *AUTH_PROBLEMS,
        PermissionDeniedError,
        NotFoundError,
        UsernameTakenError,
        PhoneTakenError,
        LastAdminError,
    ),
)
async def update_user(
    user_id: uuid.UUID, body: UserUpdateAdmin, principal: UsersWriteDep, admin: UserAdminServiceDep
) -> UserRead:
    """Change a user's `username, full_name, phone, is_active, email_verified`. Needs `users:write`,
    and every permission the user holds. Deactivation (`is_active: false`) takes effect on the next
    request; deactivating the only active holder of the `admin` role is 409 `last_admin`. The email
    address changes through `PUT /api/v1/users/{user_id}/email`."""
    user = await admin.update(user_id, body, actor=principal.actor, held=principal.permissions)
    return UserRead.model_validate(user)


@router.put(
    "/{user_id}/email",
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, NotFoundError, EmailTakenError),
)
async def change_user_email(
    user_id: uuid.UUID, body: UserEmailChange, principal: UsersWriteDep, admin: UserAdminServiceDep
) -> UserRead:
    """Give a user a new email address. Needs `users:write`, and every permission the user holds;
    409 `email_taken` while any account holds it (a deleted one too, until the purge). The new
    address starts unverified unless `email_verified: true` comes with it; verification and reset
    links sent to the old one stop working, and the old one, if it was verified, is emailed
    (`email_changed`). A new spelling of the same address (its case) keeps the verified state."""
    user = await admin.change_email(user_id, body, actor=principal.actor, held=principal.permissions)
    return UserRead.model_validate(user)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, NotFoundError, LastAdminError),
)
async def delete_user(
    user_id: uuid.UUID, principal: UsersDeleteDep, admin: UserAdminServiceDep, _body: NoBody
) -> None:
    """Soft-delete a user: sessions and API keys stop working at once; `restore` undoes it until the
    account is erased after the retention period. The email address stays taken until then.
    Needs `users:delete`, and every permission the user holds; 409 `last_admin` for the only active
    holder of the `admin` role."""
    await admin.delete(user_id, actor=principal.actor, held=principal.permissions)


@router.post(
    "/{user_id}/restore",
    responses=problem_schema(*AUTH_PROBLEMS, PermissionDeniedError, NotFoundError, EmailTakenError),
)
async def restore_user(
    user_id: uuid.UUID, principal: UsersWriteDep, admin: UserAdminServiceDep, _body: NoBody
) -> UserRead:
    """Restore a soft-deleted user (sessions and API keys stay ended). Needs `users:write`; 404 once
    the account has been erased; 409 `email_taken` for an account deleted by an earlier release
    whose address another account has taken since."""
    return UserRead.model_validate(
        await admin.restore(user_id, actor=principal.actor, held=principal.permissions)
    )


@router.put(
    "/{user_id}/roles",
    responses=problem_schema(
        *AUTH_PROBLEMS, PermissionDeniedError, NotFoundError, InvalidInputError, LastAdminError
    ),
)
async def set_user_roles(
    user_id: uuid.UUID, body: RoleAssignment, principal: RolesAssignDep, admin: UserAdminServiceDep
) -> UserRead:
    """Replace the user's roles. Needs `roles:assign` and every permission of each role added or removed
    (403); an unknown role → 422; taking `admin` from its only active holder → 409 `last_admin`.
    Takes effect on the user's next request."""
    user = await admin.set_roles(user_id, body.roles, actor=principal.actor, held=principal.permissions)
    return UserRead.model_validate(user)
