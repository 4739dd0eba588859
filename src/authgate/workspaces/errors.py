"""Workspace domain errors."""

from __future__ import annotations

from authgate.errors import AuthgateError


class SlugTakenError(AuthgateError):
    status, code, title = 409, "slug_taken", "Workspace slug already taken"


class LastOwnerError(AuthgateError):
    """The owner cannot leave or be demoted: transfer ownership first."""

    status, code, title = 409, "last_owner", "The workspace's only owner cannot leave or be demoted"


class AlreadyMemberError(AuthgateError):
    status, code, title = 409, "already_member", "Already a member of this workspace"


class InvitationEmailMismatchError(AuthgateError):
    status, code, title = 403, "invitation_email_mismatch", "This invitation is for another email address"
