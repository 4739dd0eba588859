"""Builders for test data, through the public API where that is the point of the test."""

from __future__ import annotations

import itertools
from typing import Any

from httpx import AsyncClient, Response

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@example.com"


async def register(client: AsyncClient, **overrides: Any) -> dict[str, Any]:
    body = {"email": unique_email(), "password": PASSWORD, **overrides}
    response = await client.post("/api/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def login(client: AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def signed_in(client: AsyncClient, **overrides: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """A new user and the bearer headers for it."""
    user = await register(client, **overrides)
    tokens = await login(client, user["email"], overrides.get("password", PASSWORD))
    client.cookies.clear()  # bearer only, unless a test wants the cookies
    return user, bearer(tokens["access_token"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["code"] == code
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def grant_role(db: Any, user_id: str, role_name: str = "admin") -> None:
    """Give a user a role directly in the database (the roles API is another feature)."""
    import uuid

    from sqlalchemy import insert, select

    from authgate.roles.models import Role, user_role

    role_id = await db.scalar(select(Role.id).where(Role.name == role_name))
    await db.execute(insert(user_role).values(user_id=uuid.UUID(user_id), role_id=role_id))
    await db.commit()
