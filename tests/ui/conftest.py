"""Console helpers: sign in through the pages, read the CSRF value the forms must echo."""

from __future__ import annotations

import pytest
from httpx import AsyncClient, Response

from tests.factories import PASSWORD, register


def csrf(client: AsyncClient) -> str:
    return str(client.cookies["authgate_csrf"])


async def post_form(client: AsyncClient, url: str, data: dict[str, str]) -> Response:
    """POST a console form with the CSRF value, like the browser does."""
    return await client.post(url, data={"csrf_token": csrf(client), **data})


async def ui_sign_in(client: AsyncClient, identifier: str, password: str = PASSWORD) -> Response:
    await client.get("/ui/login")  # sets the pre-session CSRF cookie
    response = await post_form(client, "/ui/login", {"identifier": identifier, "password": password})
    assert response.status_code == 303, response.text
    return response


@pytest.fixture
async def ui_user(client: AsyncClient) -> dict[str, object]:
    """A registered user signed in to the console through its sign-in form."""
    user = await register(client, username=None)
    client.cookies.clear()
    await ui_sign_in(client, str(user["email"]))
    return user
