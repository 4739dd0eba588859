"""Membership changes side by side, through the served app on a real pool (each request commits):
the workspace lock makes them run one after another, and each decides on what the last one left."""

from __future__ import annotations

import asyncio
from typing import Any

from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from tests.factories import signed_in, unique_email
from tests.workspaces.helpers import add_member, create_ws

ROUNDS, EACH_WAY = 8, 6


async def _owner_and_admin(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any], dict[str, str], str]:
    owner, owner_headers = await signed_in(live_client, email=unique_email("relay-owner"))
    other, other_headers = await signed_in(live_client, email=unique_email("relay-admin"))
    live_client.cookies.clear()
    ws = await create_ws(live_client, owner_headers, name="Relay")
    async with AsyncSession(live_engine) as session:
        await add_member(session, ws["id"], other["id"], "admin")
    return owner, owner_headers, other, other_headers, str(ws["id"])


async def test_transfers_back_and_forth_at_once_keep_owner_id_and_the_owner_row_in_step(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    """Each transfer re-reads the workspace under its lock: `owner_id` never keeps a stale value."""
    owner, owner_headers, other, other_headers, ws = await _owner_and_admin(live_client, live_engine)
    url = f"/api/v1/workspaces/{ws}"
    for _ in range(ROUNDS):
        answers = await asyncio.gather(
            *(
                live_client.post(f"{url}/transfer", json={"user_id": to["id"]}, headers=headers)
                for _ in range(EACH_WAY)
                for to, headers in ((other, owner_headers), (owner, other_headers))
            )
        )
        assert all(a.status_code in (200, 403, 422) for a in answers), [a.text for a in answers]
        members = (await live_client.get(f"{url}/members", headers=owner_headers)).json()["items"]
        owners = [m["user_id"] for m in members if m["role"] == "owner"]
        workspace = (await live_client.get(url, headers=owner_headers)).json()
        assert owners == [workspace["owner_id"]]
        assert (workspace["my_role"] == "owner") == (workspace["owner_id"] == owner["id"])


async def test_invitations_to_one_address_at_once_leave_one_pending(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    """A new invitation replaces the pending one, also side by side: no spare token stays usable."""
    _, owner_headers, _, _, ws = await _owner_and_admin(live_client, live_engine)
    email = unique_email("invited")
    answers = await asyncio.gather(
        *(
            live_client.post(
                f"/api/v1/workspaces/{ws}/invitations",
                json={"email": email, "role": "viewer" if i else "admin"},
                headers=owner_headers,
            )
            for i in range(10)
        )
    )
    assert [a.status_code for a in answers] == [201] * 10
    listed = (
        await live_client.get(f"/api/v1/workspaces/{ws}/invitations?limit=50", headers=owner_headers)
    ).json()
    statuses = sorted(i["status"] for i in listed["items"] if i["email"] == email)
    assert statuses == ["pending"] + ["revoked"] * 9


async def test_accept_beside_a_revoke_and_a_new_invitation_never_deadlocks(
    live_client: AsyncClient, live_engine: AsyncEngine
) -> None:
    """Accept, revoke and re-invite all lock the workspace first, then the invitation: each round
    ends with a coherent answer on every side and no 500 (PostgreSQL would detect a deadlock)."""
    from sqlalchemy import update

    from authgate.users.models import User

    _, owner_headers, _, _, ws = await _owner_and_admin(live_client, live_engine)
    for round_ in range(ROUNDS):
        guest, guest_headers = await signed_in(live_client, email=unique_email(f"guest{round_}"))
        live_client.cookies.clear()
        async with live_engine.begin() as conn:
            await conn.execute(update(User).where(User.email == guest["email"]).values(email_verified=True))
        url = f"/api/v1/workspaces/{ws}/invitations"
        invited = await live_client.post(
            url, json={"email": guest["email"], "role": "member"}, headers=owner_headers
        )
        token, invitation_id = invited.json()["token"], invited.json()["id"]
        accept, revoke, again = await asyncio.gather(
            live_client.post("/api/v1/invitations/accept", json={"token": token}, headers=guest_headers),
            live_client.delete(f"{url}/{invitation_id}", headers=owner_headers),
            live_client.post(url, json={"email": guest["email"], "role": "viewer"}, headers=owner_headers),
        )
        assert accept.status_code in (200, 400), accept.text
        if accept.status_code == 200:  # it went first: the others see a member
            assert revoke.status_code == 409 and again.status_code == 409, (revoke.text, again.text)
        else:
            assert accept.json()["code"] == "token_invalid"
            assert revoke.status_code == 204 and again.status_code == 201, (revoke.text, again.text)
