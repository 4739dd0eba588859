"""Workspaces (tenants), their memberships and pending invitations."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal, get_args

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from authgate.db import Base, new_id, utcnow
from authgate.users.models import User

WorkspaceRole = Literal["owner", "admin", "member", "viewer"]
AssignableRole = Literal["admin", "member", "viewer"]  # owner only moves by transfer
InvitationStatus = Literal["pending", "accepted", "revoked", "expired"]
ASSIGNABLE_ROLES: tuple[AssignableRole, ...] = get_args(AssignableRole)

ROLE_CHECK = "role IN ('owner', 'admin', 'member', 'viewer')"


class Workspace(Base):
    __tablename__ = "workspace"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(48), unique=True)  # deleted workspaces keep theirs reserved
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(2000), default="")
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    deleted_at: Mapped[datetime | None]


class WorkspaceMember(Base):
    __tablename__ = "workspace_member"
    __table_args__ = (
        UniqueConstraint("workspace_id", "user_id"),
        CheckConstraint(ROLE_CHECK, name="role"),
        # The database's own guard for "exactly one owner": at most one owner row per workspace.
        Index(
            "uq_workspace_member_one_owner",
            "workspace_id",
            unique=True,
            sqlite_where=text("role = 'owner'"),
            postgresql_where=text("role = 'owner'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("workspace.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("user_account.id", ondelete="CASCADE"), index=True)
    role: Mapped[WorkspaceRole] = mapped_column(String(16))
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)

    user: Mapped[User] = relationship(lazy="raise")


class WorkspaceInvitation(Base):
    __tablename__ = "workspace_invitation"
    __table_args__ = (CheckConstraint("role IN ('admin', 'member', 'viewer')", name="role"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    workspace_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("workspace.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    email_normalized: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[AssignableRole] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the token; never the token
    invited_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"),
        index=True,  # erasing an account sets it NULL
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    accepted_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    revoked_at: Mapped[datetime | None]

    @property
    def status(self) -> InvitationStatus:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at <= utcnow():
            return "expired"
        return "pending"
