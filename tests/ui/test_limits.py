"""The console's forms count against the same request limits as the API: no way around them."""

from __future__ import annotations

import uuid

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.users.models import User
from authgate.workspaces.models import WorkspaceInvitation
from tests.factories import PASSWORD, register, signed_in, unique_email
from tests.ratelimit.test_limits import mail_to, use_limits
from tests.ui.conftest import post_form, ui_sign_in
from tests.workspaces.helpers import create_ws


def assert_limited_page(response: object) -> None:
    assert response.status_code == 429  # type: ignore[attr-defined]
    assert int(response.headers["retry-after"]) >= 1  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("text/html")  # type: ignore[attr-defined]
    assert "Too many requests" in response.text  # type: ignore[attr-defined]


async def test_console_sign_in_shares_the_login_limits(app: FastAPI, client: AsyncClient) -> None:
    user = await register(client)
    client.cookies.clear()
    use_limits(app, login_per_ip="2/minute")
    await client.get("/ui/login")
    form = {"identifier": str(user["email"]), "password": "wrong password here"}
    for _ in range(2):
        assert (await post_form(client, "/ui/login", form)).status_code == 401
    assert (
        await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    ).status_code == 429
    limited = await post_form(client, "/ui/login", {**form, "password": PASSWORD})
    assert_limited_page(limited)
    assert "authgate_access" not in limited.cookies


async def test_console_registration_shares_the_register_limit(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    use_limits(app, register_per_ip="1/minute")
    await client.get("/ui/register")
    first = unique_email("ui-first")
    assert (
        await post_form(client, "/ui/register", {"email": first, "password": PASSWORD})
    ).status_code == 303
    second = unique_email("ui-second")
    assert_limited_page(await post_form(client, "/ui/register", {"email": second, "password": PASSWORD}))
    emails = set((await db.scalars(select(User.email).where(User.email.in_([first, second])))).all())
    assert emails == {first}


async def test_console_forgot_password_is_limited_per_address(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    use_limits(app, verification_per_account="1/hour")
    await client.get("/ui/password/forgot")
    email = unique_email("ui-forgot")
    assert (await post_form(client, "/ui/password/forgot", {"email": email})).status_code == 200
    sent = await mail_to(db, email)
    assert_limited_page(await post_form(client, "/ui/password/forgot", {"email": email}))
    assert await mail_to(db, email) == sent


async def test_console_password_reset_is_limited_per_address(app: FastAPI, client: AsyncClient) -> None:
    use_limits(app, verification_per_ip="1/minute")
    await client.get("/ui/password/forgot")
    form = {"token": "x" * 43, "new_password": "a brand new passphrase 2026"}
    first = await post_form(client, "/ui/password/reset", form)
    assert first.status_code == 400  # the link is not valid, and it counted
    assert_limited_page(await post_form(client, "/ui/password/reset", form))


async def test_console_invitations_share_the_per_account_invitation_limit(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    """The invite form counts with the API's invitations: it is no way around the limit."""
    use_limits(app, invitations_per_user="2/hour")
    owner, headers = await signed_in(client)
    ws = await create_ws(client, headers, name="Prize draw")
    api = await client.post(
        f"/api/v1/workspaces/{ws['id']}/invitations", json={"email": "a@example.com"}, headers=headers
    )
    assert api.status_code == 201
    await ui_sign_in(client, str(owner["email"]))
    form_url = f"/ui/workspaces/{ws['slug']}/invitations"
    assert (
        await post_form(client, form_url, {"email": "b@example.com", "role": "member"})
    ).status_code == 200
    limited = await post_form(client, form_url, {"email": "c@example.com", "role": "member"})
    assert_limited_page(limited)
    assert "c@example.com" in limited.text  # the form keeps what was typed
    client.cookies.clear()
    again = await client.post(
        f"/api/v1/workspaces/{ws['id']}/invitations", json={"email": "c@example.com"}, headers=headers
    )
    assert again.status_code == 429 and int(again.headers["retry-after"]) >= 1
    assert await mail_to(db, "c@example.com") == 0
    invited = select(WorkspaceInvitation.email).where(WorkspaceInvitation.workspace_id == uuid.UUID(ws["id"]))
    assert sorted((await db.scalars(invited)).all()) == ["a@example.com", "b@example.com"]
