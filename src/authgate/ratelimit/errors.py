from __future__ import annotations

from authgate.errors import RateLimitedError


class RateLimitExceededError(RateLimitedError):
    """A `limits` policy ran out: 429 with `Retry-After` and the IETF `RateLimit-*` headers."""

    def __init__(self, retry_after: int, limit: int, reset: int) -> None:
        super().__init__(retry_after, "Too many requests; retry later")
        self.limit, self.reset = limit, max(1, reset)

    def response_headers(self) -> dict[str, str]:
        return {
            **super().response_headers(),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(self.reset),
        }
