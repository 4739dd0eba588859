from authgate.errors import NotFoundError


class RoleNotFoundError(NotFoundError):
    title = "Role not found"
