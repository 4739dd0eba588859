from authgate.errors import AuthgateError


class EmailTakenError(AuthgateError):
    status, code, title = 409, "email_taken", "Email already registered"


class UsernameTakenError(AuthgateError):
    status, code, title = 409, "username_taken", "Username already taken"


class LastAdminError(AuthgateError):
    """Deactivating, deleting or demoting the only active administrator would leave nobody to
    manage the service."""

    status, code, title = 409, "last_admin", "The last active administrator cannot be removed"


class PhoneTakenError(AuthgateError):
    status, code, title = 409, "phone_taken", "Phone number already verified by another account"
