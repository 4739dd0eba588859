"""One end-to-end run of the console in headless Chromium against a real uvicorn server.

The server runs in its own process on a spare port with a temporary SQLite database, so the
browser exercises real cookies (HttpOnly, Path=/ui), redirects and the console's CSP. Chromium
missing is a skip locally and a failure under CI=true, like PostgreSQL in tests/conftest.py.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import unavailable
from tests.live_server import live_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def console_server(chromium: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real server (see tests/live_server.py).

    Asks for `chromium` first so that a missing browser skips before a server is started.
    """
    with live_server(tmp_path_factory.mktemp("console-server")) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def chromium() -> Path:
    """The Debian `chromium` package's browser (`apt-get install -y chromium`)."""
    if not CHROMIUM.exists():
        unavailable("Chromium", FileNotFoundError(str(CHROMIUM)))
    return CHROMIUM


@pytest.fixture
async def page(chromium: Path) -> AsyncIterator[object]:
    try:
        from playwright.async_api import async_playwright
    except ImportError as exc:  # pragma: no cover - playwright is in the dev extra
        unavailable("Playwright", exc)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context()
            yield await context.new_page()
            await context.close()
        finally:
            await browser.close()


async def _register(base: str, email: str, *, sessions: int = 0) -> None:
    """An account made through the API, signed in `sessions` times elsewhere."""
    async with httpx.AsyncClient(base_url=base) as api:
        registered = await api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        for _ in range(sessions):
            signed_in = await api.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            assert signed_in.status_code == 200, signed_in.text


async def test_register_sign_in_edit_sessions_sign_out(page: object, console_server: str) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    base = console_server
    problems: list[str] = []
    # A rejected sign-in is answered with a 401 page, which Chromium reports as a failed load.
    expected = "the server responded with a status of 401"
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if msg.type == "error" and expected not in msg.text else None,
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    # Register.
    await page.goto(f"{base}/ui/register")
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.get_by_label("Email").fill("browser@example.com")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_label("Username").fill("browser.user")
    await page.get_by_role("button", name="Create account").click()
    await expect(page).to_have_url(f"{base}/ui/login?notice=registered")
    await expect(page.get_by_role("status")).to_contain_text("Your account was created")

    # A wrong password first: the error is shown on the form, tied to it for screen readers.
    await page.get_by_label("Email or username").fill("browser.user")
    await page.get_by_label("Password").fill("not the password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("Invalid email, username or password")

    # Sign in with the username.
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/ui/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome")
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert cookies["authgate_access"]["httpOnly"] is True
    assert cookies["authgate_ui_refresh"]["path"] == "/ui"

    # Edit the account.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").click()
    await expect(page).to_have_url(f"{base}/ui/account")
    await page.get_by_label("Full name").fill("Ada Browser")
    await page.get_by_label("Phone").fill("+14155550123")
    await page.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status")).to_have_text("Your changes were saved.")
    await expect(page.get_by_label("Full name")).to_have_value("Ada Browser")
    await expect(page.get_by_label("Phone")).to_have_value("+14155550123")

    # The access cookie expires: the next page load refreshes it transparently.
    await page.context.clear_cookies(name="authgate_access")
    await page.goto(f"{base}/ui/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome, Ada Browser")

    # Sessions: this browser is listed.
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Security").click()
    await expect(page).to_have_url(f"{base}/ui/security/sessions")
    rows = page.get_by_role("row").filter(has_text="this browser")
    await expect(rows).to_have_count(1)

    # Sign out: the console is closed again.
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page).to_have_url(f"{base}/ui/login?notice=signed_out")
    await page.goto(f"{base}/ui/account")
    await expect(page).to_have_url(re.compile(r"/ui/login\?next=/ui/account$"))

    assert problems == []  # no CSP violation or script error on any page


async def test_mfa_setup_and_avatar_images_load_under_the_csp(page: object, console_server: str) -> None:
    """The QR code (a data: URI) and the avatar (the API's image URL) really render in a browser."""
    import io

    import pyotp
    from PIL import Image
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    base = console_server
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    email = "images@example.com"
    async with httpx.AsyncClient(base_url=base) as api:
        response = await api.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
        assert response.status_code == 201, response.text

    await page.goto(f"{base}/ui/login")
    await page.get_by_label("Email or username").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/ui/")

    # Two-step verification: the QR image decodes, the typed-in secret enables it.
    await page.goto(f"{base}/ui/security/mfa")
    await page.get_by_role("button", name="Set up an authenticator app").click()
    qr = page.get_by_role("img", name=re.compile("QR code"))
    await expect(qr).to_be_visible()
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
    secret = (await page.locator("#totp-secret").inner_text()).strip()
    await page.get_by_label("Code from the app").fill(pyotp.TOTP(secret).now())
    await page.get_by_role("button", name="Turn on two-step verification").click()
    await expect(page.locator(".codes li")).to_have_count(10)

    # Avatar: a multipart upload with the CSRF field inside, then shown through the API.
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 120, 200)).save(out, "PNG")
    await page.goto(f"{base}/ui/account/profile")
    await page.get_by_label("New picture").set_input_files(
        files=[{"name": "me.png", "mimeType": "image/png", "buffer": out.getvalue()}]
    )
    await page.get_by_role("button", name="Upload").click()
    await expect(page.get_by_role("status")).to_have_text("Your changes were saved.")
    avatar = page.get_by_role("img", name="Your current profile picture")
    await expect(avatar).to_be_visible()
    assert await avatar.evaluate("img => img.complete && img.naturalWidth > 0")

    assert problems == []  # no CSP violation or failed load


LIGHT_BG, DARK_BG = "rgb(247, 248, 250)", "rgb(17, 19, 24)"  # --color-bg in each scheme


async def test_the_chosen_theme_overrides_the_system_scheme(page: object, console_server: str) -> None:
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    base = console_server
    email = "theme@example.com"
    await _register(base, email)
    body = page.locator("body")

    await page.emulate_media(color_scheme="light")
    await page.goto(f"{base}/ui/login")
    await expect(body).to_have_css("background-color", LIGHT_BG)  # signed out: the system's scheme
    await page.get_by_label("Email or username").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/ui/")

    async def choose(theme: str) -> None:
        await page.goto(f"{base}/ui/account/settings")
        await page.get_by_label("Theme").select_option(label=theme)
        await page.get_by_role("button", name="Save").click()
        await expect(page.get_by_role("status")).to_have_text("Your changes were saved.")

    await choose("Dark")
    await expect(body).to_have_css("background-color", DARK_BG)  # dark on a light system
    await page.emulate_media(color_scheme="dark")
    await choose("Light")
    await expect(body).to_have_css("background-color", LIGHT_BG)  # light on a dark system
    await choose("Follow the system")
    await expect(body).to_have_css("background-color", DARK_BG)
    await page.emulate_media(color_scheme="light")
    await expect(body).to_have_css("background-color", LIGHT_BG)


async def test_pages_reflow_at_320_pixels_and_wide_tables_scroll_by_keyboard(
    page: object, console_server: str
) -> None:
    """WCAG 1.4.10: nothing scrolls the page sideways at 320 CSS pixels; a table wider than that
    scrolls inside its own region, which the keyboard can reach (axe `scrollable-region-focusable`)."""
    from playwright.async_api import Page, expect

    assert isinstance(page, Page)
    base = console_server
    email = "narrow.screen.reader@example.com"
    await _register(base, email, sessions=2)  # other sessions: the sessions table has rows to overflow with
    await page.set_viewport_size({"width": 320, "height": 640})
    await page.goto(f"{base}/ui/login")
    await page.get_by_label("Email or username").fill(email)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page).to_have_url(f"{base}/ui/")
    for path in (
        "/ui/",
        "/ui/account",
        "/ui/security/mfa",
        "/ui/security/sessions",
        "/ui/security/events",
        "/ui/api-keys",
    ):
        await page.goto(f"{base}{path}")
        width = await page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 320, (path, width)
    await page.goto(f"{base}/ui/security/sessions")
    table = page.get_by_role("region", name="Sessions table")
    await expect(table).to_have_attribute("tabindex", "0")
    await table.focus()
    await page.keyboard.press("ArrowRight")
    assert await table.evaluate("(el) => el.scrollWidth > el.clientWidth")  # it does scroll here
