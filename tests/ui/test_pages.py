"""The web console over HTTP: pages, forms, CSRF, redirects, headers, on both engines."""

from __future__ import annotations

import pytest
from httpx import AsyncClient

from tests.factories import PASSWORD, bearer, login, register, unique_email
from tests.ui.conftest import csrf, post_form, ui_sign_in

CONSOLE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


async def api_me(client: AsyncClient, email: str) -> dict[str, object]:
    """The user as the JSON API sees it, through a separate bearer session."""
    jar = dict(client.cookies.items())
    tokens = await login(client, email)
    client.cookies.clear()
    client.cookies.update(jar)
    response = await client.get("/api/v1/users/me", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    return dict(response.json())


# --- headers, static, style guide --------------------------------------------------------------


async def test_styleguide_is_public_accessible_html_with_console_headers(client: AsyncClient) -> None:
    response = await client.get("/ui/styleguide")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONSOLE_CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"
    html = response.text
    assert '<html lang="en" data-theme="system">' in html
    assert '<a class="skip-link" href="#main">' in html and 'id="main"' in html
    for component in ("button--primary", "button--danger", "alert--error", 'class="table"', 'class="card"'):
        assert component in html
    assert "<script" not in html and "style=" not in html and "onsubmit" not in html


async def test_stylesheet_defines_tokens_light_and_dark(client: AsyncClient) -> None:
    response = await client.get("/ui/static/console.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
    assert "cache-control" not in response.headers  # public and cacheable, unlike the pages
    css = response.text
    assert "--color-primary:" in css and "--space-4:" in css and "--text-base:" in css
    assert "--color-bg: light-dark(" in css  # every colour token holds its light and dark value
    assert ':root[data-theme="dark"]' in css and ':root[data-theme="light"]' in css
    assert "@supports not (color: light-dark(#000, #fff))" in css  # older browsers: the light palette
    assert ":focus-visible" in css


async def test_api_keeps_its_strict_csp(client: AsyncClient) -> None:
    response = await client.get("/api/v1/features")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


# --- unauthenticated access --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("/ui/", "/ui/login"),
        ("/ui/account", "/ui/login?next=/ui/account"),
        ("/ui/security/sessions", "/ui/login?next=/ui/security/sessions"),
    ],
)
async def test_pages_redirect_to_sign_in(client: AsyncClient, path: str, location: str) -> None:
    response = await client.get(path)
    assert response.status_code == 303
    assert response.headers["location"] == location


@pytest.mark.parametrize("path", ["/ui/account", "/ui/logout", "/ui/security/sessions/revoke-all"])
async def test_forms_redirect_to_sign_in_without_a_session(client: AsyncClient, path: str) -> None:
    await client.get("/ui/login")
    response = await post_form(client, path, {"full_name": "X"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login"


async def test_invalid_access_cookie_without_refresh_redirects(client: AsyncClient) -> None:
    client.cookies.set("authgate_access", "not-a-jwt", domain="test")
    response = await client.get("/ui/account")
    assert response.status_code == 303


# --- sign in -----------------------------------------------------------------------------------


async def test_login_page_sets_csrf_cookie_and_echoes_it(client: AsyncClient) -> None:
    response = await client.get("/ui/login")
    assert response.status_code == 200
    token = csrf(client)
    assert f'name="csrf_token" value="{token}"' in response.text
    assert '<label class="field__label" for="field-identifier">' in response.text
    assert '<label class="field__label" for="field-password">' in response.text


async def test_sign_in_with_email_sets_cookies_and_opens_home(client: AsyncClient) -> None:
    user = await register(client, full_name="Ada Lovelace")
    client.cookies.clear()
    pre_login_csrf = (await client.get("/ui/login")) and csrf(client)
    response = await post_form(
        client, "/ui/login", {"identifier": user["email"], "password": PASSWORD, "next": "/ui/account"}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/account"
    set_cookies = response.headers.get_list("set-cookie")
    assert any(c.startswith("authgate_access=") and "HttpOnly" in c for c in set_cookies)
    assert any(c.startswith("authgate_refresh=") and "Path=/api/v1/auth" in c for c in set_cookies)
    assert any(
        c.startswith("authgate_ui_refresh=") and "Path=/ui" in c and "HttpOnly" in c for c in set_cookies
    )
    assert csrf(client) != pre_login_csrf  # a new CSRF value per sign-in
    home = await client.get("/ui/")
    assert home.status_code == 200
    assert "Welcome, Ada Lovelace" in home.text
    assert user["email"] in home.text


async def test_sign_in_with_username(client: AsyncClient) -> None:
    await register(client, username="grace.h")
    client.cookies.clear()
    await ui_sign_in(client, "Grace.H")
    assert (await client.get("/ui/account")).status_code == 200


async def test_signed_in_user_skips_the_login_page(client: AsyncClient, ui_user: dict[str, object]) -> None:
    response = await client.get("/ui/login", params={"next": "/ui/security/sessions"})
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/security/sessions"


async def test_wrong_password_is_a_401_form_error(client: AsyncClient) -> None:
    user = await register(client)
    client.cookies.clear()
    await client.get("/ui/login")
    response = await post_form(
        client, "/ui/login", {"identifier": user["email"], "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert 'role="alert"' in response.text
    assert "Invalid email, username or password" in response.text
    assert f'value="{user["email"]}"' in response.text  # the identifier is kept, the password is not
    assert "authgate_access" not in client.cookies


async def test_empty_sign_in_form_is_a_422(client: AsyncClient) -> None:
    await client.get("/ui/login")
    response = await post_form(client, "/ui/login", {"identifier": "", "password": ""})
    assert response.status_code == 422
    assert "Enter your email or username" in response.text


@pytest.mark.parametrize("token", [None, "", "forged-value"])
async def test_sign_in_without_matching_csrf_is_403(client: AsyncClient, token: str | None) -> None:
    user = await register(client)
    client.cookies.clear()
    await client.get("/ui/login")
    data = {"identifier": str(user["email"]), "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    response = await client.post("/ui/login", data=data)
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert "This form has expired" in response.text
    assert "authgate_access" not in client.cookies


async def test_csrf_failure_without_cookie_sets_a_fresh_one(client: AsyncClient) -> None:
    response = await client.post("/ui/login", data={"identifier": "a", "password": "b", "csrf_token": "x"})
    assert response.status_code == 403
    assert "authgate_csrf" in client.cookies


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/ui/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/api/v1/auth/me",
        "/ui/../api/v1/users",
        "http:/ui/",
        "/ui/\r\nSet-Cookie: x=1",
    ],
)
async def test_next_cannot_leave_the_console(client: AsyncClient, target: str) -> None:
    user = await register(client)
    client.cookies.clear()
    page = await client.get("/ui/login", params={"next": target})
    assert 'name="next" value="/ui/"' in page.text
    response = await post_form(
        client, "/ui/login", {"identifier": str(user["email"]), "password": PASSWORD, "next": target}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/"


async def test_next_keeps_a_console_query(client: AsyncClient) -> None:
    response = await client.get("/ui/security/sessions", params={"notice": "saved"})
    assert response.headers["location"] == "/ui/login?next=/ui/security/sessions%3Fnotice%3Dsaved"
    page = await client.get(response.headers["location"])
    assert 'name="next" value="/ui/security/sessions?notice=saved"' in page.text


async def test_form_bodies_are_accepted_under_ui_but_not_on_json_endpoints(client: AsyncClient) -> None:
    await client.get("/ui/login")
    ok = await post_form(client, "/ui/login", {"identifier": "", "password": ""})
    assert ok.status_code == 422  # parsed as a form, not refused
    refused = await client.post("/api/v1/auth/login", data={"email": "a@example.com", "password": "x"})
    assert refused.status_code == 415


# --- register ----------------------------------------------------------------------------------


async def test_register_creates_the_account_then_sign_in(client: AsyncClient) -> None:
    email = unique_email("console")
    page = await client.get("/ui/register")
    assert page.status_code == 200
    response = await post_form(
        client,
        "/ui/register",
        {"email": email, "password": PASSWORD, "username": "console.user", "full_name": "C U", "phone": ""},
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?notice=registered"
    notice = await client.get(response.headers["location"])
    assert "Your account was created" in notice.text
    me = await api_me(client, email)
    assert me["username"] == "console.user"
    assert me["full_name"] == "C U"
    assert me["phone"] is None
    assert me["roles"] == ["user"]


async def test_register_taken_email_is_409_and_keeps_values(client: AsyncClient) -> None:
    user = await register(client, full_name="First")
    client.cookies.clear()
    await client.get("/ui/register")
    response = await post_form(
        client, "/ui/register", {"email": str(user["email"]), "password": PASSWORD, "full_name": "Second"}
    )
    assert response.status_code == 409
    assert 'id="error-email"' in response.text
    assert 'value="Second"' in response.text
    assert PASSWORD not in response.text
    assert (await api_me(client, str(user["email"])))["full_name"] == "First"


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"email": "not-an-email"}, "email"),
        ({"password": "short"}, "password"),
        ({"password": "password123"}, "password"),  # common: refused by the policy
        ({"username": "x"}, "username"),
        ({"phone": "12345"}, "phone"),
    ],
)
async def test_register_bad_input_is_422_and_creates_nothing(
    client: AsyncClient, fields: dict[str, str], bad_field: str
) -> None:
    email = unique_email("bad")
    await client.get("/ui/register")
    response = await post_form(client, "/ui/register", {"email": email, "password": PASSWORD, **fields})
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.text
    assert f'id="error-{bad_field}"' in response.text
    assert "items after validation" not in response.text  # length errors are in words for people
    client.cookies.clear()
    refused = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert refused.status_code == 401


async def test_register_bad_csrf_is_403_and_creates_nothing(client: AsyncClient) -> None:
    email = unique_email("csrf")
    await client.get("/ui/register")
    response = await client.post(
        "/ui/register", data={"email": email, "password": PASSWORD, "csrf_token": "nope"}
    )
    assert response.status_code == 403
    refused = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert refused.status_code == 401


async def test_register_closed_when_self_registration_is_off(client: AsyncClient, app: object) -> None:
    app.state.settings.features.self_registration = False  # type: ignore[attr-defined]
    try:
        page = await client.get("/ui/register")
        assert page.status_code == 403
        email = unique_email("closed")
        response = await post_form(client, "/ui/register", {"email": email, "password": PASSWORD})
        assert response.status_code == 403
        assert "Self-registration is disabled" in response.text
        login_page = await client.get("/ui/login")
        assert "/ui/register" not in login_page.text
    finally:
        app.state.settings.features.self_registration = True  # type: ignore[attr-defined]


async def test_unknown_console_page_is_an_html_404(client: AsyncClient) -> None:
    response = await client.get("/ui/no/such/page")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "There is no page at this address." in response.text
    assert response.headers["content-security-policy"] == CONSOLE_CSP
    assert (await client.get("/ui/static/console.css")).status_code == 200
    assert (
        (await client.get("/api/v1/no-such-thing"))
        .headers["content-type"]
        .startswith("application/problem+json")
    )


async def test_sign_in_with_mfa_asks_for_a_code(client: AsyncClient) -> None:
    import pyotp

    from tests.factories import bearer, login

    user = await register(client)
    tokens = await login(client, user["email"])
    client.cookies.clear()
    headers = bearer(tokens["access_token"])
    secret = (await client.post("/api/v1/auth/mfa/totp/setup", headers=headers)).json()["secret"]
    totp = pyotp.TOTP(secret)
    enabled = await client.post("/api/v1/auth/mfa/totp/enable", headers=headers, json={"code": totp.now()})
    assert enabled.status_code == 200
    recovery = enabled.json()["recovery_codes"][0]

    await client.get("/ui/login")
    step = await post_form(client, "/ui/login", {"identifier": user["email"], "password": PASSWORD})
    assert step.status_code == 200 and 'action="/ui/login/mfa"' in step.text
    assert "authgate_access" not in client.cookies
    mfa_token = step.text.split('name="mfa_token" value="', 1)[1].split('"', 1)[0]

    wrong = await post_form(client, "/ui/login/mfa", {"mfa_token": mfa_token, "code": "000000"})
    assert wrong.status_code == 400 and "authgate_access" not in client.cookies
    empty = await post_form(client, "/ui/login/mfa", {"mfa_token": mfa_token, "code": ""})
    assert empty.status_code == 422

    done = await post_form(client, "/ui/login/mfa", {"mfa_token": mfa_token, "code": recovery})
    assert done.status_code == 303 and done.headers["location"] == "/ui/"
    assert "authgate_access" in client.cookies
    assert (await client.get("/ui/")).status_code == 200


@pytest.mark.parametrize("path", ["/ui/logout", "/ui/login/mfa", "/ui/security/sessions/revoke-all"])
async def test_a_form_address_opened_with_get_is_an_html_405(client: AsyncClient, path: str) -> None:
    """A route without GET is 405 with `Allow` (docs/spec-notes.md), not the catch-all's 404 page."""
    response = await client.get(path)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith("text/html")
    assert "takes a form" in response.text
    other = await client.put(path)  # refused by the router: the catch-all's GET is no method served here
    assert other.status_code == 405 and other.headers["allow"] == "POST"


async def test_an_unknown_console_address_is_a_404_page_whatever_the_method(client: AsyncClient) -> None:
    for method in ("POST", "PUT", "DELETE"):
        response = await client.request(method, "/ui/no/such/page")
        assert response.status_code == 404, method
        assert response.headers["content-type"].startswith("text/html")
        assert "There is no page at this address." in response.text
    static = await client.put("/ui/static/console.css")  # the static files answer for themselves
    assert static.status_code == 405 and static.headers["allow"] == "GET, HEAD"
