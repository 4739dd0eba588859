from authgate.errors import AuthgateError


class CodeInvalidError(AuthgateError):
    """A wrong, expired or used one-time code (phone verification, TOTP while managing MFA);
    which of these is not revealed."""

    status, code, title = 400, "code_invalid", "Code is invalid or expired"


class EmailNotVerifiedError(AuthgateError):
    status, code, title = 403, "email_not_verified", "Email address not verified"
