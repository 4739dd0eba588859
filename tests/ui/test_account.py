"""Console pages for a signed-in user: account, sessions, sign out, transparent refresh."""

from __future__ import annotations

from httpx import AsyncClient

from tests.factories import PASSWORD, bearer, login, register
from tests.ui.conftest import csrf, post_form, ui_sign_in


async def other_session(client: AsyncClient, email: str) -> str:
    """A second session of the same user (another device), as a bearer access token."""
    jar = dict(client.cookies.items())
    tokens = await login(client, email)
    client.cookies.clear()
    client.cookies.update(jar)
    return str(tokens["access_token"])


async def api_me(client: AsyncClient, token: str) -> dict[str, object]:
    response = await client.get("/api/v1/users/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- account -----------------------------------------------------------------------------------


async def test_account_page_shows_the_user_and_labelled_form(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    response = await client.get("/ui/account")
    assert response.status_code == 200
    assert str(ui_user["email"]) in response.text
    for name in ("username", "full_name", "phone"):
        assert f'for="field-{name}"' in response.text and f'id="field-{name}"' in response.text
    assert f'name="csrf_token" value="{csrf(client)}"' in response.text
    assert 'aria-current="page"' in response.text


async def test_account_edit_saves_through_update_me(client: AsyncClient, ui_user: dict[str, object]) -> None:
    response = await post_form(
        client, "/ui/account", {"username": "Edited.Name", "full_name": "  Ed Ited ", "phone": "+14155550123"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/account?notice=saved"
    page = await client.get(response.headers["location"])
    assert "Your changes were saved." in page.text
    assert 'value="edited.name"' in page.text
    token = await other_session(client, str(ui_user["email"]))
    me = await api_me(client, token)
    assert (me["username"], me["full_name"], me["phone"]) == ("edited.name", "Ed Ited", "+14155550123")
    assert me["phone_verified"] is False


async def test_account_empty_fields_clear_name_and_phone(client: AsyncClient) -> None:
    user = await register(client, username="keeps.name", full_name="Old", phone="+14155550123")
    client.cookies.clear()
    await ui_sign_in(client, str(user["email"]))
    response = await post_form(client, "/ui/account", {"username": "", "full_name": "", "phone": ""})
    assert response.status_code == 303
    me = await api_me(client, await other_session(client, str(user["email"])))
    assert (me["username"], me["full_name"], me["phone"]) == ("keeps.name", None, None)


async def test_account_bad_phone_is_422_and_changes_nothing(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    response = await post_form(client, "/ui/account", {"full_name": "New Name", "phone": "12"})
    assert response.status_code == 422
    assert 'id="error-phone"' in response.text
    assert 'value="New Name"' in response.text  # the submitted values are shown again
    me = await api_me(client, await other_session(client, str(ui_user["email"])))
    assert me["full_name"] is None


async def test_account_taken_username_is_409_and_changes_nothing(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    await register(client, username="taken.one")
    response = await post_form(client, "/ui/account", {"username": "TAKEN.one", "full_name": "Changed"})
    assert response.status_code == 409
    assert 'id="error-username"' in response.text
    # the page still renders the signed-in chrome after the rollback
    assert str(ui_user["email"]) in response.text
    me = await api_me(client, await other_session(client, str(ui_user["email"])))
    assert (me["username"], me["full_name"]) == (None, None)


async def test_account_bad_csrf_is_403_and_changes_nothing(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    response = await client.post("/ui/account", data={"full_name": "Forged", "csrf_token": "forged"})
    assert response.status_code == 403
    me = await api_me(client, await other_session(client, str(ui_user["email"])))
    assert me["full_name"] is None


# --- sessions ----------------------------------------------------------------------------------


async def test_sessions_page_lists_sessions_and_marks_this_one(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    await other_session(client, str(ui_user["email"]))
    response = await client.get("/ui/security/sessions")
    assert response.status_code == 200
    assert response.text.count('/revoke"') == 2
    assert response.text.count("this browser") == 1
    assert "203.0.113.7" in response.text
    assert "Sign out everywhere" in response.text


async def test_revoke_another_session(client: AsyncClient, ui_user: dict[str, object]) -> None:
    token = await other_session(client, str(ui_user["email"]))
    sessions = (await client.get("/api/v1/auth/sessions", headers=bearer(token))).json()["items"]
    other_id = next(s["id"] for s in sessions if s["current"])
    response = await post_form(client, f"/ui/security/sessions/{other_id}/revoke", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/security/sessions?notice=session_revoked"
    assert (await client.get("/api/v1/users/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/ui/security/sessions")).status_code == 200  # this browser stays in


async def test_revoke_current_session_signs_this_browser_out(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    page = await client.get("/ui/security/sessions")
    current = page.text.split("this browser")[1].split("/ui/security/sessions/")[1].split("/revoke")[0]
    response = await post_form(client, f"/ui/security/sessions/{current}/revoke", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?notice=signed_out"
    assert (await client.get("/ui/")).status_code == 303


async def test_revoke_unknown_or_foreign_session_is_404(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    jar = dict(client.cookies.items())
    stranger = await register(client)
    stranger_token = (await login(client, str(stranger["email"])))["access_token"]
    client.cookies.clear()
    client.cookies.update(jar)
    foreign = (await client.get("/api/v1/auth/sessions", headers=bearer(stranger_token))).json()["items"][0]
    for target in (foreign["id"], "0190b7d2-0000-7000-8000-000000000000", "not-a-uuid"):
        response = await post_form(client, f"/ui/security/sessions/{target}/revoke", {})
        assert response.status_code == 404, target
        assert 'role="alert"' in response.text
    assert (await client.get("/api/v1/users/me", headers=bearer(stranger_token))).status_code == 200


async def test_revoke_with_bad_csrf_is_403_and_revokes_nothing(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    token = await other_session(client, str(ui_user["email"]))
    sessions = (await client.get("/api/v1/auth/sessions", headers=bearer(token))).json()["items"]
    other_id = next(s["id"] for s in sessions if s["current"])
    response = await client.post(f"/ui/security/sessions/{other_id}/revoke", data={"csrf_token": "x"})
    assert response.status_code == 403
    bad_all = await client.post("/ui/security/sessions/revoke-all", data={})
    assert bad_all.status_code == 403
    assert (await client.get("/api/v1/users/me", headers=bearer(token))).status_code == 200


async def test_sign_out_everywhere(client: AsyncClient, ui_user: dict[str, object]) -> None:
    token = await other_session(client, str(ui_user["email"]))
    response = await post_form(client, "/ui/security/sessions/revoke-all", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?notice=signed_out_everywhere"
    assert (await client.get("/api/v1/users/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/ui/")).status_code == 303


# --- sign out ----------------------------------------------------------------------------------


async def test_sign_out_revokes_the_session_and_clears_cookies(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    access = client.cookies["authgate_access"]
    response = await post_form(client, "/ui/logout", {})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?notice=signed_out"
    assert response.headers["clear-site-data"] == '"cache", "storage"'
    cleared = response.headers.get_list("set-cookie")
    for name in ("authgate_access", "authgate_refresh", "authgate_ui_refresh", "authgate_csrf"):
        assert any(c.startswith(f"{name}=") and "Max-Age=0" in c for c in cleared), name
    assert (await client.get("/api/v1/users/me", headers=bearer(access))).status_code == 401
    assert "You are signed out." in (await client.get("/ui/login?notice=signed_out")).text


async def test_sign_out_with_bad_csrf_is_403_and_keeps_the_session(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    response = await client.post("/ui/logout", data={"csrf_token": "wrong"})
    assert response.status_code == 403
    assert (await client.get("/ui/")).status_code == 200


async def test_notice_text_is_never_taken_from_the_url(client: AsyncClient) -> None:
    response = await client.get("/ui/login", params={"notice": "<script>alert(1)</script>"})
    assert "alert(1)" not in response.text
    assert 'role="status"' not in response.text


# --- transparent refresh -----------------------------------------------------------------------


async def test_expired_access_cookie_is_refreshed_on_page_load(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    old_refresh = client.cookies.get("authgate_ui_refresh", path="/ui")
    token = csrf(client)
    client.cookies.delete("authgate_access")  # the browser drops it at Max-Age
    response = await client.get("/ui/account")
    assert response.status_code == 200
    assert str(ui_user["email"]) in response.text
    set_cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("authgate_access=") for c in set_cookies)
    assert any(c.startswith("authgate_refresh=") and "Path=/api/v1/auth" in c for c in set_cookies)
    assert client.cookies.get("authgate_ui_refresh", path="/ui") != old_refresh
    assert csrf(client) == token  # forms already open in other tabs keep working
    assert f'value="{token}"' in response.text
    # the rotated-away refresh token is spent, the new pair works for forms
    saved = await post_form(client, "/ui/account", {"full_name": "After Refresh"})
    assert saved.status_code == 303


async def test_invalid_refresh_cookie_redirects_to_sign_in(client: AsyncClient) -> None:
    client.cookies.set("authgate_ui_refresh", "not-a-token", domain="test", path="/ui")
    response = await client.get("/ui/account")
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/account"


async def test_api_login_sets_and_logout_clears_the_console_refresh_cookie(client: AsyncClient) -> None:
    user = await register(client)
    client.cookies.clear()
    response = await client.post("/api/v1/auth/login", json={"email": user["email"], "password": PASSWORD})
    assert any(
        c.startswith("authgate_ui_refresh=") and "Path=/ui" in c
        for c in response.headers.get_list("set-cookie")
    )
    client.cookies.delete("authgate_access")
    assert (await client.get("/ui/")).status_code == 200  # the console picks up an API sign-in
    out = await client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf(client)})
    assert out.status_code == 204
    assert any(
        c.startswith("authgate_ui_refresh=") and "Max-Age=0" in c for c in out.headers.get_list("set-cookie")
    )


async def test_rejected_form_after_a_refresh_keeps_the_old_refresh_token(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    """A domain error rolls back the refresh done on the way in, so no cookie is replaced."""
    await register(client, username="held.name")
    old_refresh = client.cookies.get("authgate_ui_refresh", path="/ui")
    client.cookies.delete("authgate_access")
    response = await post_form(client, "/ui/account", {"username": "held.name"})
    assert response.status_code == 409
    assert not any(c.startswith("authgate_") for c in response.headers.get_list("set-cookie"))
    assert client.cookies.get("authgate_ui_refresh", path="/ui") == old_refresh
    page = await client.get("/ui/account")  # the unspent token still refreshes
    assert page.status_code == 200
    assert client.cookies.get("authgate_ui_refresh", path="/ui") != old_refresh


async def test_console_root_without_slash_leads_home(client: AsyncClient) -> None:
    response = await client.get("/ui")
    assert response.status_code in (307, 308)
    assert response.headers["location"].endswith("/ui/")


async def test_navigation_marks_only_the_current_section(
    client: AsyncClient, ui_user: dict[str, object]
) -> None:
    html = (await client.get("/ui/security/sessions")).text
    nav = html.split('aria-label="Main"')[1].split("</nav>")[0]
    assert nav.count('aria-current="page"') == 1
    assert 'href="/ui/security/sessions" aria-current="page">Security' in nav
    account_nav = (await client.get("/ui/account")).text.split('aria-label="Main"')[1].split("</nav>")[0]
    assert 'href="/ui/account" aria-current="page">Account' in account_nav
    assert account_nav.count('aria-current="page"') == 1
