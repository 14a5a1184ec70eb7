"""All Authlib wiring: the authorization server, its grants, PKCE, private_key_jwt.

Authlib validates the protocol (RFC 6749, 7636, 7523, OIDC Core); this module plugs in
the provider's storage, tokens and sign-in facts. Codes carry ``auth_time``, ``acr``,
``amr`` and ``sid`` from the sign-in; the ID token asserts them.
"""

from __future__ import annotations

import binascii
import json
import logging
import math
import time
from base64 import urlsafe_b64decode
from datetime import timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Request, grants
from authlib.oauth2.rfc6749 import authenticate_client as basic_client_auth
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.grants.util import validate_nonce
from flask import Flask, g
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import update

from .. import audit, txmemo
from ..extensions import db
from ..groups import group_names
from ..models import AuthorizationCode, OAuthClient, User
from ..models.base import utcnow
from ..security.crypto import hash_token, random_token
from ..services import services
from ..web import parse_json
from .claims import id_token_claims, id_token_request
from .client_cache import client_cache
from .resources import OIDC_SCOPES, InvalidTarget, Target, choose_target, requested_resources
from .tokens import AuthContext, TokenService

#: The OpenID Connect scopes; registered API resources add their own
#: (:func:`idp.oidc.resources.supported_scopes`).
SCOPES_SUPPORTED = list(OIDC_SCOPES)
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


def _id_token_request(raw: Any) -> dict[str, list[str]] | None:
    """What the authorization code keeps of the ``claims`` parameter (OIDC Core 5.5)."""
    names = id_token_request(raw if isinstance(raw, str) else None)
    return {"id_token": names} if names else None


class InvalidTargetError(OAuth2Error):
    """RFC 8707 2: the requested resource is invalid, unknown, not allowed or not granted."""

    error = "invalid_target"


def token_target(client: OAuthClient, request, **kwargs: Any) -> Target:
    """The audience and scope of the access token this token request gets
    (:func:`idp.oidc.resources.choose_target`), from its ``resource`` values."""
    try:
        values = requested_resources(request.payload.datalist.get("resource") or [])
        return choose_target(client, requested=values, **kwargs)
    except InvalidTarget as exc:
        raise InvalidTargetError(str(exc)) from None


def _token_response(
    client: OAuthClient,
    user: User | None,
    ctx: AuthContext,
    *,
    access: Target,
    grant_scope: str,
    refresh: bool,
    id_scope: str | None = None,
    resources: list[str] | None = None,
    nonce: str | None = None,
    family_id: str | None = None,
    code: AuthorizationCode | None = None,
    refresh_expires_at=None,
    jti: str | None = None,
    id_claims: list[str] | None = None,
) -> dict[str, Any]:
    """The token response: an access token for *access* (its audience and scope), and
    for a user a refresh token bound to the whole grant (*grant_scope*, *resources*;
    RFC 6749 6, RFC 8707 2.2) and an ID token when *id_scope* holds ``openid`` (with
    the user claims *id_claims* the ``claims`` parameter asked for, OIDC Core 5.5).

    A refresh token is offline (survives sign-out) only when ``offline_access`` is in
    the granted scope; otherwise it is bound to ``ctx.sid`` (OpenID Connect Core 11)."""
    ts = TokenService(services())
    access_token, jti, expires_in = ts.access_token(
        client, user, access.scope, ctx, jti=jti, audience=access.audience
    )
    body: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": access.scope,
    }
    if user is not None and refresh and client.check_grant_type("refresh_token"):
        body["refresh_token"] = ts.new_refresh_token(
            client,
            user,
            grant_scope,
            ctx,
            access_token_jti=jti,
            family_id=family_id,
            code_id=code.id if code else None,
            expires_at=refresh_expires_at,
            offline="offline_access" in grant_scope.split(),
            resources=resources,
        )
    if user is not None and id_scope is not None and "openid" in id_scope.split():
        groups = group_names(user.id) if "groups" in id_scope.split() else None
        body["id_token"] = ts.id_token(
            client, user, ctx, nonce=nonce, access_token=access_token, groups=groups,
            requested=id_token_claims(user, id_scope, id_claims),
        )  # fmt: skip
    audit.record(
        "token.issued",
        user_id=user.id if user else None,
        client_id=client.client_id,
        jti=jti,
        scope=access.scope,
        resource=access.resource,
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
                # The scope the pipeline granted: resource scopes only with their
                # resource (idp.oidc.resources.authorization_scope).
                scope=getattr(request, "granted_scope", None) or request.scope,
                nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                auth_time=ctx.auth_time,
                acr=ctx.acr,
                amr=list(ctx.amr),
                sid=ctx.sid,
                factor_ids=list(ctx.factor_ids),
                # RFC 8707 2.1: the resources of the request (set by the pipeline).
                resources=list(getattr(request, "resources", None) or []) or None,
                # OIDC Core 5.5: the claims asked for by name in the ID token.
                claims=_id_token_request(data.get("claims")),
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
        # RFC 8707 2.2: a resource narrows this token to one of the code's resources;
        # checked before the code is burned, so a wrong resource does not waste it.
        target = token_target(
            self.request.client, self.request,
            granted_scope=code.scope, granted_resources=code.resources or [],
        )  # fmt: skip
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
        ctx = AuthContext(
            code.auth_time, code.acr, tuple(code.amr or ()), code.sid, tuple(code.factor_ids or ())
        )
        body = _token_response(
            self.request.client,
            user,
            ctx,
            access=target,
            grant_scope=code.scope,
            resources=code.resources,
            refresh=True,
            id_scope=code.scope,
            nonce=code.nonce,
            code=code,
            jti=jti,
            id_claims=(code.claims or {}).get("id_token"),
        )
        # Back-Channel Logout 1.0: this client now holds tokens of the session code.sid.
        services().backchannel.record(code.sid, self.request.client, user)
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
        if ts.bound_session_ended(row):
            # Granted without offline_access: it ended with its browser session (OIDC
            # Core 11). Revoke the family so introspection and the audit trail agree.
            count = ts.revoke_family(row.family_id)
            audit.record("token.session_ended", user_id=row.user_id, client_id=row.client_id,
                         family=row.family_id, revoked=count)  # fmt: skip
            db.session.commit()
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
        requested_scope = self.request.payload.scope or None
        # RFC 8707 2.2: a resource narrows the access token to one of the grant's
        # resources; the new refresh token keeps the whole grant (RFC 6749 6: the same
        # scope; RFC 8707 2.2: bound to the full original grant).
        target = token_target(
            self.request.client, self.request, granted_scope=old.scope,
            granted_resources=old.resources or [], requested_scope=requested_scope,
        )  # fmt: skip
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
        ctx = AuthContext(
            old.auth_time, old.acr, tuple(old.amr or ()), old.sid, tuple(old.factor_ids or ())
        )
        body = _token_response(
            self.request.client,
            user,
            ctx,
            access=target,
            grant_scope=old.scope,
            resources=old.resources,
            refresh=True,
            id_scope=requested_scope or old.scope,
            family_id=old.family_id,
            refresh_expires_at=old.expires_at,
        )
        db.session.commit()
        return 200, body, self.TOKEN_RESPONSE_HEADER


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]  # noqa: RUF012

    """Client credentials (RFC 6749 4.4). There is no user, so a token never carries an
    OpenID Connect scope (they are about a user: asking for one is ``invalid_scope``);
    with ``resource`` it is a token for that API with the API's scopes the client is
    allowed (RFC 8707 2.2), without it a token for the client itself with no scope."""

    def validate_token_request(self):
        super().validate_token_request()
        scope = self.request.payload.scope or ""
        user_scope = next((s for s in scope.split() if s in OIDC_SCOPES), None)
        if user_scope is not None:
            raise InvalidScopeError(
                f"'{user_scope}' is about a user; the client credentials grant has none."
            )

    def create_token_response(self):
        client = self.request.client
        granted = " ".join(s for s in client.scope.split() if s not in OIDC_SCOPES)
        target = token_target(
            client, self.request, granted_scope=granted, granted_resources=None,
            requested_scope=self.request.payload.scope or None,
        )  # fmt: skip
        body = _token_response(
            client, None, AuthContext(), access=target, grant_scope=target.scope, refresh=False
        )
        db.session.commit()
        return 200, body, self.TOKEN_RESPONSE_HEADER


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication (OIDC Core 9, RFC 7523 section 3).

    Authlib checks the signature, ``iss`` = ``sub`` = the client, ``aud`` (this
    provider, its token, introspection or revocation endpoint) and that ``exp`` has not
    passed. On top of that, so that a captured assertion is worth little:

    - ``exp`` at most :attr:`MAX_LIFETIME` (300 s) ahead of now: RFC 7523 section 3
      item 4 lets the server reject an ``exp`` "unreasonably far in the future";
    - ``iat`` required (OPTIONAL in OIDC Core 9), a number, not more than
      :attr:`CLOCK_SKEW` (30 s) in the future and not older than :attr:`MAX_AGE` (300 s):
      RFC 7523 section 3 item 6 lets the server reject an ``iat`` "unreasonably far in
      the past";
    - ``jti`` used once (OIDC Core 9: "these tokens MUST only be used once"): kept per
      client in the store for as long as the assertion could be accepted, its ``exp``
      plus the clock skew (RFC 7523 section 3 item 7), so a replay is refused while the
      assertion is valid and nothing is kept longer than that.

    Every refusal is ``invalid_client`` (RFC 6749 5.2) like the other failed client
    authentications; the endpoints audit it (``token.refused``, ``client.auth_failed``).
    """

    CLIENT_AUTH_METHOD = "private_key_jwt"
    MAX_LIFETIME = 300  # seconds an assertion's exp may lie ahead of now
    MAX_AGE = 300  # seconds since iat after which an assertion is too old
    CLOCK_SKEW = 30  # seconds of allowed clock difference (exp, nbf and iat)

    def __init__(self, audiences: list[str]):
        super().__init__(token_url=None, validate_jti=True, leeway=self.CLOCK_SKEW)
        self._audiences = audiences

    def get_audiences(self) -> list[str]:
        return self._audiences

    def extract_assertion(self, assertion: str):
        """The unverified header and claims (RFC 7515 7.1 compact form), each read with
        the request JSON rule (:func:`idp.web.parse_json`), so JSON nested past the
        limit is a malformed assertion, not a RecursionError in the JOSE library."""
        parts = assertion.split(".") if isinstance(assertion, str) else []
        if len(parts) != 3:
            raise InvalidClientError(description="Invalid JWT assertion.")
        decoded = []
        for part in parts[:2]:
            try:
                decoded.append(parse_json(urlsafe_b64decode(part + "=" * (-len(part) % 4))))
            except (binascii.Error, ValueError):  # JSONRefused is a ValueError
                raise InvalidClientError(description="Invalid JWT assertion.") from None
        # The key id, for a client whose keys come from its jwks_uri (fetched again, at
        # most once a minute, when it names a key the kept set lacks).
        kid = decoded[0].get("kid") if isinstance(decoded[0], dict) else None
        g.client_assertion_kid = kid if isinstance(kid, str) else None
        return super().extract_assertion(assertion)

    def resolve_client_public_key(self, client: OAuthClient) -> KeySet:
        """The client's registered JWKS, or the one at its ``jwks_uri`` (OIDC Core 9:
        the client's registered public keys; RFC 7591 2; :mod:`.client_keys`). A client
        that registered neither, or that authenticates by another method, cannot be
        named by an assertion."""
        if client.token_endpoint_auth_method != self.CLIENT_AUTH_METHOD or not (
            client.jwks or client.jwks_uri
        ):
            raise InvalidClientError(
                description=f"The client cannot authenticate with method: {self.CLIENT_AUTH_METHOD}"
            )
        jwks = client.jwks
        if client.jwks_uri:
            from .client_keys import ClientKeys, ClientKeysUnavailable

            svc = services()
            try:
                jwks = ClientKeys(svc.store, svc.settings).key_set(
                    client.client_id, client.jwks_uri, g.get("client_assertion_kid")
                )
            except ClientKeysUnavailable as exc:
                logging.getLogger(__name__).warning(
                    "client %s: no keys from its jwks_uri: %s", client.client_id, exc
                )
                raise InvalidClientError(
                    description="The client's keys could not be fetched from its jwks_uri."
                ) from None
        try:
            keys = KeySet.import_key_set(jwks)
        except (JoseError, ValueError, TypeError, KeyError):
            logging.getLogger(__name__).warning(
                "client %s: its registered JWKS cannot be read", client.client_id
            )
            keys = None
        if keys is None or not keys.keys:
            raise InvalidClientError(description="The client has no usable registered keys.")
        return keys

    def process_assertion_claims(self, assertion: str, resolve_key) -> dict[str, Any]:
        """Verify the signature (RFC 7523 section 3 item 9), then the claims.

        The JOSE library's messages quote the header (``alg``, ``kid``, ``crit``), and
        RFC 6749 5.2 allows only printable ASCII without ``"`` and ``\\`` in an
        ``error_description`` (Authlib raises ValueError otherwise, a 500): other
        characters are replaced."""
        try:
            token = jwt.decode(assertion, resolve_key)
        except JoseError as exc:
            raise InvalidClientError(description=self._describe(exc.description)) from None
        self.verify_claims(token.claims)
        return token.claims

    @staticmethod
    def _describe(text: str | None) -> str:
        """*text* with what RFC 6749 5.2 forbids in error_description replaced by "?"."""
        text = (text or "Invalid JWT assertion.")[:200]
        return "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in text)

    def verify_claims(self, claims) -> None:
        """RFC 7523 section 3 items 4 and 6 (lifetime and age) before Authlib's checks,
        which end with the one-time use of ``jti`` (item 7)."""
        now = time.time()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not self._is_number(exp):
            raise InvalidClientError(description="The assertion needs a numeric 'exp'.")
        if exp > now + self.MAX_LIFETIME:
            raise InvalidClientError(
                description=f"The assertion's 'exp' is more than {self.MAX_LIFETIME} s ahead."
            )
        if not self._is_number(iat):
            raise InvalidClientError(description="The assertion needs a numeric 'iat'.")
        if iat > now + self.CLOCK_SKEW:
            raise InvalidClientError(description="The assertion's 'iat' is in the future.")
        if iat < now - self.MAX_AGE:
            raise InvalidClientError(
                description=f"The assertion was issued more than {self.MAX_AGE} s ago."
            )
        super().verify_claims(claims)

    @staticmethod
    def _is_number(value: Any) -> bool:
        """A JSON number (RFC 7519 section 2, NumericDate): not a boolean, NaN or infinity."""
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )

    def validate_jti(self, claims, jti) -> bool:
        """Remember ``jti`` for this client until ``exp`` plus the clock skew: as long
        as Authlib would accept the assertion (RFC 7523 section 3 item 7)."""
        ttl = max(1, math.ceil(claims["exp"] + self.CLOCK_SKEW - time.time()))
        client_and_jti = json.dumps([str(claims["sub"]), str(jti)])
        key = f"client_assertion:{hash_token(client_and_jti)}"
        return services().store.set_if_absent(key, b"1", ttl)


def authenticate_client_secret_basic(query_client, request) -> OAuthClient | None:
    """``client_secret_basic`` (RFC 6749 2.3.1) as Authlib does it, except that
    credentials that are not base64 of UTF-8 text fail to authenticate the client
    (``invalid_client``, RFC 6749 5.2) instead of raising UnicodeDecodeError (a 500)."""
    try:
        return basic_client_auth.authenticate_client_secret_basic(query_client, request)
    except UnicodeDecodeError:
        return None


class Server(AuthorizationServer):
    def create_oauth2_request(self, request):
        # Resumed requests arrive already built from the stored transaction.
        if isinstance(request, OAuth2Request):
            return request
        return super().create_oauth2_request(request)


def safe_error_description(text: str) -> str:
    """*text* with every character RFC 6749 4.1.2.1 / 5.2 forbids in ``error_description``
    (outside %x20-21 / %x23-5B / %x5D-7E) replaced by ``?``."""
    return "".join(ch if 0x20 <= ord(ch) <= 0x7E and ch not in '"\\' else "?" for ch in text)


def _sanitize_authlib_error_descriptions() -> None:
    """Authlib quotes request values in its error descriptions ("The response type 'x'
    is not supported") and then raises ``ValueError`` when one holds a character that
    RFC 6749 forbids there (a quote, a backslash, any non-ASCII letter): a 500 for an
    odd ``response_type``, ``redirect_uri`` or ``grant_type``. Every OAuth error is
    built with such characters replaced instead (idempotent)."""
    if getattr(OAuth2Error.__init__, "_idp_sanitizes", False):
        return
    original = OAuth2Error.__init__

    def __init__(self, description=None, *args, **kwargs):  # noqa: N807
        if isinstance(description, str):
            description = safe_error_description(description)
        original(self, description, *args, **kwargs)

    __init__._idp_sanitizes = True  # type: ignore[attr-defined]
    OAuth2Error.__init__ = __init__  # type: ignore[method-assign]


def create_authorization_server(app: Flask) -> AuthorizationServer:
    _sanitize_authlib_error_descriptions()
    issuer = app.extensions["idp"].settings.issuer
    server = Server()
    server.init_app(app, query_client=query_client, save_token=lambda token, request: None)
    server.register_grant(AuthorizationCodeGrant, [PKCE(required=True), IDToken()])
    server.register_grant(RefreshTokenGrant)
    server.register_grant(ClientCredentialsGrant)
    server.register_client_auth_method("client_secret_basic", authenticate_client_secret_basic)
    server.register_client_auth_method(
        PrivateKeyJWT.CLIENT_AUTH_METHOD,
        # RFC 9126 2: the PAR endpoint's URL is an audience too.
        PrivateKeyJWT(
            [issuer, f"{issuer}/token", f"{issuer}/introspect", f"{issuer}/revoke", f"{issuer}/par"]
        ),
    )
    return server
