"""SQLAlchemy models. Importing this package registers every table with ``db``."""

from .audit import AuditEvent
from .oauth import AuthorizationCode, Consent, OAuthClient, RefreshToken
from .user import User

__all__ = ["AuditEvent", "AuthorizationCode", "Consent", "OAuthClient", "RefreshToken", "User"]
