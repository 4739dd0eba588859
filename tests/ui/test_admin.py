"""Console admin pages over HTTP, on both engines: users, roles and the audit log."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from httpx import AsyncClient, Response
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from authgate.audit.models import AuditEvent
from authgate.outbox.models import OutboxMessage
from authgate.roles.models import Role, user_role
from authgate.users.models import User
from tests.factories import grant_role, register, unique_email
from tests.ui.conftest import post_form, ui_sign_in


async def sign_in_as(client: AsyncClient, user: dict[str, Any]) -> None:
    client.cookies.clear()
    await ui_sign_in(client, str(user["email"]))


async def make_role(db: AsyncSession, name: str, permissions: list[str], holder: str | None = None) -> None:
    role = Role(name=name, description="", permissions=sorted(permissions))
    db.add(role)
    await db.flush()
    if holder is not None:
        await db.execute(insert(user_role).values(user_id=uuid.UUID(holder), role_id=role.id))
    await db.commit()


async def admin_user(client: AsyncClient, db: AsyncSession, **overrides: Any) -> dict[str, Any]:
    user = await register(client, **overrides)
    await grant_role(db, str(user["id"]), "admin")
    return user


async def user_row(db: AsyncSession, user_id: str) -> User:
    row = await db.scalar(
        select(User).where(User.id == uuid.UUID(user_id)).execution_options(populate_existing=True)
    )
    assert row is not None
    return row


async def role_names(db: AsyncSession, user_id: str) -> set[str]:
    rows = await db.scalars(
        select(Role.name)
        .join(user_role, user_role.c.role_id == Role.id)
        .where(user_role.c.user_id == uuid.UUID(user_id))
    )
    return set(rows.all())


def is_error_page(response: Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in response.text


ADMIN_PAGES = ["/ui/admin/users", "/ui/admin/roles", "/ui/admin/audit"]


# --- gates and navigation ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ADMIN_PAGES)
async def test_admin_pages_redirect_to_sign_in(client: AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/login?next={path}"


async def test_regular_users_get_403_pages_and_no_admin_nav(
    client: AsyncClient, ui_user: dict[str, Any]
) -> None:
    home = await client.get("/ui/")
    for path in ADMIN_PAGES:
        assert f'href="{path}"' not in home.text
        is_error_page(await client.get(path), 403)
    is_error_page(await client.get(f"/ui/admin/users/{ui_user['id']}"), 403)
    is_error_page(await post_form(client, f"/ui/admin/users/{ui_user['id']}", {"full_name": "Self"}), 403)
    is_error_page(await post_form(client, "/ui/admin/roles", {"name": "sneaky"}), 403)


async def test_nav_shows_only_the_items_a_user_holds(client: AsyncClient, db: AsyncSession) -> None:
    reader = await register(client)
    await make_role(db, "auditor", ["audit:read"], holder=reader["id"])
    await sign_in_as(client, reader)
    home = await client.get("/ui/")
    assert 'href="/ui/admin/audit"' in home.text
    assert 'href="/ui/admin/users"' not in home.text and 'href="/ui/admin/roles"' not in home.text
    assert (await client.get("/ui/admin/audit")).status_code == 200
    is_error_page(await client.get("/ui/admin/users"), 403)


# --- users -------------------------------------------------------------------------------------


async def test_users_list_searches_filters_and_pages(client: AsyncClient, db: AsyncSession) -> None:
    admin = await admin_user(client, db)
    found = [await register(client, full_name=f"Zed Findme {i}") for i in range(3)]
    other = await register(client, full_name="Someone Else")
    await sign_in_as(client, admin)
    page = await client.get("/ui/admin/users", params={"q": "zed findme"})
    assert page.status_code == 200
    assert all(str(u["email"]) in page.text for u in found) and str(other["email"]) not in page.text
    first = await client.get("/ui/admin/users", params={"q": "zed", "limit": "2"})
    assert first.text.count("/ui/admin/users/") == 2
    next_href = first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    second = await client.get(next_href)
    assert second.text.count('href="/ui/admin/users/') == 1 and 'rel="next"' not in second.text
    admins = await client.get("/ui/admin/users", params={"role": "admin"})
    assert str(admin["email"]) in admins.text and str(other["email"]) not in admins.text
    inactive = await client.get("/ui/admin/users", params={"is_active": "false"})
    assert str(other["email"]) not in inactive.text


@pytest.mark.parametrize(
    "params", [{"is_active": "maybe"}, {"cursor": "!!"}, {"limit": "0"}, {"q": "x" * 321}]
)
async def test_users_list_bad_filters_are_422(
    client: AsyncClient, db: AsyncSession, params: dict[str, str]
) -> None:
    admin = await admin_user(client, db)
    await sign_in_as(client, admin)
    response = await client.get("/ui/admin/users", params=params)
    assert response.status_code == 422
    assert 'role="alert"' in response.text


async def test_user_detail_and_edit(client: AsyncClient, db: AsyncSession) -> None:
    admin = await admin_user(client, db)
    target = await register(client)
    await sign_in_as(client, admin)
    page = await client.get(f"/ui/admin/users/{target['id']}")
    assert page.status_code == 200 and str(target["email"]) in page.text
    assert "Save roles" in page.text and "Delete user" in page.text
    response = await post_form(
        client,
        f"/ui/admin/users/{target['id']}",
        {"username": "Edited.User", "full_name": "Ed", "phone": "+14155550123", "email_verified": "true"},
    )
    assert response.status_code == 303
    assert response.headers["location"] == f"/ui/admin/users/{target['id']}?notice=saved"
    row = await user_row(db, target["id"])
    assert (row.username, row.full_name, row.phone) == ("edited.user", "Ed", "+14155550123")
    assert row.email_verified is True and row.is_active is False  # an unticked box deactivates
    shown = await client.get(response.headers["location"])
    assert "Your changes were saved." in shown.text and "deactivated" in shown.text


async def test_user_email_change_starts_unverified_even_with_the_box_ticked(
    client: AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_user(client, db)
    target = await register(client)
    await sign_in_as(client, admin)
    url = f"/ui/admin/users/{target['id']}"
    same = await post_form(
        client, url, {"email": target["email"], "email_verified": "true", "is_active": "true"}
    )
    assert same.status_code == 303
    assert (await user_row(db, target["id"])).email_verified is True  # the box decides for the same address
    new = unique_email("moved")
    moved = await post_form(client, url, {"email": new, "email_verified": "true", "is_active": "true"})
    assert moved.status_code == 303
    row = await user_row(db, target["id"])
    assert (row.email, row.email_verified) == (new, False)
    alerts = await db.scalars(
        select(OutboxMessage.recipient).where(OutboxMessage.template == "email_changed")
    )
    assert alerts.all() == [target["email"]]
    kept = await post_form(client, url, {"email": "", "is_active": "true"})  # empty: kept, not removed
    assert kept.status_code == 303 and (await user_row(db, target["id"])).email == new
    bad = await post_form(client, url, {"email": "not an address", "is_active": "true"})
    assert bad.status_code == 422 and 'id="error-email"' in bad.text
    taken = await post_form(client, url, {"email": admin["email"], "is_active": "true"})
    assert taken.status_code == 409
    assert (await user_row(db, target["id"])).email == new


async def test_user_edit_bad_input_changes_nothing(client: AsyncClient, db: AsyncSession) -> None:
    admin = await admin_user(client, db)
    await register(client, username="taken.name")
    target = await register(client)
    await sign_in_as(client, admin)
    url = f"/ui/admin/users/{target['id']}"
    bad = await post_form(client, url, {"full_name": "New", "phone": "12", "is_active": "true"})
    assert bad.status_code == 422 and 'id="error-phone"' in bad.text
    taken = await post_form(client, url, {"username": "TAKEN.name", "full_name": "New", "is_active": "true"})
    assert taken.status_code == 409
    assert str(admin["email"]) in taken.text
    row = await user_row(db, target["id"])
    assert (row.username, row.full_name) == (None, None)
    forged = await client.post(url, data={"full_name": "Forged", "is_active": "true", "csrf_token": "x"})
    assert forged.status_code == 403
    assert (await user_row(db, target["id"])).full_name is None
    is_error_page(await client.get(f"/ui/admin/users/{uuid.uuid4()}"), 404)
    is_error_page(await client.get("/ui/admin/users/not-an-id"), 404)


async def test_reader_sees_no_forms_and_writer_cannot_touch_an_admin(
    client: AsyncClient, db: AsyncSession
) -> None:
    reader = await register(client)
    await make_role(db, "helpdesk", ["users:read", "users:write"], holder=reader["id"])
    boss = await admin_user(client, db)
    await sign_in_as(client, reader)
    page = await client.get(f"/ui/admin/users/{boss['id']}")
    assert page.status_code == 200
    assert "Save roles" not in page.text and "Delete user" not in page.text
    denied = await post_form(client, f"/ui/admin/users/{boss['id']}", {"full_name": "Demoted"})
    assert denied.status_code == 403
    assert (await user_row(db, boss["id"])).is_active is True
    is_error_page(await post_form(client, f"/ui/admin/users/{boss['id']}/delete", {}), 403)
    is_error_page(await post_form(client, f"/ui/admin/users/{boss['id']}/roles", {"roles": "user"}), 403)
    assert (await user_row(db, boss["id"])).deleted_at is None


async def test_set_roles(client: AsyncClient, db: AsyncSession) -> None:
    admin = await admin_user(client, db)
    target = await register(client)
    await make_role(db, "support", ["users:read"])
    await sign_in_as(client, admin)
    url = f"/ui/admin/users/{target['id']}/roles"
    page = await client.get(f"/ui/admin/users/{target['id']}")
    assert 'id="role-support"' in page.text
    response = await client.post(
        url, data={"csrf_token": client.cookies["authgate_csrf"], "roles": ["user", "support"]}
    )
    assert response.status_code == 303
    assert await role_names(db, target["id"]) == {"user", "support"}
    unknown = await client.post(
        url, data={"csrf_token": client.cookies["authgate_csrf"], "roles": ["nope-role"]}
    )
    assert unknown.status_code == 422
    assert await role_names(db, target["id"]) == {"user", "support"}


async def test_delete_and_restore(client: AsyncClient, db: AsyncSession) -> None:
    admin = await admin_user(client, db)
    target = await register(client)
    await sign_in_as(client, admin)
    response = await post_form(client, f"/ui/admin/users/{target['id']}/delete", {})
    assert response.status_code == 303
    assert (await user_row(db, target["id"])).deleted_at is not None
    page = await client.get(response.headers["location"])
    assert "Restore user" in page.text and "Save changes" not in page.text
    listed = await client.get("/ui/admin/users", params={"deleted": "true"})
    assert str(target["email"]) in listed.text
    row = listed.text.split(str(target["email"]), 1)[1].split("</tr>", 1)[0]
    assert ">deleted<" in row and ">active<" not in row  # the list says what the detail page says
    restored = await post_form(client, f"/ui/admin/users/{target['id']}/restore", {})
    assert restored.status_code == 303
    assert (await user_row(db, target["id"])).deleted_at is None


# --- roles -------------------------------------------------------------------------------------


async def test_roles_create_edit_and_delete_with_force(client: AsyncClient, db: AsyncSession) -> None:
    admin = await admin_user(client, db)
    holder = await register(client)
    await sign_in_as(client, admin)
    page = await client.get("/ui/admin/roles")
    assert page.status_code == 200 and 'id="perm-users:read"' in page.text
    token = client.cookies["authgate_csrf"]
    created = await client.post(
        "/ui/admin/roles",
        data={
            "csrf_token": token,
            "name": "support",
            "description": "Help",
            "permissions": ["users:read", "audit:read"],
        },
    )
    assert created.status_code == 303
    assert created.headers["location"] == "/ui/admin/roles/support?notice=role_created"
    role = await db.scalar(select(Role).where(Role.name == "support"))
    assert role is not None and role.permissions == ["audit:read", "users:read"]
    edited = await client.post(
        "/ui/admin/roles/support",
        data={
            "csrf_token": token,
            "description": "Helpdesk",
            "has_permissions": "true",
            "permissions": ["users:read"],
        },
    )
    assert edited.status_code == 303
    await db.refresh(role)
    assert (role.description, role.permissions) == ("Helpdesk", ["users:read"])
    await db.execute(insert(user_role).values(user_id=uuid.UUID(holder["id"]), role_id=role.id))
    await db.commit()
    in_use = await post_form(client, "/ui/admin/roles/support/delete", {})
    assert in_use.status_code == 409 and "Delete it anyway" in in_use.text
    assert await db.scalar(select(Role.id).where(Role.name == "support")) is not None
    forced = await post_form(client, "/ui/admin/roles/support/delete", {"force": "true"})
    assert forced.status_code == 303
    assert await db.scalar(select(Role.id).where(Role.name == "support")) is None
    assert await role_names(db, holder["id"]) == {"user"}


@pytest.mark.parametrize(
    ("form", "status"),
    [
        ({"name": "Bad Name"}, 422),
        ({"name": "ok-role", "permissions": "no:such"}, 422),
        ({"name": "admin"}, 409),
        ({"name": "x" * 70}, 422),
    ],
)
async def test_role_create_bad_input(
    client: AsyncClient, db: AsyncSession, form: dict[str, str], status: int
) -> None:
    admin = await admin_user(client, db)
    await sign_in_as(client, admin)
    before = len((await db.scalars(select(Role.id))).all())
    response = await post_form(client, "/ui/admin/roles", form)
    assert response.status_code == status
    assert 'role="alert"' in response.text
    assert len((await db.scalars(select(Role.id))).all()) == before


async def test_builtin_roles_keep_permissions_and_cannot_be_deleted(
    client: AsyncClient, db: AsyncSession
) -> None:
    admin = await admin_user(client, db)
    await sign_in_as(client, admin)
    page = await client.get("/ui/admin/roles/admin")
    assert "Built-in roles keep their permissions" in page.text and "Delete role" not in page.text
    saved = await post_form(client, "/ui/admin/roles/admin", {"description": "The bosses"})
    assert saved.status_code == 303
    role = await db.scalar(select(Role).where(Role.name == "admin").execution_options(populate_existing=True))
    assert role is not None and role.description == "The bosses" and "users:read" in role.permissions
    changed = await post_form(
        client, "/ui/admin/roles/user", {"has_permissions": "true", "permissions": "users:read"}
    )
    assert changed.status_code == 409
    refused = await post_form(client, "/ui/admin/roles/user/delete", {"force": "true"})
    assert refused.status_code == 409 and "Delete it anyway" not in refused.text
    is_error_page(await client.get("/ui/admin/roles/no-such-role"), 404)


async def test_roles_reader_cannot_manage(client: AsyncClient, db: AsyncSession) -> None:
    reader = await register(client)
    await make_role(db, "viewer-of-roles", ["roles:read"], holder=reader["id"])
    await sign_in_as(client, reader)
    page = await client.get("/ui/admin/roles")
    assert page.status_code == 200 and "Create a role" not in page.text
    is_error_page(await post_form(client, "/ui/admin/roles", {"name": "mine"}), 403)
    is_error_page(await post_form(client, "/ui/admin/roles/viewer-of-roles/delete", {"force": "true"}), 403)
    assert await db.scalar(select(Role.id).where(Role.name == "mine")) is None


async def test_granting_what_you_lack_is_403(client: AsyncClient, db: AsyncSession) -> None:
    manager = await register(client)
    await make_role(db, "role-manager", ["roles:read", "roles:manage"], holder=manager["id"])
    await sign_in_as(client, manager)
    response = await post_form(client, "/ui/admin/roles", {"name": "escalate", "permissions": "users:delete"})
    assert response.status_code == 403
    assert await db.scalar(select(Role.id).where(Role.name == "escalate")) is None


# --- audit log ---------------------------------------------------------------------------------


async def test_audit_log_lists_filters_and_pages(client: AsyncClient, db: AsyncSession) -> None:
    admin = await admin_user(client, db)
    await sign_in_as(client, admin)
    page = await client.get("/ui/admin/audit")
    assert page.status_code == 200
    latest = await db.scalar(select(AuditEvent).order_by(AuditEvent.seq.desc()))
    assert latest is not None
    assert f'title="{latest.hash}">{latest.hash[:12]}…' in page.text
    logins = await client.get(
        "/ui/admin/audit", params={"action": "auth.login.succeeded", "actor_id": admin["id"]}
    )
    assert logins.text.count("<code>auth.login.succeeded</code>") == 1
    assert "<code>user.registered</code>" not in logins.text
    first = await client.get("/ui/admin/audit", params={"limit": "1"})
    assert first.text.count("<tr>") == 2  # header + one event
    next_href = first.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    assert "limit=1" in next_href and "cursor=" in next_href
    assert (await client.get(next_href)).status_code == 200


@pytest.mark.parametrize(
    "params",
    [{"action": "a" * 65}, {"cursor": "%%"}, {"limit": "201"}, {"actor_id": "nope"}, {"target_id": "1"}],
)
async def test_audit_bad_filters_are_422(
    client: AsyncClient, db: AsyncSession, params: dict[str, str]
) -> None:
    admin = await admin_user(client, db)
    await sign_in_as(client, admin)
    response = await client.get("/ui/admin/audit", params=params)
    assert response.status_code == 422
    assert 'role="alert"' in response.text
