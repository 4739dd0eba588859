"""Imports every model module so `Base.metadata` is complete (Alembic and tests import this)."""

from authgate.audit import models as audit_models
from authgate.db import Base
from authgate.outbox import models as outbox_models
from authgate.roles import models as roles_models
from authgate.security import keys as key_models
from authgate.sessions import models as session_models
from authgate.users import models as user_models
from authgate.verification import models as verification_models

__all__ = ["Base", "audit_models", "key_models", "outbox_models", "roles_models", "session_models", "user_models",
           "verification_models"]
