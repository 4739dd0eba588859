"""Workspaces over HTTP (SPEC §8), on both engines."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.db import utcnow
from authgate.outbox.models import OutboxMessage
from authgate.security.opaque import hash_token
from authgate.workspaces.models import Workspace, WorkspaceInvitation, WorkspaceMember
from tests.factories import PASSWORD, assert_problem, signed_in
from tests.ratelimit.test_limits import assert_rate_limited, use_limits
from tests.workspaces.helpers import (
    BOUND_HEADER,
    add_member,
    create_ws,
    deactivate,
    grant_admin,
    install_bound_key_override,
    verify_email,
)

WS = "/api/v1/workspaces"


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


async def actions(db: AsyncSession, target_id: Any) -> list[str]:
    rows = await db.scalars(
        select(AuditEvent.action).where(AuditEvent.target_id == str(target_id)).order_by(AuditEvent.seq)
    )
    return list(rows.all())


# --- create, read, list ----------------------------------------------------------------------


async def test_create_returns_workspace_with_owner_role(client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(client)
    response = await client.post(WS, json={"name": "  Acme Inc ", "description": "Rockets"}, headers=headers)
    assert response.status_code == 201, response.text
    ws = response.json()
    assert set(ws) == {"id", "slug", "name", "description", "owner_id", "my_role", "created_at", "updated_at"}
    assert ws["slug"] == "acme-inc"
    assert ws["name"] == "Acme Inc"
    assert ws["description"] == "Rockets"
    assert ws["owner_id"] == user["id"]
    assert ws["my_role"] == "owner"
    assert await actions(db, ws["id"]) == ["workspace.created"]
    member = await db.scalar(
        select(WorkspaceMember).where(WorkspaceMember.workspace_id == uuid.UUID(ws["id"]))
    )
    assert member is not None
    assert member.role == "owner"


async def test_generated_slugs_get_a_suffix_on_collision(client: AsyncClient) -> None:
    _, headers = await signed_in(client)
    slugs = [(await create_ws(client, headers, name="Café Déjà Vu"))["slug"] for _ in range(3)]
    assert slugs == ["cafe-deja-vu", "cafe-deja-vu-2", "cafe-deja-vu-3"]
    assert (await create_ws(client, headers, name="!!"))["slug"] == "workspace"
    assert (await create_ws(client, headers, name="AB"))["slug"] == "ab-workspace"


async def test_given_slug_taken_is_409(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    await create_ws(client, headers, name="One", slug="team-one")
    _, other = await signed_in(client)
    response = await client.post(WS, json={"name": "Two", "slug": "team-one"}, headers=other)
    assert_problem(response, 409, "slug_taken")
    assert await count(db, Workspace, Workspace.name == "Two") == 0


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "slug": "ab"},
        {"name": "x", "slug": "a" * 49},
        {"name": "x", "slug": "Upper"},
        {"name": "x", "slug": "-lead"},
        {"name": "x", "slug": "trail-"},
        {"name": "x", "slug": "dou--ble"},
        {"name": "x", "slug": "under_score"},
        {"name": "x", "slug": str(uuid.UUID(int=7))},
        {"name": ""},
        {"name": "x" * 201},
        {"name": "x", "description": "d" * 2001},
        {"name": "x", "owner_id": str(uuid.UUID(int=1))},
        {"slug": "no-name"},
    ],
)
async def test_create_bad_input_is_422_and_creates_nothing(
    client: AsyncClient, db: AsyncSession, body: dict[str, Any]
) -> None:
    _, headers = await signed_in(client)
    before = await count(db, Workspace)
    assert_problem(await client.post(WS, json=body, headers=headers), 422, "validation_error")
    assert await count(db, Workspace) == before


async def test_create_needs_authentication(client: AsyncClient) -> None:
    assert_problem(await client.post(WS, json={"name": "x"}), 401, "not_authenticated")


async def test_read_by_id_or_slug_and_list_mine(client: AsyncClient, db: AsyncSession) -> None:
    user, headers = await signed_in(client)
    mine = await create_ws(client, headers, name="Mine")
    _other_user, other_headers = await signed_in(client)
    theirs = await create_ws(client, other_headers, name="Theirs")
    await add_member(db, theirs["id"], user["id"], "viewer")
    await create_ws(client, other_headers, name="Hidden")
    for ref in (mine["id"], mine["slug"]):
        response = await client.get(f"{WS}/{ref}", headers=headers)
        assert response.status_code == 200
        assert response.json() == mine
    listed = (await client.get(WS, headers=headers)).json()
    assert [(w["name"], w["my_role"]) for w in listed["items"]] == [("Theirs", "viewer"), ("Mine", "owner")]
    assert listed["next_cursor"] is None
    first = (await client.get(WS, params={"limit": 1}, headers=headers)).json()
    assert [w["name"] for w in first["items"]] == ["Theirs"]
    second = (
        await client.get(WS, params={"limit": 1, "cursor": first["next_cursor"]}, headers=headers)
    ).json()
    assert [w["name"] for w in second["items"]] == ["Mine"]
    assert second["next_cursor"] is None


async def test_unknown_workspace_and_non_member_look_the_same(client: AsyncClient) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    _, stranger = await signed_in(client)
    for ref in (ws["id"], ws["slug"], str(uuid.uuid4()), "no-such-slug", "x" * 300):
        body = assert_problem(await client.get(f"{WS}/{ref}", headers=stranger), 404, "not_found")
        assert ws["name"] not in str(body)


# --- update and delete -----------------------------------------------------------------------


async def test_admin_updates_workspace_and_audit_records_it(client: AsyncClient, db: AsyncSession) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner, name="Old")
    admin, admin_headers = await signed_in(client)
    await add_member(db, ws["id"], admin["id"], "admin")
    response = await client.patch(
        f"{WS}/{ws['slug']}",
        json={"name": "New", "slug": "brand-new", "description": "d"},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["name"], updated["slug"], updated["my_role"]) == ("New", "brand-new", "admin")
    assert (await client.get(f"{WS}/brand-new", headers=owner)).status_code == 200
    assert_problem(await client.get(f"{WS}/{ws['slug']}", headers=owner), 404, "not_found")
    assert await actions(db, ws["id"]) == ["workspace.created", "workspace.updated"]


async def test_update_to_taken_slug_is_409_and_changes_nothing(client: AsyncClient, db: AsyncSession) -> None:
    _, headers = await signed_in(client)
    await create_ws(client, headers, slug="taken-slug")
    ws = await create_ws(client, headers, name="Keep")
    response = await client.patch(
        f"{WS}/{ws['id']}", json={"slug": "taken-slug", "name": "Changed"}, headers=headers
    )
    assert_problem(response, 409, "slug_taken")
    assert (await client.get(f"{WS}/{ws['id']}", headers=headers)).json()["name"] == "Keep"
    for body in ({"slug": "A"}, {"name": None}, {"slug": None}, {"description": None}):
        response = await client.patch(f"{WS}/{ws['id']}", json=body, headers=headers)
        assert_problem(response, 422, "validation_error")
    assert (await client.get(f"{WS}/{ws['id']}", headers=headers)).json()["name"] == "Keep"
    cleared = await client.patch(f"{WS}/{ws['id']}", json={"description": ""}, headers=headers)
    assert cleared.status_code == 200 and cleared.json()["description"] == ""


async def test_owner_soft_deletes_and_it_disappears(client: AsyncClient, db: AsyncSession) -> None:
    _user, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    member, member_headers = await signed_in(client)
    await add_member(db, ws["id"], member["id"], "admin")
    assert_problem(await client.delete(f"{WS}/{ws['id']}", headers=member_headers), 403, "permission_denied")
    assert (await client.delete(f"{WS}/{ws['id']}", headers=owner)).status_code == 204
    row = await db.get(Workspace, uuid.UUID(ws["id"]))
    assert row is not None
    await db.refresh(row)
    assert row.deleted_at is not None
    for headers in (owner, member_headers):
        assert_problem(await client.get(f"{WS}/{ws['id']}", headers=headers), 404, "not_found")
        assert (await client.get(WS, headers=headers)).json()["items"] == []
    assert await actions(db, ws["id"]) == ["workspace.created", "workspace.deleted"]
    # The slug stays reserved.
    assert_problem(
        await client.post(WS, json={"name": "x", "slug": ws["slug"]}, headers=owner), 409, "slug_taken"
    )


# --- members ---------------------------------------------------------------------------------


async def _team(client: AsyncClient, db: AsyncSession) -> dict[str, tuple[dict[str, Any], dict[str, str]]]:
    team = {"owner": await signed_in(client, full_name="The Owner")}
    ws = await create_ws(client, team["owner"][1])
    for role in ("admin", "admin2", "member", "viewer"):
        team[role] = await signed_in(client)
        await add_member(db, ws["id"], team[role][0]["id"], role.rstrip("2"))
    team["ws"] = (ws, {})
    return team


async def test_members_list_shows_people_and_roles(client: AsyncClient, db: AsyncSession) -> None:
    team = await _team(client, db)
    ws = team["ws"][0]
    response = await client.get(f"{WS}/{ws['slug']}/members", headers=team["viewer"][1])
    assert response.status_code == 200
    items = response.json()["items"]
    assert [(m["user_id"], m["role"]) for m in items] == [
        (team[k][0]["id"], k.rstrip("2")) for k in ("owner", "admin", "admin2", "member", "viewer")
    ]
    assert set(items[0]) == {"user_id", "email", "full_name", "role", "joined_at"}
    assert items[0]["full_name"] == "The Owner"
    assert items[0]["email"] == team["owner"][0]["email"]
    page = (
        await client.get(f"{WS}/{ws['slug']}/members", params={"limit": 2}, headers=team["viewer"][1])
    ).json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]


async def test_admin_changes_roles_below_itself_only(client: AsyncClient, db: AsyncSession) -> None:
    team = await _team(client, db)
    ws, admin = team["ws"][0], team["admin"][1]
    url = f"{WS}/{ws['id']}/members"
    response = await client.patch(f"{url}/{team['viewer'][0]['id']}", json={"role": "member"}, headers=admin)
    assert response.status_code == 200
    assert response.json()["role"] == "member"
    denied = [
        (team["viewer"][0]["id"], "admin"),  # not up to the admin's own level
        (team["admin2"][0]["id"], "member"),  # a peer
        (team["owner"][0]["id"], "member"),  # above
        (team["admin"][0]["id"], "member"),  # itself
    ]
    for user_id, role in denied:
        assert_problem(
            await client.patch(f"{url}/{user_id}", json={"role": role}, headers=admin),
            403,
            "permission_denied",
        )
    assert_problem(
        await client.patch(
            f"{url}/{team['viewer'][0]['id']}", json={"role": "owner"}, headers=team["owner"][1]
        ),
        422,
        "validation_error",
    )
    assert_problem(
        await client.patch(f"{url}/{uuid.uuid4()}", json={"role": "member"}, headers=admin), 404, "not_found"
    )
    owner_promotes = await client.patch(
        f"{url}/{team['member'][0]['id']}", json={"role": "admin"}, headers=team["owner"][1]
    )
    assert owner_promotes.json()["role"] == "admin"
    roles = dict(
        (
            await db.execute(
                select(WorkspaceMember.user_id, WorkspaceMember.role).where(
                    WorkspaceMember.workspace_id == uuid.UUID(ws["id"])
                )
            )
        ).all()
    )
    assert roles[uuid.UUID(team["viewer"][0]["id"])] == "member"
    assert roles[uuid.UUID(team["admin2"][0]["id"])] == "admin"
    assert roles[uuid.UUID(team["owner"][0]["id"])] == "owner"
    assert await actions(db, team["viewer"][0]["id"]) == ["user.registered", "member.role_changed"]


async def test_last_owner_cannot_be_demoted_or_leave(client: AsyncClient, db: AsyncSession) -> None:
    team = await _team(client, db)
    ws, (owner_user, owner) = team["ws"][0], team["owner"]
    url = f"{WS}/{ws['id']}/members/{owner_user['id']}"
    assert_problem(await client.patch(url, json={"role": "admin"}, headers=owner), 409, "last_owner")
    assert_problem(await client.delete(url, headers=owner), 409, "last_owner")
    assert_problem(await client.delete(url, headers=team["admin"][1]), 403, "permission_denied")
    assert (
        await count(
            db,
            WorkspaceMember,
            WorkspaceMember.workspace_id == uuid.UUID(ws["id"]),
            WorkspaceMember.role == "owner",
        )
        == 1
    )


async def test_remove_below_and_leave_self(client: AsyncClient, db: AsyncSession) -> None:
    team = await _team(client, db)
    ws = team["ws"][0]
    url = f"{WS}/{ws['id']}/members"
    assert_problem(
        await client.delete(f"{url}/{team['viewer'][0]['id']}", headers=team["member"][1]),
        403,
        "permission_denied",
    )
    assert_problem(
        await client.delete(f"{url}/{team['admin2'][0]['id']}", headers=team["admin"][1]),
        403,
        "permission_denied",
    )
    assert (
        await client.delete(f"{url}/{team['member'][0]['id']}", headers=team["admin"][1])
    ).status_code == 204
    assert (
        await client.delete(f"{url}/{team['viewer'][0]['id']}", headers=team["viewer"][1])
    ).status_code == 204
    assert_problem(await client.get(f"{WS}/{ws['id']}", headers=team["viewer"][1]), 404, "not_found")
    assert (
        await client.delete(f"{url}/{team['admin2'][0]['id']}", headers=team["owner"][1])
    ).status_code == 204
    assert await actions(db, team["member"][0]["id"]) == ["user.registered", "member.removed"]
    assert await actions(db, team["viewer"][0]["id"]) == ["user.registered", "member.left"]
    assert await count(db, WorkspaceMember, WorkspaceMember.workspace_id == uuid.UUID(ws["id"])) == 2


async def test_transfer_moves_ownership(client: AsyncClient, db: AsyncSession) -> None:
    team = await _team(client, db)
    ws, owner = team["ws"][0], team["owner"][1]
    target = team["member"][0]["id"]
    roles_before = await _roles(db, ws["id"])
    assert roles_before[team["owner"][0]["id"]] == "owner"
    assert_problem(
        await client.post(f"{WS}/{ws['id']}/transfer", json={"user_id": target}, headers=team["admin"][1]),
        403,
        "permission_denied",
    )
    stranger, _ = await signed_in(client)
    for user_id in (stranger["id"], team["owner"][0]["id"]):
        response = await client.post(f"{WS}/{ws['id']}/transfer", json={"user_id": user_id}, headers=owner)
        assert_problem(response, 422, "validation_error")
    # Nothing of the refused transfers stuck: same roles, same owner, no event.
    assert await _roles(db, ws["id"]) == roles_before
    db.expire_all()
    row = await db.get(Workspace, uuid.UUID(ws["id"]))
    assert row is not None and str(row.owner_id) == team["owner"][0]["id"]
    assert "workspace.transferred" not in await actions(db, ws["id"])
    response = await client.post(f"{WS}/{ws['id']}/transfer", json={"user_id": target}, headers=owner)
    assert response.status_code == 200, response.text
    assert response.json()["owner_id"] == target
    assert response.json()["my_role"] == "admin"
    roles = dict(
        (
            await db.execute(
                select(WorkspaceMember.user_id, WorkspaceMember.role).where(
                    WorkspaceMember.workspace_id == uuid.UUID(ws["id"])
                )
            )
        ).all()
    )
    assert roles[uuid.UUID(target)] == "owner"
    assert roles[uuid.UUID(team["owner"][0]["id"])] == "admin"
    assert list(roles.values()).count("owner") == 1
    # The new owner can now leave only after transferring; the old one can leave freely.
    old_owner_url = f"{WS}/{ws['id']}/members/{team['owner'][0]['id']}"
    assert (await client.delete(old_owner_url, headers=owner)).status_code == 204
    assert "workspace.transferred" in await actions(db, ws["id"])


async def _roles(db: AsyncSession, workspace_id: str) -> dict[str, str]:
    rows = await db.execute(
        select(WorkspaceMember.user_id, WorkspaceMember.role).where(
            WorkspaceMember.workspace_id == uuid.UUID(workspace_id)
        )
    )
    return {str(user_id): role for user_id, role in rows.all()}


async def test_an_administrator_hands_over_a_workspace_whose_owner_is_gone(
    client: AsyncClient, db: AsyncSession
) -> None:
    team = await _team(client, db)
    ws, owner_id, target = team["ws"][0], team["owner"][0]["id"], team["member"][0]["id"]
    admin, admin_headers = await signed_in(client)
    url = f"{WS}/{ws['slug']}/transfer"
    assert_problem(await client.post(url, json={"user_id": target}, headers=admin_headers), 404, "not_found")
    await grant_admin(db, admin["id"])
    # While the owner's account is active, the workspace is theirs to give.
    response = await client.post(url, json={"user_id": target}, headers=admin_headers)
    assert_problem(response, 403, "permission_denied")
    await deactivate(db, owner_id)
    before = await _roles(db, ws["id"])
    stranger, _ = await signed_in(client)
    for user_id in (stranger["id"], owner_id, admin["id"]):  # not members, or already the owner
        response = await client.post(url, json={"user_id": user_id}, headers=admin_headers)
        assert_problem(response, 422, "validation_error")
    assert await _roles(db, ws["id"]) == before

    response = await client.post(url, json={"user_id": target}, headers=admin_headers)

    assert response.status_code == 200, response.text
    assert response.json()["owner_id"] == target
    assert response.json()["my_role"] is None  # still not a member
    roles = await _roles(db, ws["id"])
    assert (roles[target], roles[owner_id]) == ("owner", "admin")
    assert list(roles.values()).count("owner") == 1
    assert admin["id"] not in roles
    event = await db.scalar(
        select(AuditEvent)
        .where(AuditEvent.action == "workspace.transferred", AuditEvent.target_id == ws["id"])
        .order_by(AuditEvent.seq.desc())
    )
    assert event is not None
    assert (event.actor_id, event.data) == (admin["id"], {"from": owner_id, "to": target})


async def test_a_member_holding_workspaces_admin_takes_over_only_from_a_gone_owner(
    client: AsyncClient, db: AsyncSession
) -> None:
    team = await _team(client, db)
    ws, (viewer, viewer_headers) = team["ws"][0], team["viewer"]
    url = f"{WS}/{ws['id']}/transfer"
    await grant_admin(db, viewer["id"])
    response = await client.post(url, json={"user_id": viewer["id"]}, headers=viewer_headers)
    assert_problem(response, 403, "permission_denied")
    await deactivate(db, team["owner"][0]["id"])
    response = await client.post(url, json={"user_id": viewer["id"]}, headers=viewer_headers)
    assert response.status_code == 200, response.text
    assert (response.json()["owner_id"], response.json()["my_role"]) == (viewer["id"], "owner")
    assert (await _roles(db, ws["id"]))[team["owner"][0]["id"]] == "admin"


async def test_ownership_goes_only_to_an_account_in_good_standing(
    client: AsyncClient, db: AsyncSession
) -> None:
    team = await _team(client, db)
    ws, owner = team["ws"][0], team["owner"][1]
    member_id, admin_id = team["member"][0]["id"], team["admin"][0]["id"]
    await deactivate(db, member_id)
    deleted = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=team["admin"][1]
    )
    assert deleted.status_code == 204
    for user_id in (member_id, admin_id):  # deactivated; soft-deleted (the membership row stays)
        response = await client.post(f"{WS}/{ws['id']}/transfer", json={"user_id": user_id}, headers=owner)
        assert_problem(response, 422, "validation_error")
    assert (await _roles(db, ws["id"]))[team["owner"][0]["id"]] == "owner"


async def test_an_administrators_key_transfers_only_within_its_binding_and_scopes(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    install_bound_key_override(app)
    team = await _team(client, db)
    ws, target = team["ws"][0], team["member"][0]["id"]
    admin, admin_headers = await signed_in(client)
    await grant_admin(db, admin["id"])
    await deactivate(db, team["owner"][0]["id"])
    url = f"{WS}/{ws['id']}/transfer"
    bound_elsewhere = {**admin_headers, BOUND_HEADER: str(uuid.uuid4())}
    assert_problem(
        await client.post(url, json={"user_id": target}, headers=bound_elsewhere), 404, "not_found"
    )
    unscoped = await client.post("/api/v1/api-keys", json={"name": "no workspaces"}, headers=admin_headers)
    assert unscoped.status_code == 201, unscoped.text
    key = {"X-API-Key": unscoped.json()["key"]}
    assert_problem(await client.post(url, json={"user_id": target}, headers=key), 404, "not_found")
    assert (await _roles(db, ws["id"]))[target] == "member"


# --- invitations -----------------------------------------------------------------------------


async def _invite(
    client: AsyncClient, ws: dict[str, Any], headers: dict[str, str], email: str, role: str = "member"
) -> dict[str, Any]:
    response = await client.post(
        f"{WS}/{ws['id']}/invitations", json={"email": email, "role": role}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_invite_stores_hash_emails_link_and_lists(client: AsyncClient, db: AsyncSession) -> None:
    _, owner = await signed_in(client, full_name="Olive Owner")
    ws = await create_ws(client, owner, name="Acme")
    invitation = await _invite(client, ws, owner, "Guest@Example.com", "admin")
    assert invitation["status"] == "pending"
    assert invitation["role"] == "admin"
    assert invitation["email"] == "Guest@example.com"
    token = invitation["token"]
    row = await db.get(WorkspaceInvitation, uuid.UUID(invitation["id"]))
    assert row is not None
    assert row.token_hash == hash_token(token)
    assert token not in row.token_hash
    assert row.expires_at - row.created_at == timedelta(days=7)
    message = await db.scalar(select(OutboxMessage).where(OutboxMessage.recipient == "Guest@example.com"))
    assert message is not None
    assert message.template == "workspace_invitation"
    assert message.channel == "email"
    assert message.context["workspace_name"] == "Acme"
    assert message.context["inviter"] == "Olive Owner"
    assert message.context["role"] == "admin"
    assert token in message.context["link"]
    listed = (await client.get(f"{WS}/{ws['id']}/invitations", headers=owner)).json()
    assert [i["id"] for i in listed["items"]] == [invitation["id"]]
    assert "token" not in listed["items"][0]
    assert token not in str(listed)
    assert await actions(db, invitation["id"]) == ["invitation.created"]


async def test_invite_role_rules_and_bad_input(client: AsyncClient, db: AsyncSession) -> None:
    team = await _team(client, db)
    ws, admin = team["ws"][0], team["admin"][1]
    url = f"{WS}/{ws['id']}/invitations"
    before = await count(db, WorkspaceInvitation)
    member_email = team["member"][0]["email"].upper()
    recipients = ["a@example.com", "nope", member_email.lower()]
    mail_before = await count(db, OutboxMessage, func.lower(OutboxMessage.recipient).in_(recipients))
    assert_problem(
        await client.post(url, json={"email": "a@example.com", "role": "admin"}, headers=admin),
        403,
        "permission_denied",
    )
    for body in (
        {"email": "a@example.com", "role": "owner"},
        {"email": "nope"},
        {"email": "a@example.com", "x": 1},
    ):
        assert_problem(await client.post(url, json=body, headers=admin), 422, "validation_error")
    assert_problem(await client.post(url, json={"email": member_email}, headers=admin), 409, "already_member")
    assert await count(db, WorkspaceInvitation) == before
    assert await count(db, OutboxMessage, func.lower(OutboxMessage.recipient).in_(recipients)) == mail_before


async def test_invitations_are_limited_per_inviting_account(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    """A fresh, unverified account could name a workspace anything and have the service email it
    to any address, without end. Past `INVITATIONS_PER_USER` it is 429 with `Retry-After`, and
    nothing is created or queued, in any of the account's workspaces; other accounts are unaffected."""
    use_limits(app, invitations_per_user="3/hour")
    spammer, headers = await signed_in(client, full_name="WIN A PRIZE")
    assert spammer["email_verified"] is False
    ws = await create_ws(client, headers, name="WIN A PRIZE visit http://evil.example")
    second_ws = await create_ws(client, headers, name="Another prize")
    for n in range(3):
        response = await client.post(
            f"{WS}/{ws['id']}/invitations", json={"email": f"victim{n}@example.com"}, headers=headers
        )
        assert response.status_code == 201, response.text
        assert response.headers["ratelimit-limit"] == "3"
        assert response.headers["ratelimit-remaining"] == str(2 - n)
    victim = func.lower(OutboxMessage.recipient) == "victim3@example.com"
    for target in (ws, second_ws):  # counted per account, not per workspace
        refused = await client.post(
            f"{WS}/{target['id']}/invitations", json={"email": "victim3@example.com"}, headers=headers
        )
        assert_rate_limited(refused, 3)
    assert await count(db, OutboxMessage, victim) == 0
    assert (
        await count(db, WorkspaceInvitation, WorkspaceInvitation.email_normalized == "victim3@example.com")
        == 0
    )
    _, other = await signed_in(client)
    own = await create_ws(client, other, name="Other team")
    assert (await _invite(client, own, other, "victim3@example.com"))["status"] == "pending"
    assert await count(db, OutboxMessage, victim) == 1


async def test_an_admin_neither_revokes_nor_replaces_an_invitation_at_their_own_rank(
    client: AsyncClient, db: AsyncSession
) -> None:
    """Admins manage what is strictly below them: the owner's admin invitation is not theirs to undo."""
    team = await _team(client, db)
    ws, owner, admin = team["ws"][0], team["owner"][1], team["admin"][1]
    invitation = await _invite(client, ws, owner, "peer@example.com", "admin")
    url = f"{WS}/{ws['id']}/invitations"
    to_peer = func.lower(OutboxMessage.recipient) == "peer@example.com"
    assert await count(db, OutboxMessage, to_peer) == 1
    assert_problem(await client.delete(f"{url}/{invitation['id']}", headers=admin), 403, "permission_denied")
    replacing = await client.post(url, json={"email": "PEER@example.com", "role": "viewer"}, headers=admin)
    assert_problem(replacing, 403, "permission_denied")
    assert await count(db, OutboxMessage, to_peer) == 1  # the refused replacement mailed nothing
    listed = (await client.get(url, headers=owner)).json()["items"]
    assert [(i["id"], i["status"]) for i in listed] == [(invitation["id"], "pending")]
    below = await _invite(client, ws, owner, "below@example.com", "member")
    assert (await client.delete(f"{url}/{below['id']}", headers=admin)).status_code == 204
    assert (await client.delete(f"{url}/{invitation['id']}", headers=owner)).status_code == 204


async def test_accept_joins_with_role_once(client: AsyncClient, db: AsyncSession) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    guest, guest_headers = await signed_in(client)
    await verify_email(db, guest["id"])
    invitation = await _invite(client, ws, owner, guest["email"].upper(), "viewer")
    response = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation["token"]}, headers=guest_headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["workspace_id"] == ws["id"]
    assert body["user_id"] == guest["id"]
    assert body["role"] == "viewer"
    assert body["workspace_slug"] == ws["slug"]
    # The members list's item, with the workspace it belongs to.
    listed_member = next(
        m
        for m in (await client.get(f"{WS}/{ws['id']}/members", headers=owner)).json()["items"]
        if m["user_id"] == guest["id"]
    )
    assert {k: body[k] for k in listed_member} == listed_member
    assert set(body) == {*listed_member, "workspace_id", "workspace_slug", "workspace_name"}
    assert (await client.get(f"{WS}/{ws['id']}", headers=guest_headers)).json()["my_role"] == "viewer"
    again = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation["token"]}, headers=guest_headers
    )
    assert_problem(again, 400, "token_invalid")
    listed = (await client.get(f"{WS}/{ws['id']}/invitations", headers=owner)).json()["items"]
    assert listed[0]["status"] == "accepted"
    assert await actions(db, invitation["id"]) == ["invitation.created", "invitation.accepted"]
    assert_problem(
        await client.delete(f"{WS}/{ws['id']}/invitations/{invitation['id']}", headers=owner), 409, "conflict"
    )


async def test_accept_refusals_leave_the_invitation_usable(client: AsyncClient, db: AsyncSession) -> None:
    _owner_user, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    guest, guest_headers = await signed_in(client)
    invitation = await _invite(client, ws, owner, guest["email"])
    accept = "/api/v1/invitations/accept"
    body = {"token": invitation["token"]}
    assert_problem(await client.post(accept, json=body, headers=guest_headers), 403, "email_not_verified")
    other, other_headers = await signed_in(client)
    await verify_email(db, other["id"])
    assert_problem(
        await client.post(accept, json=body, headers=other_headers), 403, "invitation_email_mismatch"
    )
    assert_problem(
        await client.post(accept, json={"token": "wrong"}, headers=guest_headers), 400, "token_invalid"
    )
    assert_problem(await client.post(accept, json={}, headers=guest_headers), 422, "validation_error")
    assert_problem(await client.post(accept, json=body), 401, "not_authenticated")
    assert await count(db, WorkspaceMember, WorkspaceMember.workspace_id == uuid.UUID(ws["id"])) == 1
    await verify_email(db, guest["id"])
    assert (await client.post(accept, json=body, headers=guest_headers)).status_code == 200


async def test_a_deleted_members_address_can_be_invited(client: AsyncClient, db: AsyncSession) -> None:
    """A deleted account is not in the members list, so it is not `already_member` either."""
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    gone, gone_headers = await signed_in(client)
    await add_member(db, ws["id"], gone["id"], "viewer")
    deleted = await client.request(
        "DELETE", "/api/v1/users/me", json={"password": PASSWORD}, headers=gone_headers
    )
    assert deleted.status_code == 204
    members = (await client.get(f"{WS}/{ws['id']}/members", headers=owner)).json()["items"]
    assert gone["id"] not in {m["user_id"] for m in members}
    await _invite(client, ws, owner, gone["email"])


async def test_already_member_gets_409(client: AsyncClient, db: AsyncSession) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    guest, guest_headers = await signed_in(client)
    await verify_email(db, guest["id"])
    invitation = await _invite(client, ws, owner, guest["email"])
    await add_member(db, ws["id"], guest["id"], "viewer")
    response = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation["token"]}, headers=guest_headers
    )
    assert_problem(response, 409, "already_member")
    row = await db.get(WorkspaceInvitation, uuid.UUID(invitation["id"]))
    assert row is not None
    await db.refresh(row)
    assert row.accepted_at is None
    assert row.status == "pending"


async def test_expired_revoked_and_replaced_invitations_fail(client: AsyncClient, db: AsyncSession) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    guest, guest_headers = await signed_in(client)
    await verify_email(db, guest["id"])
    accept = "/api/v1/invitations/accept"
    expired = await _invite(client, ws, owner, "someone@example.com")
    await db.execute(
        update(WorkspaceInvitation)
        .where(WorkspaceInvitation.id == uuid.UUID(expired["id"]))
        .values(expires_at=utcnow() - timedelta(seconds=1), email_normalized=guest["email"])
    )
    await db.commit()
    assert_problem(
        await client.post(accept, json={"token": expired["token"]}, headers=guest_headers),
        400,
        "token_invalid",
    )
    first = await _invite(client, ws, owner, guest["email"])
    second = await _invite(client, ws, owner, guest["email"])  # replaces the first
    assert_problem(
        await client.post(accept, json={"token": first["token"]}, headers=guest_headers), 400, "token_invalid"
    )
    revoke = await client.delete(f"{WS}/{ws['id']}/invitations/{second['id']}", headers=owner)
    assert revoke.status_code == 204
    assert (
        await client.delete(f"{WS}/{ws['id']}/invitations/{second['id']}", headers=owner)
    ).status_code == 204
    assert_problem(
        await client.post(accept, json={"token": second["token"]}, headers=guest_headers),
        400,
        "token_invalid",
    )
    assert await actions(db, second["id"]) == ["invitation.created", "invitation.revoked"]
    assert_problem(
        await client.delete(f"{WS}/{ws['id']}/invitations/{uuid.uuid4()}", headers=owner), 404, "not_found"
    )
    statuses = {
        i["id"]: i["status"]
        for i in (await client.get(f"{WS}/{ws['id']}/invitations", headers=owner)).json()["items"]
    }
    assert statuses == {expired["id"]: "expired", first["id"]: "revoked", second["id"]: "revoked"}


async def test_invitation_of_deleted_workspace_is_invalid(client: AsyncClient, db: AsyncSession) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    guest, guest_headers = await signed_in(client)
    await verify_email(db, guest["id"])
    invitation = await _invite(client, ws, owner, guest["email"])
    assert (await client.delete(f"{WS}/{ws['id']}", headers=owner)).status_code == 204
    response = await client.post(
        "/api/v1/invitations/accept", json={"token": invitation["token"]}, headers=guest_headers
    )
    assert_problem(response, 400, "token_invalid")


async def test_another_workspaces_invitation_is_404(client: AsyncClient) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner)
    other = await create_ws(client, owner, name="Other")
    invitation = await _invite(client, other, owner, "x@example.com")
    response = await client.delete(f"{WS}/{ws['id']}/invitations/{invitation['id']}", headers=owner)
    assert_problem(response, 404, "not_found")


# --- admins and workspace-bound API keys -----------------------------------------------------


async def test_workspaces_admin_lists_and_reads_all(client: AsyncClient, db: AsyncSession) -> None:
    _, owner = await signed_in(client)
    ws = await create_ws(client, owner, name="Private")
    deleted = await create_ws(client, owner, name="Gone")
    await client.delete(f"{WS}/{deleted['id']}", headers=owner)
    admin, admin_headers = await signed_in(client)
    assert_problem(
        await client.get(WS, params={"all": "true"}, headers=admin_headers), 403, "permission_denied"
    )
    await grant_admin(db, admin["id"])
    listed = (await client.get(WS, params={"all": "true"}, headers=admin_headers)).json()["items"]
    ids = {w["id"]: w["my_role"] for w in listed}
    assert ids.get(ws["id"], "missing") is None
    assert deleted["id"] not in ids
    assert (await client.get(WS, headers=admin_headers)).json()["items"] == []
    read = await client.get(f"{WS}/{ws['slug']}", headers=admin_headers)
    assert read.status_code == 200
    assert read.json()["my_role"] is None
    assert (await client.get(f"{WS}/{ws['slug']}/members", headers=admin_headers)).status_code == 200
    # Inspecting is not managing: everything else stays hidden.
    assert_problem(
        await client.get(f"{WS}/{ws['slug']}/invitations", headers=admin_headers), 404, "not_found"
    )
    assert_problem(
        await client.patch(f"{WS}/{ws['slug']}", json={"name": "x"}, headers=admin_headers), 404, "not_found"
    )
    assert_problem(await client.get(f"{WS}/{deleted['id']}", headers=admin_headers), 404, "not_found")


async def test_bound_api_key_reaches_only_its_workspace(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    install_bound_key_override(app)
    user, headers = await signed_in(client)
    one = await create_ws(client, headers, name="One")
    two = await create_ws(client, headers, name="Two")
    key = {**headers, BOUND_HEADER: one["id"]}
    assert (await client.get(f"{WS}/{one['slug']}", headers=key)).status_code == 200
    assert_problem(await client.get(f"{WS}/{two['slug']}", headers=key), 404, "not_found")
    assert_problem(await client.patch(f"{WS}/{two['id']}", json={"name": "x"}, headers=key), 404, "not_found")
    assert [w["id"] for w in (await client.get(WS, headers=key)).json()["items"]] == [one["id"]]
    assert len((await client.get(WS, headers=headers)).json()["items"]) == 2
    before = await count(db, Workspace)
    assert_problem(await client.post(WS, json={"name": "Three"}, headers=key), 403, "permission_denied")
    assert await count(db, Workspace) == before
    _, other_owner = await signed_in(client)
    elsewhere = await create_ws(client, other_owner, name="Elsewhere")
    await verify_email(db, user["id"])
    invitation = await _invite(client, elsewhere, other_owner, user["email"])
    accept = await client.post("/api/v1/invitations/accept", json={"token": invitation["token"]}, headers=key)
    assert_problem(accept, 403, "permission_denied")
    await grant_admin(db, user["id"])
    assert [w["id"] for w in (await client.get(WS, params={"all": "true"}, headers=key)).json()["items"]] == [
        one["id"]
    ]
    event = await db.scalar(
        select(AuditEvent).where(AuditEvent.action == "workspace.created", AuditEvent.target_id == one["id"])
    )
    assert event is not None
    assert event.actor_type == "user"
    assert event.actor_id == user["id"]


async def test_openapi_documents_workspace_routes(client: AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    accept = schema["paths"]["/api/v1/invitations/accept"]["post"]
    assert {"400", "401", "403", "409"} <= set(accept["responses"])
    assert "invitation_email_mismatch" in accept["responses"]["403"]["description"]
    listing = schema["paths"]["/api/v1/workspaces"]["get"]
    assert "workspaces:admin" in listing["description"]
    assert "all=true" in listing["description"]
    for path, operations in schema["paths"].items():
        if path.startswith("/api/v1/workspaces/{"):
            for operation in operations.values():
                assert operation.get("description"), path
                assert {"403", "404"} <= set(operation["responses"]), path
