"""Request rate limits on the `limits` library: in process memory, or Redis when configured.

With `AUTHGATE_REDIS_URL` set every API process counts in the same Redis keys, so scaling out
does not multiply the allowance. Policies come from `settings.rate_limit` by field name.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from authgate.config import RateLimits
from authgate.ratelimit.errors import RateLimitExceededError

log = structlog.get_logger("authgate.ratelimit")

# The policies a route may name; each is a field of `RateLimits` holding a `limits` string.
POLICIES = (
    "login_per_ip",
    "login_per_account",
    "register_per_ip",
    "refresh_per_session",
    "verification_per_ip",
    "verification_per_account",
    "invitations_per_user",
)


@dataclass(frozen=True, slots=True)
class LimitStatus:
    limit: int
    remaining: int
    reset: int  # seconds until the window frees up

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }


def _key_part(value: str) -> str:
    # Identifiers (emails, tokens' sessions) go into storage keys hashed: Redis never holds them in clear.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class RateLimiter:
    """Counts hits per (policy, key) and raises `RateLimitExceededError` past the policy's limit."""

    def __init__(
        self,
        config: RateLimits,
        redis_url: str | None = None,
        *,
        connection_pool: ConnectionPool | None = None,
    ) -> None:
        self.config = config
        self._owns_client = connection_pool is None
        if redis_url:
            uri = redis_url if redis_url.startswith("async+") else "async+" + redis_url
            options = {"connection_pool": connection_pool} if connection_pool else {}
            # `limits` types its pass-through options as scalars, but documents `connection_pool`.
            storage = storage_from_string(
                uri,
                implementation="redispy",
                key_prefix="authgate",
                **options,  # type: ignore[arg-type]
            )
        else:
            storage = storage_from_string("async+memory://")
        assert isinstance(storage, Storage)  # noqa: S101 - the async+ scheme always yields one
        self.storage: Storage = storage
        self._strategy = MovingWindowRateLimiter(self.storage)
        self._items: dict[str, RateLimitItem] = {}
        for name in POLICIES:
            item = parse(getattr(config, name))
            self._items[name] = item

    async def hit(self, policy: str, key: str) -> LimitStatus | None:
        """Count one request; None when limits are switched off or their storage is unreachable.

        An unreachable Redis fails open (logged): request limits are a throttle, and the
        per-account brute-force wait, kept in the database, still holds.
        """
        if not self.config.enabled:
            return None
        item = self._items[policy]
        ident = _key_part(key)
        try:
            allowed = await self._strategy.hit(item, policy, ident)
            stats = await self._strategy.get_window_stats(item, policy, ident)
        except (RedisError, OSError) as exc:
            log.warning("rate_limit_storage_unavailable", policy=policy, error=type(exc).__name__)
            return None
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        limit = item.amount
        if not allowed:
            raise RateLimitExceededError(retry_after=reset, limit=limit, reset=reset)
        return LimitStatus(limit=limit, remaining=stats.remaining, reset=reset)

    async def reset(self) -> None:
        await self.storage.reset()

    async def close(self) -> None:
        """Close the Redis client this limiter opened itself (a shared connection pool stays open)."""
        client = getattr(getattr(self.storage, "bridge", None), "storage", None)
        if self._owns_client and client is not None:
            await client.aclose()
