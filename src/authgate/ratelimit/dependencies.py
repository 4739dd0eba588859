"""Rate limits as FastAPI dependencies: `Depends(limit_by_ip("login_per_ip"))` on a route.

Routes whose key is only known after parsing the body (an account, a session) call
`RateLimiter.hit(policy, key)` themselves through `RateLimiterDep`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Response

from authgate.ratelimit.service import RateLimiter


async def get_rate_limiter(request: Request) -> RateLimiter:  # async: a plain def runs in a thread
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def limit_by_ip(policy: str) -> Callable[[Request, Response, RateLimiter], Awaitable[None]]:
    """A dependency counting the request against `policy` for the client's IP address."""

    async def dependency(request: Request, response: Response, limiter: RateLimiterDep) -> None:
        status = await limiter.hit(policy, client_ip(request))
        if status is not None:
            response.headers.update(status.headers())

    dependency.__name__ = f"limit_{policy}"
    return dependency
