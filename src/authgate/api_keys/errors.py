from authgate.errors import AuthgateError


class ApiKeyNotFoundError(AuthgateError):
    status, code, title = 404, "not_found", "API key not found"
