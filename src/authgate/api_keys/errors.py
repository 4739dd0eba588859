from authgate.errors import NotFoundError


class ApiKeyNotFoundError(NotFoundError):
    title = "API key not found"
