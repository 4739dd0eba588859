from __future__ import annotations

from authgate.errors import AuthgateError, ConflictError


class MfaInvalidError(AuthgateError):
    """A wrong code, or a wrong, expired or used `mfa_token`, at the second sign-in step."""

    status, code, title = 400, "mfa_invalid", "MFA code or token is invalid"


class MfaRequiredError(AuthgateError):
    """The account has MFA on, so a password alone does not sign in (the password grant)."""

    status, code, title = 400, "mfa_required", "Multi-factor authentication required"


class MfaStateError(ConflictError):
    title = "MFA is not in the state this needs"
