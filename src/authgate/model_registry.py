"""Imports every model module so `Base.metadata` is complete (Alembic and tests import this)."""

from authgate.api_keys import models as api_key_models
from authgate.audit import models as audit_models
from authgate.db import Base
from authgate.mfa import models as mfa_models
from authgate.outbox import models as outbox_models
from authgate.profiles import models as profile_models
from authgate.ratelimit import models as ratelimit_models
from authgate.roles import models as roles_models
from authgate.security import keys as key_models
from authgate.sessions import models as session_models
from authgate.users import models as user_models
from authgate.verification import models as verification_models
from authgate.workspaces import models as workspace_models

__all__ = [
    "Base",
    "api_key_models",
    "audit_models",
    "key_models",
    "mfa_models",
    "outbox_models",
    "profile_models",
    "ratelimit_models",
    "roles_models",
    "session_models",
    "user_models",
    "verification_models",
    "workspace_models",
]
