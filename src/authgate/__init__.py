"""authgate: a self-hosted identity and user-management service."""

__version__ = "0.1.0"
