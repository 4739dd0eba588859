"""Walks every `/api/v1/workspaces/{...}` route in the OpenAPI schema with every kind of caller.

A route added later must be listed in ROLE_TABLE (or this test fails), and must answer 404 to
non-members, 403 to members below its role and 2xx to the rest — which it only does if it uses
the workspace access dependency.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import signed_in
from tests.workspaces.helpers import BOUND_HEADER, add_member, install_bound_key_override, make_workspace_rows

P = "/api/v1/workspaces/{ws}"
# (method, path) → (lowest role allowed, JSON body). `{user_id}` is always another member (a viewer).
ROLE_TABLE: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {
    ("GET", P): ("viewer", None),
    ("PATCH", P): ("admin", {"description": "walked"}),
    ("DELETE", P): ("owner", None),
    ("GET", P + "/members"): ("viewer", None),
    ("PATCH", P + "/members/{user_id}"): ("admin", {"role": "member"}),
    ("DELETE", P + "/members/{user_id}"): ("admin", None),
    ("POST", P + "/transfer"): ("owner", {"user_id": "{user_id}"}),
    ("POST", P + "/invitations"): ("admin", {"email": "walker@example.com", "role": "viewer"}),
    ("GET", P + "/invitations"): ("admin", None),
    ("DELETE", P + "/invitations/{invitation_id}"): ("admin", None),
}
RANK = {"viewer": 0, "member": 1, "admin": 2, "owner": 3}
CALLERS = ("nonmember", "viewer", "member", "admin", "owner")


def workspace_routes(app: FastAPI) -> list[tuple[str, str]]:
    routes = []
    for path, operations in app.openapi()["paths"].items():
        if path.startswith("/api/v1/workspaces/{"):
            routes.extend((method.upper(), path) for method in operations)
    return sorted(routes)


def expected_status(caller: str, minimum: str) -> int | None:
    """404 for outsiders, 403 below the route's role, None (any 2xx) otherwise."""
    if caller == "nonmember":
        return 404
    return 403 if RANK[caller] < RANK[minimum] else None


def fill(value: Any, params: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**params)
    if isinstance(value, dict):
        return {k: fill(v, params) for k, v in value.items()}
    return value


async def test_every_workspace_route_is_listed_in_the_role_table(app: FastAPI) -> None:
    routes = workspace_routes(app)
    missing = [r for r in routes if r not in ROLE_TABLE]
    assert not missing, f"add these workspace routes to ROLE_TABLE with their role: {missing}"
    assert len(routes) == len(ROLE_TABLE)


async def test_walk_every_workspace_route_with_every_role(
    app: FastAPI, client: AsyncClient, db: AsyncSession
) -> None:
    install_bound_key_override(app)
    users = {name: await signed_in(client) for name in (*CALLERS, "target")}
    members = {role: users[role][0]["id"] for role in ("viewer", "member", "admin", "owner")}
    failures = []
    for method, path in workspace_routes(app):
        minimum, body = ROLE_TABLE[(method, path)]
        # Four views of each caller: by id, by slug, through a key bound elsewhere, on a deleted workspace.
        for caller in CALLERS:
            for variant in ("id", "slug", "bound_elsewhere", "deleted"):
                workspace, invitation = await make_workspace_rows(db, members, deleted=variant == "deleted")
                await add_member(db, workspace.id, users["target"][0]["id"], "viewer")
                params = {
                    "ws": workspace.slug if variant == "slug" else str(workspace.id),
                    "user_id": users["target"][0]["id"],
                    "invitation_id": str(invitation.id),
                }
                headers = dict(users[caller][1])
                if variant == "bound_elsewhere":
                    headers[BOUND_HEADER] = str(uuid.uuid4())
                url = path.format(**params)
                response = await client.request(method, url, json=fill(body, params), headers=headers)
                want = expected_status(caller, minimum) if variant in ("id", "slug") else 404
                ok = response.status_code == want if want is not None else 200 <= response.status_code < 300
                if not ok:
                    failures.append(
                        f"{method} {path} as {caller} ({variant}): {response.status_code} {response.text}"
                    )
                elif want in (403, 404):
                    assert response.json()["code"] == ("not_found" if want == 404 else "permission_denied")
    assert not failures, "\n".join(failures)


async def test_outsiders_get_404_before_their_input_is_validated(
    client: AsyncClient, db: AsyncSession
) -> None:
    _, owner = await signed_in(client)
    response = await client.post("/api/v1/workspaces", json={"name": "Quiet"}, headers=owner)
    ws = response.json()["slug"]
    viewer, viewer_headers = await signed_in(client)
    await add_member(db, response.json()["id"], viewer["id"], "viewer")
    _, stranger = await signed_in(client)
    bad = [
        ("PATCH", f"/api/v1/workspaces/{ws}", {"slug": "NOT OK", "extra": 1}),
        ("PATCH", f"/api/v1/workspaces/{ws}/members/not-a-uuid", {"role": "owner"}),
        ("POST", f"/api/v1/workspaces/{ws}/transfer", {"user_id": "nope"}),
        ("POST", f"/api/v1/workspaces/{ws}/invitations", {"email": "bad"}),
        ("DELETE", f"/api/v1/workspaces/{ws}/invitations/not-a-uuid", None),
    ]
    for method, url, body in bad:
        response = await client.request(method, url, json=body, headers=stranger)
        assert response.status_code == 404, (method, url, response.text)
        response = await client.request(method, url, json=body, headers=viewer_headers)
        assert response.status_code == 403, (method, url, response.text)
