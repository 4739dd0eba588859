"""The permission catalogue: fixed in code, granted through roles."""

from __future__ import annotations

PERMISSIONS: dict[str, str] = {
    "users:read": "List and read any user",
    "users:write": "Create and update users, restore deleted users",
    "users:delete": "Delete (deactivate) users",
    "roles:read": "List and read roles",
    "roles:manage": "Create, change and delete roles",
    "roles:assign": "Assign roles to users",
    "audit:read": "Read the audit log",
    "workspaces:admin": "List and inspect every workspace; hand over one whose owner's account is deactivated or deleted",
    "tokens:introspect": "Introspect access tokens (RFC 7662)",
    "outbox:read": "Inspect the message outbox, including dead messages",
}

ADMIN_ROLE = "admin"
USER_ROLE = "user"
BUILTIN_ROLES: dict[str, tuple[str, frozenset[str]]] = {
    ADMIN_ROLE: ("Administrator: every permission", frozenset(PERMISSIONS)),
    USER_ROLE: ("Regular user: self-service only", frozenset()),
}
