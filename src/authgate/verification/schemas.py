from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from authgate.schemas import APIModel, Email, Phone, Secret

Token = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Accepted(APIModel):
    """The request was accepted; what happens next (a message) is not revealed in the answer."""

    detail: str


class EmailVerificationConfirm(APIModel):
    token: Token


class PhoneVerificationRequest(APIModel):
    phone: Phone


class PhoneVerificationConfirm(APIModel):
    phone: Phone
    code: Annotated[str, StringConstraints(pattern=r"^[0-9]{6}$")]


class PasswordForgot(APIModel):
    email: Email


class PasswordReset(APIModel):
    token: Token
    new_password: Secret = Field(min_length=8, max_length=128)


class PasswordChange(APIModel):
    current_password: Secret = Field(min_length=1, max_length=1024)
    new_password: Secret = Field(min_length=8, max_length=128)
