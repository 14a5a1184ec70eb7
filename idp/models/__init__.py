"""SQLAlchemy models. Importing this package registers every table with ``db``."""

from .audit import AuditEvent
from .factor import Factor, RecoveryCode
from .oauth import AuthorizationCode, Consent, OAuthClient, RefreshToken
from .registration import RegistrationAttempt, RegistrationToken
from .user import User

__all__ = [
    "AuditEvent",
    "AuthorizationCode",
    "Consent",
    "Factor",
    "OAuthClient",
    "RecoveryCode",
    "RefreshToken",
    "RegistrationAttempt",
    "RegistrationToken",
    "User",
]
