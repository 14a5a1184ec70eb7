"""All Authlib wiring: the authorization server, its grants, PKCE, private_key_jwt.

Authlib validates the protocol (RFC 6749, 7636, 7523, OIDC Core); this module plugs in
the provider's storage, tokens and sign-in facts. Codes carry ``auth_time``, ``acr``,
``amr`` and ``sid`` from the sign-in; the ID token asserts them.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.grants.util import validate_nonce
from flask import Flask
from joserfc.jwk import KeySet
from sqlalchemy import update

from .. import audit, txmemo
from ..extensions import db
from ..models import AuthorizationCode, OAuthClient, User
from ..models.base import utcnow
from ..security.crypto import hash_token, random_token
from ..services import services
from .client_cache import client_cache
from .tokens import AuthContext, TokenService

SCOPES_SUPPORTED = ["openid", "profile", "email", "phone", "offline_access"]
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]


def _load_client(client_id: str) -> OAuthClient | None:
    rows = txmemo.memo(
        db.session(),
        ("client", client_id),
        OAuthClient,
        lambda: list(
            db.session.execute(db.select(OAuthClient).filter_by(client_id=client_id)).scalars()
        ),
    )
    return rows[0] if rows else None


def query_client(client_id: str | None) -> OAuthClient | None:
    """The enabled client with this id, for the protocol endpoints (read only).

    Remembered across requests while no client changes (:mod:`.client_cache`), else
    loaded once per database transaction (the authorization pipeline and the sign-in
    policy both ask for it in one request)."""
    if not client_id or len(client_id) > 64 or "\x00" in client_id:
        return None  # (a NUL would reach PostgreSQL, which refuses it in text)
    cache = client_cache()
    if cache is None:
        client = _load_client(client_id)
    else:
        client = cache.get(client_id, lambda: _load_client(client_id))
    if client is None or client.disabled:
        return None
    return client


def _token_response(
    client: OAuthClient,
    user: User | None,
    scope: str,
    ctx: AuthContext,
    *,
    refresh: bool,
    nonce: str | None = None,
    family_id: str | None = None,
    code: AuthorizationCode | None = None,
    refresh_expires_at=None,
    id_token: bool = True,
    jti: str | None = None,
) -> dict[str, Any]:
    ts = TokenService(services())
    access, jti, expires_in = ts.access_token(client, user, scope, ctx, jti=jti)
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": scope,
    }
    if user is not None and refresh and client.check_grant_type("refresh_token"):
        body["refresh_token"] = ts.new_refresh_token(
            client,
            user,
            scope,
            ctx,
            access_token_jti=jti,
            family_id=family_id,
            code_id=code.id if code else None,
            expires_at=refresh_expires_at,
        )
    if user is not None and id_token and "openid" in scope.split():
        body["id_token"] = ts.id_token(client, user, ctx, nonce=nonce, access_token=access)
    audit.record(
        "token.issued",
        user_id=user.id if user else None,
        client_id=client.client_id,
        jti=jti,
        scope=scope,
        refresh="refresh_token" in body,
    )
    return body


class PKCE(CodeChallenge):
    """RFC 7636 with S256 only (``plain`` is refused) and required for public clients."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        method = data.get("code_challenge_method")
        if challenge and method != "S256":
            # RFC 7636 4.3 defaults a missing method to "plain", which we do not accept.
            raise InvalidRequestError("code_challenge_method must be S256.")
        if grant.request.client.is_public and not challenge:
            raise InvalidRequestError("Public clients must use PKCE (code_challenge, S256).")
        return super().validate_code_challenge(grant, redirect_uri)


class IDToken(OpenIDCode):
    """ID token issuance for the code flow, signed by the provider's key ring.

    Prompt handling is done by the provider's own authorization pipeline, so the
    Authlib prompt hook is not registered.
    """

    def exists_nonce(self, nonce: str, request) -> bool:
        # Nonce replay protection is the RP's job (OIDC Core 15.5.2); codes are single use.
        return False

    def validate_openid_authorization_request(self, grant, redirect_uri):
        validate_nonce(grant.request, self.exists_nonce, self.require_nonce)

    def process_token(self, grant, response):
        return response

    def __call__(self, grant):
        grant.register_hook(
            "after_validate_authorization_request_payload",
            self.validate_openid_authorization_request,
        )


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS  # noqa: RUF012

    def validate_requested_scope(self):
        scope = self.request.payload.scope or ""
        if "openid" not in scope.split():
            # This provider serves OpenID Connect only (OIDC Core 3.1.2.1).
            raise InvalidScopeError("The 'openid' scope is required.")

    def save_authorization_code(self, code: str, request) -> None:
        svc = services()
        ctx: AuthContext = request.auth_context  # set by the authorization pipeline
        data = request.payload.data
        db.session.add(
            AuthorizationCode(
                code_hash=hash_token(code),
                client_id=request.client.client_id,
                user_id=request.user.id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=ctx.auth_time,
                acr=ctx.acr,
                amr=list(ctx.amr),
                sid=ctx.sid,
                expires_at=utcnow() + timedelta(seconds=svc.settings.tokens.code_ttl),
            )
        )
        db.session.commit()

    def generate_authorization_code(self) -> str:
        return random_token(32)

    def query_authorization_code(self, code: str, client: OAuthClient):
        if not code or len(code) > 128:
            return None
        row = db.session.execute(
            db.select(AuthorizationCode).filter_by(code_hash=hash_token(code))
        ).scalar_one_or_none()
        if row is None:
            return None
        if row.client_id != client.client_id:
            audit.record_now(
                "token.refused",
                outcome="failure",
                client_id=client.client_id,
                reason="code_of_another_client",
            )
            return None
        if row.used_at is not None:
            self._on_reuse(row)
            return None
        if row.expires_at <= utcnow():
            return None
        return row

    def _on_reuse(self, row: AuthorizationCode) -> None:
        TokenService(services()).revoke_for_code(row.id, row.access_token_jti)
        audit.record(
            "token.code_reuse", outcome="failure", user_id=row.user_id, client_id=row.client_id
        )
        db.session.commit()

    def delete_authorization_code(self, authorization_code) -> None:
        # Burned before tokens are issued (see create_token_response); nothing left to do.
        return None

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User | None:
        user = db.session.get(User, authorization_code.user_id)
        if user is None or not user.is_active:
            return None
        return user

    def create_token_response(self):
        code: AuthorizationCode = self.request.authorization_code
        # Atomic single use (RFC 6749 4.1.2): exactly one request flips used_at. The jti
        # of the access token about to be issued is recorded by the same statement, so
        # a replay of the code can revoke it.
        jti = TokenService.new_jti()
        burned = db.session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.id == code.id, AuthorizationCode.used_at.is_(None))
            .values(used_at=utcnow(), access_token_jti=jti)
        ).rowcount
        if burned != 1:
            db.session.rollback()
            self._on_reuse(code)
            raise InvalidGrantError("The authorization code has already been used.")
        user = self.authenticate_user(code)
        if user is None:
            db.session.commit()
            raise InvalidGrantError("The user of this authorization code cannot sign in.")
        ctx = AuthContext(code.auth_time, code.acr, tuple(code.amr or ()), code.sid)
        body = _token_response(
            self.request.client,
            user,
            code.scope,
            ctx,
            refresh=True,
            nonce=code.nonce,
            code=code,
            jti=jti,
        )
        db.session.commit()
        return 200, body, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh with rotation; a rotated token presented again revokes its family
    (OAuth 2.0 Security BCP 4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS  # noqa: RUF012
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str):
        ts = TokenService(services())
        row = ts.find_refresh_token(refresh_token)
        if row is None:
            return None
        now = utcnow()
        if row.rotated_at is not None and row.revoked_at is None:
            count = ts.revoke_family(row.family_id)
            audit.record(
                "token.refresh_reuse",
                outcome="failure",
                user_id=row.user_id,
                client_id=row.client_id,
                family=row.family_id,
                revoked=count,
            )
            db.session.commit()
            return None
        if not row.is_usable(now):
            return None
        return row

    def _validate_request_token(self, client):
        refresh_token = self.request.form.get("refresh_token")
        if not refresh_token:
            raise InvalidRequestError("Missing 'refresh_token' in request.")
        token = self.authenticate_refresh_token(refresh_token)
        if token is None or token.client_id != client.client_id:
            raise InvalidGrantError("The refresh token is invalid, expired or revoked.")
        return token

    def _validate_token_scope(self, token):
        scope = self.request.payload.scope
        if scope and not set(scope.split()) <= set(token.scope.split()):
            raise InvalidScopeError()

    def authenticate_user(self, refresh_token):
        user = db.session.get(User, refresh_token.user_id)
        if user is None or not user.is_active:
            return None
        return user

    def revoke_old_credential(self, refresh_token) -> None:
        return None  # done atomically in create_token_response

    def create_token_response(self):
        old = self.request.refresh_token
        user = self.authenticate_user(old)
        if user is None:
            raise InvalidGrantError("The user of this refresh token cannot sign in.")
        scope = self.request.payload.scope or old.scope
        rotated = db.session.execute(
            update(type(old))
            .where(
                type(old).id == old.id,
                type(old).rotated_at.is_(None),
                type(old).revoked_at.is_(None),
            )
            .values(rotated_at=utcnow())
        ).rowcount
        if rotated != 1:
            db.session.rollback()
            raise InvalidGrantError("The refresh token has already been used.")
        ctx = AuthContext(old.auth_time, old.acr, tuple(old.amr or ()), old.sid)
        body = _token_response(
            self.request.client,
            user,
            scope,
            ctx,
            refresh=True,
            family_id=old.family_id,
            refresh_expires_at=old.expires_at,
        )
        db.session.commit()
        return 200, body, self.TOKEN_RESPONSE_HEADER


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]  # noqa: RUF012

    def validate_token_request(self):
        super().validate_token_request()
        scope = self.request.payload.scope or ""
        if "openid" in scope.split():
            raise InvalidScopeError("'openid' cannot be requested without a user.")

    def create_token_response(self):
        client = self.request.client
        scope = client.get_allowed_scope(self.request.payload.scope or client.scope)
        scope = " ".join(s for s in scope.split() if s not in ("openid", "offline_access"))
        body = _token_response(client, None, scope, AuthContext(), refresh=False, id_token=False)
        db.session.commit()
        return 200, body, self.TOKEN_RESPONSE_HEADER


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication (OIDC Core 9, RFC 7523 3)."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, audiences: list[str]):
        super().__init__(token_url=None, validate_jti=True)
        self._audiences = audiences

    def get_audiences(self) -> list[str]:
        return self._audiences

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        return KeySet.import_key_set(client.jwks or {"keys": []})

    def validate_jti(self, claims, jti) -> bool:
        exp = claims.get("exp")
        ttl = max(60, int(exp - time.time()) + 60) if isinstance(exp, int | float) else 3600
        key = f"client_assertion:{hash_token(str(claims.get('sub')) + '|' + str(jti))}"
        return services().store.set_if_absent(key, b"1", min(ttl, 86400))


class Server(AuthorizationServer):
    def create_oauth2_request(self, request):
        # Resumed requests arrive already built from the stored transaction.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)


def create_authorization_server(app: Flask) -> AuthorizationServer:
    issuer = app.extensions["idp"].settings.issuer
    server = Server()
    server.init_app(app, query_client=query_client, save_token=lambda token, request: None)
    server.register_grant(AuthorizationCodeGrant, [PKCE(required=True), IDToken()])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_client_auth_method(
        PrivateKeyJWT.CLIENT_AUTH_METHOD,
        PrivateKeyJWT([issuer, f"{issuer}/token", f"{issuer}/introspect", f"{issuer}/revoke"]),
    )
    return server
