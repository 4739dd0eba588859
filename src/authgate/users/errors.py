from authgate.errors import AuthgateError


class EmailTakenError(AuthgateError):
    status, code, title = 409, "email_taken", "Email already registered"


class UsernameTakenError(AuthgateError):
    status, code, title = 409, "username_taken", "Username already taken"


class PhoneTakenError(AuthgateError):
    status, code, title = 409, "phone_taken", "Phone number already verified by another account"
