from authgate.errors import AuthgateError


class RoleNotFoundError(AuthgateError):
    status, code, title = 404, "not_found", "Role not found"
