from authgate.errors import AuthgateError


class RoleNotFoundError(AuthgateError):
    status, code, title = 404, "not_found", "Role not found"


class RoleConflictError(AuthgateError):
    """A duplicate name, a built-in role, or a role still assigned (without `force`)."""

    status, code, title = 409, "conflict", "Conflict"
