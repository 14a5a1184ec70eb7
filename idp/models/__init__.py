"""SQLAlchemy models. Importing this package registers every table with ``db``."""

from .audit import AuditEvent
from .factor import Factor, RecoveryCode
from .group import Group, GroupMember
from .oauth import AuthorizationCode, Consent, OAuthClient, RefreshToken
from .registration import RegistrationAttempt, RegistrationToken
from .resource import ApiResource, ResourceScope, client_resources
from .user import User

__all__ = [
    "ApiResource",
    "AuditEvent",
    "AuthorizationCode",
    "Consent",
    "Factor",
    "Group",
    "GroupMember",
    "OAuthClient",
    "RecoveryCode",
    "RefreshToken",
    "RegistrationAttempt",
    "RegistrationToken",
    "ResourceScope",
    "User",
    "client_resources",
]
