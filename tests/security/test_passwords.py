"""Password hashing off the event loop: bounded queue, client-gone skip, upgrades, policy."""

from __future__ import annotations

import asyncio
import threading

import pytest
from pwdlib.hashers.bcrypt import BcryptHasher

from authgate.config import PasswordPolicy
from authgate.errors import InvalidInputError, ServiceBusyError
from authgate.security.passwords import ClientGoneError, PasswordHasher, check_password_policy

CHEAP = PasswordPolicy(argon2_memory_cost=1024, argon2_time_cost=1)


async def test_hash_and_verify_roundtrip() -> None:
    hasher = PasswordHasher(CHEAP, threads=1)
    digest = await hasher.hash("correct horse battery staple")
    assert digest.startswith("$argon2id$")
    assert await hasher.verify("correct horse battery staple", digest) == (True, None)
    assert (await hasher.verify("wrong", digest))[0] is False


async def test_unicode_is_nfkc_normalised() -> None:
    hasher = PasswordHasher(CHEAP, threads=1)
    digest = await hasher.hash("ｐａｓｓ ｗｏｒｄ ９９")  # fullwidth forms
    assert (await hasher.verify("pass word 99", digest))[0] is True


async def test_bcrypt_hash_verifies_and_is_upgraded() -> None:
    hasher = PasswordHasher(CHEAP, threads=1)
    legacy = BcryptHasher().hash("imported secret 123")
    valid, new_hash = await hasher.verify("imported secret 123", legacy)
    assert valid is True
    assert new_hash is not None and new_hash.startswith("$argon2id$")


async def test_unknown_account_still_costs_a_hash() -> None:
    hasher = PasswordHasher(CHEAP, threads=1)
    calls = 0
    original = hasher._hash.verify

    def counting(*args: object) -> bool:
        nonlocal calls
        calls += 1
        return original(*args)  # type: ignore[arg-type]

    hasher._hash.verify = counting  # type: ignore[method-assign]
    assert await hasher.verify("anything", None) == (False, None)
    assert calls == 1


async def test_queue_is_bounded_with_503() -> None:
    """More waiting hashes than the queue allows are refused at once instead of piling up."""
    hasher = PasswordHasher(
        PasswordPolicy(argon2_memory_cost=1024, argon2_time_cost=1, max_queue_seconds=0), threads=1
    )
    gate = threading.Event()
    running = threading.Event()
    original = hasher._hash.hash

    def held(p: str) -> str:
        running.set()
        gate.wait(5)
        return original(p)

    hasher._hash.hash = held  # type: ignore[method-assign]
    first = asyncio.create_task(hasher.hash("one two three four"))
    assert await asyncio.to_thread(running.wait, 5)  # the first hash holds the only thread
    with pytest.raises(ServiceBusyError) as refused:
        await hasher.hash("five six seven eight")
    assert refused.value.retry_after >= 1
    gate.set()
    assert (await first).startswith("$argon2id$")


async def test_no_hash_for_a_client_that_has_gone() -> None:
    hasher = PasswordHasher(CHEAP, threads=1)
    ran = False
    original = hasher._hash.hash

    def tracking(p: str) -> str:
        nonlocal ran
        ran = True
        return original(p)

    hasher._hash.hash = tracking  # type: ignore[method-assign]

    async def gone() -> bool:
        return True

    with pytest.raises(ClientGoneError):
        await hasher.hash("correct horse battery staple", gone)
    assert ran is False


async def test_event_loop_stays_responsive_while_hashing() -> None:
    """A burst of real-cost hashes runs in threads: the loop keeps serving meanwhile.

    Each hash, once computed, waits in its thread for a signal only the event loop sends after it
    has seen hashing start: were a hash run on the loop, that signal could never come."""
    hasher = PasswordHasher(PasswordPolicy(), threads=2)
    loop = asyncio.get_running_loop()
    hashing = asyncio.Event()
    loop_ran = threading.Event()
    original = hasher._hash.hash

    def needs_the_loop(p: str) -> str:
        loop.call_soon_threadsafe(hashing.set)
        digest = original(p)  # the real cost (OWASP parameters)
        if not loop_ran.wait(10):
            raise TimeoutError("the event loop did not run while a hash was in progress")
        return digest

    hasher._hash.hash = needs_the_loop  # type: ignore[method-assign]
    burst = asyncio.gather(*(hasher.hash(f"pass phrase number {i}") for i in range(8)))
    await asyncio.wait_for(hashing.wait(), timeout=10)
    loop_ran.set()
    digests = await asyncio.wait_for(burst, timeout=60)
    assert len(set(digests)) == 8 and all(d.startswith("$argon2id$") for d in digests)


@pytest.mark.parametrize(
    ("password", "kind"),
    [
        ("short", "password_length"),
        ("x" * 129, "password_length"),
        ("password123", "password_weak"),
        ("qwertyuiop", "password_weak"),
        ("alice-in-wonderland-77", "password_personal"),
    ],
)
def test_policy_rejections(password: str, kind: str) -> None:
    with pytest.raises(InvalidInputError) as rejected:
        check_password_policy(password, PasswordPolicy(), user_inputs=["alice@example.com", "alice"])
    assert rejected.value.extensions["errors"][0]["type"] == kind


def test_policy_accepts_a_passphrase() -> None:
    policy = PasswordPolicy()
    assert (
        check_password_policy("correct horse battery staple", policy, user_inputs=["bob@example.com"]) is None
    )
    # The same policy is not a no-op: it refuses the passphrase once it holds the user's name.
    with pytest.raises(InvalidInputError) as rejected:
        check_password_policy("correct horse battery staple", policy, user_inputs=["horse@example.com"])
    assert rejected.value.extensions["errors"][0]["type"] == "password_personal"


@pytest.mark.parametrize("length", [72, 73, 100, 128])
def test_policy_takes_every_length_up_to_the_maximum(length: int) -> None:
    """The strength estimate reads at most 72 characters; a longer password is not an error."""
    policy = PasswordPolicy()
    password = ("Vx9-lantern-harbor-quiet-" * 6)[:length]
    assert check_password_policy(password, policy, user_inputs=["bob@example.com"]) is None
    # One character past the maximum is where it stops.
    with pytest.raises(InvalidInputError) as rejected:
        check_password_policy(password + "x" * (policy.max_length + 1 - length), policy, user_inputs=[])
    assert rejected.value.extensions["errors"][0]["type"] == "password_length"


def test_policy_errors_name_the_field_they_are_about() -> None:
    with pytest.raises(InvalidInputError) as rejected:
        check_password_policy("password123", PasswordPolicy(), user_inputs=[], field="new_password")
    assert rejected.value.extensions["errors"][0]["loc"] == ["body", "new_password"]


async def test_a_new_password_is_checked_and_hashed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The strength estimate can take tens of milliseconds: it runs in the hashing thread, not the loop."""
    import authgate.security.passwords as passwords

    estimated_on: list[int] = []
    estimate = passwords.zxcvbn

    def spy(password: str, user_inputs: list[str] | None = None) -> dict[str, object]:
        estimated_on.append(threading.get_ident())
        return estimate(password, user_inputs=user_inputs)

    monkeypatch.setattr(passwords, "zxcvbn", spy)
    hasher = PasswordHasher(CHEAP, threads=1)
    digest = await hasher.hash_new("correct horse battery staple", user_inputs=["bob@example.com"])
    assert estimated_on and threading.get_ident() not in estimated_on
    assert await hasher.verify("correct horse battery staple", digest) == (True, None)
    with pytest.raises(InvalidInputError) as rejected:
        await hasher.hash_new("password123", user_inputs=[], field="new_password")
    assert rejected.value.extensions["errors"][0] == {
        **rejected.value.extensions["errors"][0],
        "type": "password_weak",
        "loc": ["body", "new_password"],
    }


def test_strength_estimates_never_overlap(monkeypatch: pytest.MonkeyPatch) -> None:
    """zxcvbn keeps each call's user inputs in module state; parallel hashing threads take turns."""
    import time

    import authgate.security.passwords as passwords

    estimate = passwords.zxcvbn
    inside = 0
    most_inside = 0
    counter = threading.Lock()

    def spy(password: str, user_inputs: list[str] | None = None) -> dict[str, object]:
        nonlocal inside, most_inside
        with counter:
            inside += 1
            most_inside = max(most_inside, inside)
        time.sleep(0.01)
        try:
            return estimate(password, user_inputs=user_inputs)
        finally:
            with counter:
                inside -= 1

    monkeypatch.setattr(passwords, "zxcvbn", spy)
    workers = [
        threading.Thread(
            target=check_password_policy,
            args=("correct horse battery staple", PasswordPolicy()),
            kwargs={"user_inputs": [f"user{i}@example.com"]},
        )
        for i in range(8)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert most_inside == 1


async def test_parallel_new_passwords_are_judged_against_their_own_user_inputs() -> None:
    """Each check sees its own account's words, whatever the other hashing threads are doing."""
    hasher = PasswordHasher(CHEAP, threads=4)
    accepted = "elbramakkouqryhpez"  # "zephyrquokkamarble" backwards
    outcomes = await asyncio.gather(
        *(
            hasher.hash_new(accepted, user_inputs=[f"person{i}@example.com", "zephyrquokkamarble"])
            if i % 2
            else hasher.hash_new(accepted, user_inputs=[f"person{i}@example.com"])
            for i in range(16)
        ),
        return_exceptions=True,
    )
    for i, outcome in enumerate(outcomes):
        if i % 2:
            assert isinstance(outcome, InvalidInputError), i
        else:
            assert isinstance(outcome, str) and outcome.startswith("$argon2id$"), i
