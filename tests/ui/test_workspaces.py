"""Console workspace pages over HTTP, on both engines: the same rules as the API, as pages."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.db import utcnow
from authgate.outbox.models import OutboxMessage
from authgate.security.opaque import hash_token
from authgate.workspaces.models import Workspace, WorkspaceInvitation, WorkspaceMember
from tests.factories import register
from tests.ui.conftest import post_form, ui_sign_in
from tests.workspaces.helpers import deactivate, grant_admin, make_workspace_rows, verify_email


async def sign_in_as(client: AsyncClient, user: dict[str, Any]) -> None:
    client.cookies.clear()
    await ui_sign_in(client, str(user["email"]))


async def team(client: AsyncClient, db: AsyncSession) -> tuple[dict[str, dict[str, Any]], Workspace]:
    """Users in every role of one workspace, plus an outsider; nobody signed in yet."""
    users = {role: await register(client) for role in ("owner", "admin", "member", "viewer", "outsider")}
    members = {role: users[role]["id"] for role in ("owner", "admin", "member", "viewer")}
    workspace, _ = await make_workspace_rows(db, members)
    client.cookies.clear()
    return users, workspace


async def role_of(db: AsyncSession, workspace_id: uuid.UUID, user_id: str) -> str | None:
    row = await db.scalar(
        select(WorkspaceMember.role)
        .where(WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == uuid.UUID(user_id))
        .execution_options(populate_existing=True)
    )
    return row


async def count(db: AsyncSession, model: Any, *where: Any) -> int:
    return int(await db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def is_error_page(response: Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in response.text


# --- sign-in, list, create ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/ui/workspaces", "/ui/workspaces/acme/members", "/ui/invitations/accept?token=abc"]
)
async def test_pages_redirect_to_sign_in(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"].startswith("/ui/login?next=/ui/")


async def test_form_posts_without_a_session_redirect(client: AsyncClient) -> None:
    await client.get("/ui/login")
    response = await post_form(client, "/ui/workspaces", {"name": "Nope"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"


async def test_create_and_list_workspaces(
    client: AsyncClient, db: AsyncSession, ui_user: dict[str, Any]
) -> None:
    page = await client.get("/ui/workspaces")
    assert page.status_code == 200
    assert 'href="/ui/workspaces" aria-current="page"' in page.text
    response = await post_form(
        client, "/ui/workspaces", {"name": " Acme Inc ", "slug": "", "description": "Hi"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/workspaces/acme-inc?notice=workspace_created"
    overview = await client.get(response.headers["location"])
    assert overview.status_code == 200
    assert "You are its owner." in overview.text and "Acme Inc" in overview.text
    assert "Transfer ownership" in overview.text and "Delete workspace" in overview.text
    workspace = await db.scalar(select(Workspace).where(Workspace.slug == "acme-inc"))
    assert workspace is not None and str(workspace.owner_id) == ui_user["id"]
    assert 'href="/ui/workspaces/acme-inc"' in (await client.get("/ui/workspaces")).text


@pytest.mark.parametrize(
    ("form", "field"),
    [({"name": ""}, "name"), ({"name": "Ok", "slug": "Bad Slug"}, "slug"), ({"name": "x" * 201}, "name")],
)
async def test_create_bad_input_is_422_and_creates_nothing(
    client: AsyncClient, db: AsyncSession, ui_user: dict[str, Any], form: dict[str, str], field: str
) -> None:
    before = await count(db, Workspace)
    response = await post_form(client, "/ui/workspaces", form)
    assert response.status_code == 422
    assert f'id="error-{field}"' in response.text
    assert await count(db, Workspace) == before


async def test_create_with_a_taken_slug_is_409(
    client: AsyncClient, db: AsyncSession, ui_user: dict[str, Any]
) -> None:
    assert (await post_form(client, "/ui/workspaces", {"name": "One", "slug": "team-one"})).status_code == 303
    response = await post_form(client, "/ui/workspaces", {"name": "Two", "slug": "team-one"})
    assert response.status_code == 409
    assert 'id="error-slug"' in response.text
    assert str(ui_user["email"]) in response.text  # the signed-in chrome survives the rollback
    assert await count(db, Workspace, Workspace.name == "Two") == 0


async def test_create_with_bad_csrf_is_403(
    client: AsyncClient, db: AsyncSession, ui_user: dict[str, Any]
) -> None:
    before = await count(db, Workspace)
    response = await client.post("/ui/workspaces", data={"name": "Forged", "csrf_token": "nope"})
    assert response.status_code == 403
    assert await count(db, Workspace) == before


# --- who sees what -----------------------------------------------------------------------------


async def test_non_members_get_the_404_page_like_unknown_workspaces(
    client: AsyncClient, db: AsyncSession
) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["outsider"])
    for slug in (ws.slug, "no-such-workspace", str(ws.id)):
        for suffix in ("", "/members", "/invitations"):
            is_error_page(await client.get(f"/ui/workspaces/{slug}{suffix}"), 404)
    before = (ws.name, await count(db, WorkspaceMember, WorkspaceMember.workspace_id == ws.id))
    for action, form in (
        ("", {"name": "Taken over"}),
        ("/delete", {"confirm_slug": ws.slug}),
        (f"/members/{users['member']['id']}/remove", {}),
        ("/invitations", {"email": "x@example.com", "role": "viewer"}),
    ):
        is_error_page(await post_form(client, f"/ui/workspaces/{ws.slug}{action}", form), 404)
    await db.refresh(ws)
    assert (ws.name, await count(db, WorkspaceMember, WorkspaceMember.workspace_id == ws.id)) == before
    assert ws.slug not in (await client.get("/ui/workspaces")).text


async def test_viewer_reads_but_gets_403_pages_for_admin_work(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["viewer"])
    overview = await client.get(f"/ui/workspaces/{ws.slug}")
    assert overview.status_code == 200
    assert 'action="/ui/workspaces/' + ws.slug + '/transfer"' not in overview.text
    assert "/invitations" not in overview.text  # the tab is hidden
    members = await client.get(f"/ui/workspaces/{ws.slug}/members")
    assert members.status_code == 200 and users["owner"]["email"] in members.text
    assert "Change role" not in members.text
    is_error_page(await client.get(f"/ui/workspaces/{ws.slug}/invitations"), 403)
    is_error_page(await post_form(client, f"/ui/workspaces/{ws.slug}", {"name": "Renamed"}), 403)
    is_error_page(await post_form(client, f"/ui/workspaces/{ws.slug}/delete", {"confirm_slug": ws.slug}), 403)
    await db.refresh(ws)
    assert ws.name == "Walk" and ws.deleted_at is None


# --- overview: edit, delete, transfer ----------------------------------------------------------


async def test_admin_edits_the_workspace(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["admin"])
    page = await client.get(f"/ui/workspaces/{ws.slug}")
    assert "Save changes" in page.text and "Delete workspace" not in page.text
    response = await post_form(
        client, f"/ui/workspaces/{ws.slug}", {"name": "Renamed", "slug": "renamed-ws", "description": "New"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/workspaces/renamed-ws?notice=saved"
    await db.refresh(ws)
    assert (ws.name, ws.slug, ws.description) == ("Renamed", "renamed-ws", "New")


async def test_edit_bad_input_and_taken_slug_change_nothing(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    other, _ = await make_workspace_rows(db, {"owner": users["outsider"]["id"]})
    await sign_in_as(client, users["owner"])
    bad = await post_form(client, f"/ui/workspaces/{ws.slug}", {"name": "", "slug": "ok-slug"})
    assert bad.status_code == 422 and 'id="error-name"' in bad.text
    taken = await post_form(client, f"/ui/workspaces/{ws.slug}", {"name": "New", "slug": other.slug})
    assert taken.status_code == 409 and 'id="error-slug"' in taken.text
    assert 'value="New"' in taken.text  # the submitted values are shown again
    old_slug = ws.slug
    await db.refresh(ws)
    assert (ws.name, ws.slug) == ("Walk", old_slug)


async def test_owner_deletes_after_typing_the_slug(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["owner"])
    wrong = await post_form(client, f"/ui/workspaces/{ws.slug}/delete", {"confirm_slug": "nope"})
    assert wrong.status_code == 422 and 'id="error-confirm_slug"' in wrong.text
    await db.refresh(ws)
    assert ws.deleted_at is None
    is_error_page(await client.post(f"/ui/workspaces/{ws.slug}/delete", data={"csrf_token": "x"}), 403)
    response = await post_form(client, f"/ui/workspaces/{ws.slug}/delete", {"confirm_slug": ws.slug})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/workspaces?notice=workspace_deleted"
    await db.refresh(ws)
    assert ws.deleted_at is not None
    is_error_page(await client.get(f"/ui/workspaces/{ws.slug}"), 404)


async def test_owner_transfers_to_a_member(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["owner"])
    page = await client.get(f"/ui/workspaces/{ws.slug}")
    assert f'value="{users["member"]["id"]}"' in page.text
    bad = await post_form(client, f"/ui/workspaces/{ws.slug}/transfer", {"user_id": users["outsider"]["id"]})
    assert bad.status_code == 422
    assert await role_of(db, ws.id, users["owner"]["id"]) == "owner"
    response = await post_form(
        client, f"/ui/workspaces/{ws.slug}/transfer", {"user_id": users["member"]["id"]}
    )
    assert response.status_code == 303
    assert await role_of(db, ws.id, users["member"]["id"]) == "owner"
    assert await role_of(db, ws.id, users["owner"]["id"]) == "admin"
    is_error_page(
        await post_form(client, f"/ui/workspaces/{ws.slug}/transfer", {"user_id": users["admin"]["id"]}), 403
    )


async def test_an_administrator_hands_over_a_workspace_whose_owner_is_gone_from_its_page(
    client: AsyncClient, db: AsyncSession
) -> None:
    users, ws = await team(client, db)
    await grant_admin(db, users["outsider"]["id"])
    await sign_in_as(client, users["outsider"])
    page = await client.get(f"/ui/workspaces/{ws.slug}")
    assert 'action="/ui/workspaces/' + ws.slug + '/transfer"' not in page.text  # the owner is active
    refused = await post_form(
        client, f"/ui/workspaces/{ws.slug}/transfer", {"user_id": users["member"]["id"]}
    )
    assert refused.status_code == 403
    await deactivate(db, users["owner"]["id"])
    page = await client.get(f"/ui/workspaces/{ws.slug}")
    assert 'action="/ui/workspaces/' + ws.slug + '/transfer"' in page.text
    assert f'value="{users["member"]["id"]}"' in page.text
    assert f'value="{users["owner"]["id"]}"' not in page.text  # the owner is not a candidate
    assert "Delete workspace" not in page.text and "Save changes" not in page.text
    bad = await post_form(client, f"/ui/workspaces/{ws.slug}/transfer", {"user_id": users["owner"]["id"]})
    assert bad.status_code == 422
    assert await role_of(db, ws.id, users["owner"]["id"]) == "owner"

    response = await post_form(
        client, f"/ui/workspaces/{ws.slug}/transfer", {"user_id": users["member"]["id"]}
    )

    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/workspaces/{ws.slug}?notice=ownership_moved"
    assert await role_of(db, ws.id, users["member"]["id"]) == "owner"
    assert await role_of(db, ws.id, users["owner"]["id"]) == "admin"
    assert await role_of(db, ws.id, users["outsider"]["id"]) is None
    notice = await client.get(response.headers["location"])
    assert "The previous owner is now an admin." in notice.text


# --- members -----------------------------------------------------------------------------------


async def test_admin_changes_roles_and_removes_members_below_them(
    client: AsyncClient, db: AsyncSession
) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["admin"])
    page = await client.get(f"/ui/workspaces/{ws.slug}/members")
    assert page.text.count("Change role") == 2  # member and viewer; not the owner, not themselves
    base = f"/ui/workspaces/{ws.slug}/members"
    response = await post_form(client, f"{base}/{users['viewer']['id']}/role", {"role": "member"})
    assert response.status_code == 303
    assert await role_of(db, ws.id, users["viewer"]["id"]) == "member"
    denied = await post_form(client, f"{base}/{users['owner']['id']}/role", {"role": "viewer"})
    assert denied.status_code == 403 and 'role="alert"' in denied.text
    too_high = await post_form(client, f"{base}/{users['member']['id']}/role", {"role": "admin"})
    assert too_high.status_code == 403
    bad = await post_form(client, f"{base}/{users['member']['id']}/role", {"role": "owner"})
    assert bad.status_code == 422
    assert await role_of(db, ws.id, users["member"]["id"]) == "member"
    removed = await post_form(client, f"{base}/{users['member']['id']}/remove", {})
    assert removed.status_code == 303
    assert await role_of(db, ws.id, users["member"]["id"]) is None
    is_error_page(await post_form(client, f"{base}/not-an-id/remove", {}), 404)


async def test_member_leaves_but_owner_cannot(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    base = f"/ui/workspaces/{ws.slug}/members"
    await sign_in_as(client, users["member"])
    denied = await post_form(client, f"{base}/{users['viewer']['id']}/role", {"role": "viewer"})
    assert denied.status_code == 403
    response = await post_form(client, f"{base}/{users['member']['id']}/remove", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/workspaces?notice=left"
    assert await role_of(db, ws.id, users["member"]["id"]) is None
    await sign_in_as(client, users["owner"])
    last = await post_form(client, f"{base}/{users['owner']['id']}/remove", {})
    assert last.status_code == 409
    assert await role_of(db, ws.id, users["owner"]["id"]) == "owner"


# --- invitations -------------------------------------------------------------------------------


async def test_invite_shows_the_link_once_and_revoke(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["admin"])
    base = f"/ui/workspaces/{ws.slug}/invitations"
    page = await client.get(base)
    assert 'value="admin"' not in page.text  # admins invite below themselves
    response = await post_form(client, base, {"email": "New.Person@example.com", "role": "member"})
    assert response.status_code == 200
    link = response.text.split('<code class="secret">')[1].split("</code>")[0]
    assert link.startswith("http") and "/ui/invitations/accept?token=" in link
    token = link.split("token=")[1]
    invitation = await db.scalar(
        select(WorkspaceInvitation).where(WorkspaceInvitation.token_hash == hash_token(token))
    )
    assert invitation is not None and invitation.role == "member"
    sent = await db.scalar(
        select(OutboxMessage)
        .where(OutboxMessage.template == "workspace_invitation")
        .order_by(OutboxMessage.created_at.desc())
    )
    assert sent is not None and sent.context["link"] == link
    again = await client.get(base)
    assert token not in again.text and "new.person@example.com" in again.text.lower()
    revoked = await post_form(client, f"{base}/{invitation.id}/revoke", {})
    assert revoked.status_code == 303
    await db.refresh(invitation)
    assert invitation.revoked_at is not None


@pytest.mark.parametrize(
    ("form", "status"),
    [({"email": "not-an-email", "role": "member"}, 422), ({"email": "x@example.com", "role": "owner"}, 422)],
)
async def test_invite_bad_input_creates_nothing(
    client: AsyncClient, db: AsyncSession, form: dict[str, str], status: int
) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["owner"])
    before = await count(db, WorkspaceInvitation)
    response = await post_form(client, f"/ui/workspaces/{ws.slug}/invitations", form)
    assert response.status_code == status
    assert await count(db, WorkspaceInvitation) == before


async def test_inviting_a_member_is_409(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    await sign_in_as(client, users["owner"])
    before = await count(db, WorkspaceInvitation)
    response = await post_form(
        client, f"/ui/workspaces/{ws.slug}/invitations", {"email": users["member"]["email"], "role": "viewer"}
    )
    assert response.status_code == 409 and 'id="error-email"' in response.text
    assert await count(db, WorkspaceInvitation) == before


# --- accepting ---------------------------------------------------------------------------------


async def invitation_for(db: AsyncSession, ws: Workspace, email: str, role: str = "member") -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    db.add(
        WorkspaceInvitation(
            workspace_id=ws.id,
            email=email,
            email_normalized=email.lower(),
            role=role,
            token_hash=hash_token(token),
            created_at=now,
            expires_at=now + timedelta(days=7),
        )
    )
    await db.commit()
    return token


async def test_accept_confirms_then_joins(client: AsyncClient, db: AsyncSession) -> None:
    _, ws = await team(client, db)
    invitee = await register(client)
    await verify_email(db, invitee["id"])
    token = await invitation_for(db, ws, str(invitee["email"]).upper(), "viewer")
    client.cookies.clear()
    first = await client.get(f"/ui/invitations/accept?token={token}")
    assert first.status_code == 303 and token in first.headers["location"]  # back here after sign-in
    await sign_in_as(client, invitee)
    page = await client.get(f"/ui/invitations/accept?token={token}")
    assert page.status_code == 200
    assert "Walk" in page.text and f'name="token" value="{token}"' in page.text
    assert await role_of(db, ws.id, invitee["id"]) is None  # GET changes nothing
    forged = await client.post("/ui/invitations/accept", data={"token": token, "csrf_token": "x"})
    assert forged.status_code == 403
    assert await role_of(db, ws.id, invitee["id"]) is None
    response = await post_form(client, "/ui/invitations/accept", {"token": token})
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/workspaces/{ws.slug}?notice=joined"
    assert await role_of(db, ws.id, invitee["id"]) == "viewer"
    used = await post_form(client, "/ui/invitations/accept", {"token": token})
    assert used.status_code == 400 and "already used" in used.text


async def test_accept_error_pages(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    unverified = await register(client)
    await sign_in_as(client, unverified)
    for bad in ("", "nope"):
        response = await client.get(f"/ui/invitations/accept?token={bad}")
        assert response.status_code == 400, bad
        assert "Token is invalid or expired" in response.text
    token = await invitation_for(db, ws, str(unverified["email"]))
    response = await post_form(client, "/ui/invitations/accept", {"token": token})
    assert response.status_code == 403 and "Verify your email address" in response.text
    await verify_email(db, users["outsider"]["id"])
    await sign_in_as(client, users["outsider"])
    mismatch = await post_form(client, "/ui/invitations/accept", {"token": token})
    assert mismatch.status_code == 403 and "another email address" in mismatch.text
    await verify_email(db, users["member"]["id"])
    mine = await invitation_for(db, ws, str(users["member"]["email"]))
    await sign_in_as(client, users["member"])
    already = await post_form(client, "/ui/invitations/accept", {"token": mine})
    assert already.status_code == 409 and "already a member" in already.text
    # refused accepts leave the tokens usable
    accepted = await db.scalar(
        select(func.count())
        .select_from(WorkspaceInvitation)
        .where(WorkspaceInvitation.accepted_at.is_not(None))
    )
    assert accepted == 0


async def test_workspace_administrators_read_but_cannot_change(client: AsyncClient, db: AsyncSession) -> None:
    users, ws = await team(client, db)
    await grant_admin(db, users["outsider"]["id"])
    await sign_in_as(client, users["outsider"])
    overview = await client.get(f"/ui/workspaces/{ws.slug}")
    assert overview.status_code == 200
    assert "administrator view" in overview.text and "Save changes" not in overview.text
    members = await client.get(f"/ui/workspaces/{ws.slug}/members")
    assert members.status_code == 200 and "Change role" not in members.text
    is_error_page(await client.get(f"/ui/workspaces/{ws.slug}/invitations"), 404)
    is_error_page(await post_form(client, f"/ui/workspaces/{ws.slug}", {"name": "Mine now"}), 404)
    await db.refresh(ws)
    assert ws.name == "Walk"
