from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from authgate.schemas import APIModel, Email, Flag, Name, Phone, Secret, Username, refuse_null


class UserRead(APIModel):
    id: uuid.UUID
    email: str
    email_verified: bool
    username: str | None
    full_name: str | None
    phone: str | None
    phone_verified: bool
    is_active: bool
    roles: list[str] = Field(validation_alias="role_names")
    mfa_enabled: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


class UserRegister(APIModel):
    email: Email
    password: Secret = Field(min_length=8, max_length=128)
    username: Username | None = None
    full_name: Name | None = None
    phone: Phone | None = None


class UserUpdateMe(APIModel):
    """Fields a user may change on their own account; a new phone number starts unverified."""

    username: Username | None = None
    full_name: Name | None = None
    phone: Phone | None = None

    _not_null = refuse_null("username")  # a username can be changed, not removed


class UserCreateAdmin(APIModel):
    """An admin-created account; without a password the user is invited by email to set one."""

    email: Email
    password: Secret | None = Field(default=None, min_length=8, max_length=128)
    username: Username | None = None
    full_name: Name | None = None
    phone: Phone | None = None
    email_verified: Flag = False


class UserUpdateAdmin(APIModel):
    """The fields SPEC §12 lets an admin change (the email address has its own operation)."""

    username: Username | None = None
    full_name: Name | None = None
    phone: Phone | None = None
    is_active: Flag | None = None
    email_verified: Flag | None = None

    _not_null = refuse_null("username", "is_active", "email_verified")  # changed, not removed


class UserEmailChange(APIModel):
    """A new email address for an account; it starts unverified unless the admin vouches for it."""

    email: Email
    email_verified: Flag | None = None  # absent: false for a new address, unchanged for a new spelling

    _not_null = refuse_null("email_verified")


class UserDeleteMe(APIModel):
    password: Secret = Field(max_length=1024)
