"""OAuth clients, authorization codes, refresh tokens and consents.

Secrets and one-time values are stored only as SHA-256 hashes of 256-bit random
values (codes, refresh tokens, client secrets): a database dump reveals none of them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import db
from ..security.crypto import equal, hash_token
from .base import UTCDateTime, utcnow
from .user import User

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


class OAuthClient(db.Model):
    """A registered relying party (RFC 6749 2, OIDC Registration 2 metadata)."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    grant_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    scope: Mapped[str] = mapped_column(Text, default="openid profile email")
    token_endpoint_auth_method: Mapped[str] = mapped_column(
        String(32), default="client_secret_basic"
    )
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    first_party: Mapped[bool] = mapped_column(Boolean, default=False)
    require_mfa: Mapped[bool] = mapped_column(Boolean, default=False)
    default_acr: Mapped[str | None] = mapped_column(String(200))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    # RFC 7591 2: what the sign-in pages show about the application that asks.
    logo_uri: Mapped[str | None] = mapped_column(Text)
    client_uri: Mapped[str | None] = mapped_column(Text)
    policy_uri: Mapped[str | None] = mapped_column(Text)
    tos_uri: Mapped[str | None] = mapped_column(Text)
    # OpenID Connect Back-Channel Logout 1.0 section 2.2.
    backchannel_logout_uri: Mapped[str | None] = mapped_column(Text)
    backchannel_logout_session_required: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default="0"
    )
    # Browser origins allowed to call the token, userinfo, revocation and key endpoints
    # (CORS); exact origins, never a wildcard.
    allowed_origins: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    # RFC 7591 2: the client's keys by URL (private_key_jwt), instead of ``jwks``.
    jwks_uri: Mapped[str | None] = mapped_column(Text)
    # RFC 9126 6: this client must push its authorization requests.
    require_par: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # RFC 7591 dynamic registration: never first party; managed with the RFC 7592
    # registration access token, stored only as its SHA-256.
    registered_dynamically: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    registration_access_token_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    # -- Authlib ClientMixin -------------------------------------------------
    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == "none"

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"jwks": self.jwks} if self.jwks else {}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core 3.1.2.1 makes redirect_uri REQUIRED; never guess one.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        allowed = set(self.scope.split())
        return " ".join(s for s in scope.split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Exact string comparison (RFC 6749 3.1.2.3, OAuth 2.0 Security BCP 4.1.3)."""
        return any(equal(redirect_uri, uri) for uri in self.redirect_uris)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.client_secret_hash or not client_secret:
            return False
        return equal(hash_token(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        if grant_type == "client_credentials" and self.is_public:
            return False
        return grant_type in self.grant_types

    def set_secret(self, secret: str | None) -> None:
        self.client_secret_hash = hash_token(secret) if secret else None


class AuthorizationCode(db.Model):
    """A single-use authorization code (RFC 6749 4.1.2) with the sign-in facts
    (``auth_time``, ``acr``, ``amr``, ``sid``) the ID token will assert."""

    __tablename__ = "authorization_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text, default="")
    nonce: Mapped[str | None] = mapped_column(String(512))
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(16))
    auth_time: Mapped[int] = mapped_column(Integer)
    acr: Mapped[str | None] = mapped_column(String(200))
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    sid: Mapped[str | None] = mapped_column(String(64))
    # Ids of the second factors the sign-in used (a removed factor ends what it earned).
    factor_ids: Mapped[list[int] | None] = mapped_column(JSON)
    claims: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # RFC 8707 resource indicators the authorization request named.
    resources: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The access token issued for this code, so a replayed code can revoke it
    # (RFC 6749 4.1.2: "SHOULD revoke ... all tokens previously issued").
    access_token_jti: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[User] = relationship()

    # -- Authlib AuthorizationCodeMixin / OIDC AuthorizationCodeMixin -------
    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> str | None:
        return self.acr

    def get_amr(self) -> list[str]:
        return list(self.amr or [])


class RefreshToken(db.Model):
    """A refresh token. Rotation makes a chain within one ``family_id``; presenting a
    rotated token again revokes the whole family (OAuth 2.0 Security BCP 4.14.2)."""

    __tablename__ = "refresh_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    family_id: Mapped[str] = mapped_column(String(64), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_id: Mapped[int | None] = mapped_column(
        ForeignKey("authorization_codes.id", ondelete="SET NULL"), index=True
    )
    scope: Mapped[str] = mapped_column(Text, default="")
    auth_time: Mapped[int | None] = mapped_column(Integer)
    acr: Mapped[str | None] = mapped_column(String(200))
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    sid: Mapped[str | None] = mapped_column(String(64))
    factor_ids: Mapped[list[int] | None] = mapped_column(JSON)
    # Granted with offline_access: survives sign-out until revoked. Otherwise the token
    # is bound to its browser session (``sid``) and dies with it (OIDC Core 11).
    offline: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    # RFC 8707: the resources this grant covers (a refresh may narrow to one of them).
    resources: Mapped[list[str] | None] = mapped_column(JSON)
    access_token_jti: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User | None] = relationship()

    def is_usable(self, now: datetime) -> bool:
        return self.revoked_at is None and self.rotated_at is None and self.expires_at > now


class Consent(db.Model):
    """A user's remembered grant of scopes to a client (OIDC Core 3.1.2.4)."""

    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id", name="uq_consents_user_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def covers(self, scope: str) -> bool:
        return set(scope.split()) <= set(self.scope.split())
