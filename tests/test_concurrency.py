"""Concurrent requests on the real engines (committed, not savepoint-isolated): no lost writes, no 5xx."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from httpx import AsyncClient

from tests.factories import PASSWORD, bearer, unique_email


@pytest.mark.postgres_only
async def test_parallel_registrations_of_one_email(live_client: AsyncClient) -> None:
    email = unique_email("race")
    responses = await asyncio.gather(
        *(
            live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            for _ in range(20)
        )
    )
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 19}, statuses
    assert all(r.json()["code"] == "email_taken" for r in responses if r.status_code == 409)


async def test_parallel_registrations_of_distinct_users(live_client: AsyncClient) -> None:
    """The embedded SQLite default holds concurrent writers: no "database is locked"."""
    responses = await asyncio.gather(
        *(
            live_client.post(
                "/api/v1/auth/register", json={"email": unique_email("par"), "password": PASSWORD}
            )
            for _ in range(16)
        )
    )
    assert [r.status_code for r in responses] == [201] * 16, [
        r.text for r in responses if r.status_code != 201
    ]


async def test_64_concurrent_requests_do_not_exhaust_the_pool(live_client: AsyncClient) -> None:
    email = unique_email("busy")
    assert (
        await live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    ).status_code == 201
    login = await live_client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    headers = bearer(login.json()["access_token"])
    reads = [live_client.get("/api/v1/users/me", headers=headers) for _ in range(48)]
    logins = [
        live_client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD}) for _ in range(16)
    ]
    responses = await asyncio.gather(*reads, *logins)
    assert Counter(r.status_code for r in responses) == {200: 64}


async def test_a_parallel_burst_of_guesses_learns_no_more_answers_than_guesses_one_by_one(
    live_client: AsyncClient, live_app: Any
) -> None:
    """Every guess of a burst passes the check before the hash; the check at answer time holds the
    rest. The right password sent next gets the same 429 as a wrong one.

    (A right password inside the burst may be answered 200 before the wait begins; like any success
    it then clears the count. That case is tested deterministically in tests/ratelimit.)
    """
    allowed = live_app.state.settings.rate_limit.failed_logins_before_delay
    email = unique_email("burst")
    assert (
        await live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    ).status_code == 201
    guesses = [f"guess number {i}" for i in range(allowed + 14)]
    answers = await asyncio.gather(
        *(live_client.post("/api/v1/auth/login", json={"email": email, "password": g}) for g in guesses)
    )
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {401: allowed, 429: len(guesses) - allowed}, statuses
    right = await live_client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert right.status_code == 429 and "retry-after" in right.headers


# --- read, decide, write: requests side by side run one after another where it matters ---------


async def _signed_in(live_client: AsyncClient) -> tuple[dict[str, str], str]:
    email = unique_email("side")
    assert (
        await live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    ).status_code == 201
    login = await live_client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    return bearer(login.json()["access_token"]), email


async def test_a_refused_right_password_is_recorded_without_holding_up_other_writers(
    live_client: AsyncClient, live_app: Any, live_engine: Any
) -> None:
    """Disabled, or unverified where verification is required: the right password is refused and
    the refusal recorded in a transaction of its own, after the request's own has ended (on SQLite
    both need the one write lock)."""
    from sqlalchemy import update

    from authgate.db import create_sessionmaker
    from authgate.users.models import User

    _, disabled = await _signed_in(live_client)
    _, unverified = await _signed_in(live_client)
    async with create_sessionmaker(live_engine)() as session, session.begin():
        await session.execute(update(User).where(User.email == disabled).values(is_active=False))
    live_app.state.settings.features.require_verified_email = True
    try:
        answers = await asyncio.gather(
            live_client.post("/api/v1/auth/login", json={"email": disabled, "password": PASSWORD}),
            live_client.post("/api/v1/auth/login", json={"email": unverified, "password": PASSWORD}),
            live_client.post(
                "/api/v1/auth/register", json={"email": unique_email("by"), "password": PASSWORD}
            ),
        )
    finally:
        live_app.state.settings.features.require_verified_email = False
    assert [(a.status_code, a.json().get("code")) for a in answers] == [
        (403, "account_disabled"),
        (403, "email_not_verified"),
        (201, None),
    ]


async def test_password_changes_side_by_side_one_wins(live_client: AsyncClient) -> None:
    """Each verified the same current password; only one may replace it (SPEC §12: 403 otherwise)."""
    headers, email = await _signed_in(live_client)
    new = [f"side by side passphrase {n} lantern" for n in range(5)]
    responses = await asyncio.gather(
        *(
            live_client.post(
                "/api/v1/auth/password/change",
                json={"current_password": PASSWORD, "new_password": password},
                headers=headers,
            )
            for password in new
        )
    )
    assert sorted(r.status_code for r in responses) == [204, 403, 403, 403, 403], [r.text for r in responses]
    winner = new[[r.status_code for r in responses].index(204)]
    for password in [PASSWORD, *new]:
        login = await live_client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert login.status_code == (200 if password == winner else 401)


async def test_deletes_side_by_side_delete_once(live_client: AsyncClient) -> None:
    headers, email = await _signed_in(live_client)
    responses = await asyncio.gather(
        *(
            live_client.request("DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=headers)
            for _ in range(5)
        )
    )
    codes = Counter(r.status_code for r in responses)
    assert codes == {204: 1, 401: 4}, codes  # the others answer as a request after the delete would
    assert all(r.json()["code"] == "token_invalid" for r in responses if r.status_code == 401)
    again = await live_client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
    assert again.status_code == 409  # the address stays taken until the purge


async def test_revocations_of_one_api_key_side_by_side_revoke_once(
    live_client: AsyncClient, live_engine: Any
) -> None:
    from sqlalchemy import func, select

    from authgate.audit.models import AuditEvent
    from authgate.db import create_sessionmaker

    headers, _ = await _signed_in(live_client)
    key = await live_client.post("/api/v1/api-keys", json={"name": "twice", "scopes": []}, headers=headers)
    assert key.status_code == 201, key.text
    key_id = key.json()["id"]
    responses = await asyncio.gather(
        *(live_client.delete(f"/api/v1/api-keys/{key_id}", headers=headers) for _ in range(8))
    )
    assert Counter(r.status_code for r in responses) == {204: 1, 404: 7}, [r.text for r in responses]
    async with create_sessionmaker(live_engine)() as session:
        revoked = await session.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "api_key.revoked", AuditEvent.target_id == key_id)
        )
    assert revoked == 1


async def test_role_replacements_side_by_side_leave_one_requested_set(
    live_client: AsyncClient, live_engine: Any
) -> None:
    """SPEC §12: PUT /users/{id}/roles replaces the whole set; concurrent ones do not merge."""
    from authgate.db import create_sessionmaker
    from tests.workspaces.helpers import grant_admin

    admin_headers, _ = await _signed_in(live_client)
    me = (await live_client.get("/api/v1/users/me", headers=admin_headers)).json()
    async with create_sessionmaker(live_engine)() as session:
        await grant_admin(session, me["id"])
    for name in ("side-a", "side-b", "side-c"):
        created = await live_client.post("/api/v1/roles", json={"name": name}, headers=admin_headers)
        assert created.status_code == 201, created.text
    target_headers, _ = await _signed_in(live_client)
    target = (await live_client.get("/api/v1/users/me", headers=target_headers)).json()["id"]
    sets = [["user", "side-a"], ["user", "side-b"], ["user", "side-c"], ["side-a", "side-b"]]
    for _ in range(3):
        responses = await asyncio.gather(
            *(
                live_client.put(f"/api/v1/users/{target}/roles", json={"roles": roles}, headers=admin_headers)
                for roles in sets
            )
        )
        assert [r.status_code for r in responses] == [200] * len(sets), [r.text for r in responses]
        final = (await live_client.get(f"/api/v1/users/{target}", headers=admin_headers)).json()["roles"]
        assert sorted(final) in [sorted(s) for s in sets]


async def test_avatar_uploads_side_by_side_leave_one_file(live_client: AsyncClient, live_app: Any) -> None:
    from tests.profiles import images

    headers, _ = await _signed_in(live_client)
    folder = live_app.state.settings.upload_dir / "avatars"
    folder.mkdir(parents=True, exist_ok=True)
    before = set(folder.iterdir())  # other tests' avatars share the folder
    responses = await asyncio.gather(
        *(
            live_client.put(
                "/api/v1/users/me/avatar",
                files={"file": ("a.png", images.png(), "image/png")},
                headers=headers,
            )
            for _ in range(5)
        )
    )
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert len(set(folder.iterdir()) - before) == 1
    assert (await live_client.delete("/api/v1/users/me/avatar", headers=headers)).status_code == 204
    assert set(folder.iterdir()) == before
