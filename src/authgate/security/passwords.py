"""Password hashing off the event loop, with a bounded queue, plus the strength policy."""

from __future__ import annotations

import os
import secrets
import threading
import unicodedata
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher
from pwdlib.hashers.bcrypt import BcryptHasher
from zxcvbn import zxcvbn

from authgate.config import PasswordPolicy
from authgate.errors import InvalidInputError, ServiceBusyError
from authgate.ops.metrics import PASSWORD_HASH_QUEUE

# Rough single-core cost of one hash at the default parameters; used to bound the queue.
_EST_HASH_SECONDS = 0.025
ClientGone = Callable[[], Awaitable[bool]]
T = TypeVar("T")


class ClientGoneError(Exception):
    """The client disconnected while its hash waited; the work is skipped."""


ZXCVBN_MAX_LENGTH = 72
_ZXCVBN_LOCK = threading.Lock()


def normalize_password(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


class PasswordHasher:
    """Argon2id (bcrypt accepted and upgraded) in worker threads behind a capacity limiter.

    Threads = cores, so hashing saturates the CPU without starving the event loop. When
    more hashes wait than `max_queue_seconds` of work, new ones are refused with 503.
    """

    def __init__(self, policy: PasswordPolicy, threads: int | None = None) -> None:
        self._hash = PasswordHash(
            (
                Argon2Hasher(
                    memory_cost=policy.argon2_memory_cost,
                    time_cost=policy.argon2_time_cost,
                    parallelism=policy.argon2_parallelism,
                ),
                BcryptHasher(),
            )
        )
        self._policy = policy
        self._threads = threads or os.cpu_count() or 1
        self._limiter = anyio.CapacityLimiter(self._threads)
        self._max_waiting = max(
            self._threads, int(policy.max_queue_seconds / _EST_HASH_SECONDS) * self._threads
        )
        self._waiting = 0
        self._dummy_hash = self._hash.hash(secrets.token_urlsafe(16))

    async def _run(self, fn: Callable[[], T], client_gone: ClientGone | None) -> T:
        if self._waiting >= self._max_waiting:
            raise ServiceBusyError(
                retry_after=max(1, int(self._waiting * _EST_HASH_SECONDS / self._threads) + 1)
            )
        self._waiting += 1
        PASSWORD_HASH_QUEUE.set(self._waiting)
        try:
            async with self._limiter:
                if client_gone is not None and await client_gone():
                    raise ClientGoneError
                return await anyio.to_thread.run_sync(fn, abandon_on_cancel=False)
        finally:
            self._waiting -= 1
            PASSWORD_HASH_QUEUE.set(self._waiting)

    async def hash(self, password: str, client_gone: ClientGone | None = None) -> str:
        plain = normalize_password(password)
        return await self._run(lambda: self._hash.hash(plain), client_gone)

    async def hash_new(
        self,
        password: str,
        *,
        user_inputs: list[str | None],
        field: str = "password",
        client_gone: ClientGone | None = None,
    ) -> str:
        """Check a new password against the policy (422 if it fails), then hash it, in one worker trip.

        The strength estimate is pure Python and costs up to tens of milliseconds for long,
        repetitive input: on the event loop it would stall every other request meanwhile.
        """

        def check_and_hash() -> str:
            check_password_policy(password, self._policy, user_inputs=user_inputs, field=field)
            return self._hash.hash(normalize_password(password))

        return await self._run(check_and_hash, client_gone)

    async def verify(
        self, password: str, digest: str | None, client_gone: ClientGone | None = None
    ) -> tuple[bool, str | None]:
        """Check a password; returns (valid, new hash to store when the stored one is outdated).

        Without a stored hash (unknown account, no password set) it verifies against a dummy
        hash, so the answer takes as long as for a real account.
        """
        plain = normalize_password(password)
        if digest is None:
            await self._run(lambda: self._hash.verify(plain, self._dummy_hash), client_gone)
            return False, None
        return await self._run(lambda: self._hash.verify_and_update(plain, digest), client_gone)


def check_password_policy(
    password: str, policy: PasswordPolicy, *, user_inputs: list[str | None], field: str = "password"
) -> None:
    """Reject short, long, common, weak, or personal passwords with a 422 that says why.

    `field` names the body field in the error's `loc` (`new_password` on change and reset).
    """
    plain = normalize_password(password)
    loc = ("body", field)
    if not policy.min_length <= len(plain) <= policy.max_length:
        raise InvalidInputError(
            f"Password must be {policy.min_length} to {policy.max_length} characters", loc, "password_length"
        )
    lowered = plain.casefold()
    for value in user_inputs:
        if not value:
            continue
        parts = {value.casefold(), value.split("@", 1)[0].casefold()}
        if any(len(p) >= 3 and p in lowered for p in parts):
            raise InvalidInputError(
                "Password must not contain your email or username", loc, "password_personal"
            )
    # zxcvbn refuses longer input (its matching is quadratic); the first characters decide anyway.
    # It keeps the user inputs in a module-level dictionary, so two threads must not estimate at once.
    with _ZXCVBN_LOCK:
        result = zxcvbn(plain[:ZXCVBN_MAX_LENGTH], user_inputs=[v for v in user_inputs if v])
    if result["score"] < policy.min_strength:
        hint = result["feedback"].get("warning") or "Use a longer passphrase or more varied characters"
        raise InvalidInputError(f"Password is too weak: {hint}", loc, "password_weak")
