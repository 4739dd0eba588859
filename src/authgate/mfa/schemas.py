from __future__ import annotations

from typing import Literal

from pydantic import Field

from authgate.schemas import APIModel, Secret


class TotpSetupRead(APIModel):
    secret: str = Field(description="Base32 secret, for typing into an authenticator app by hand")
    otpauth_uri: str
    qr_svg: str = Field(description="The `otpauth_uri` as an inline SVG QR code")


class MfaCodeBody(APIModel):
    code: str = Field(min_length=6, max_length=32, description="A 6-digit TOTP code")


class MfaDisableBody(APIModel):
    password: Secret = Field(min_length=1, max_length=1024)
    code: str = Field(min_length=6, max_length=32, description="A TOTP code or a recovery code")


class RecoveryCodesRead(APIModel):
    recovery_codes: list[str] = Field(description="Single-use codes, shown only this once")


class MfaLoginBody(APIModel):
    mfa_token: str = Field(min_length=1, max_length=256)
    code: str = Field(min_length=6, max_length=32, description="A TOTP code or a recovery code")


class MfaRequiredRead(APIModel):
    """The password was right and the account has MFA on: finish at `POST /api/v1/auth/login/mfa`."""

    mfa_required: Literal[True] = True
    mfa_token: str = Field(description="Single use, valid for 5 minutes")
    methods: list[Literal["totp", "recovery_code"]]
