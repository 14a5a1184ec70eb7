"""Dynamic Client Registration (RFC 7591) and its management protocol (RFC 7592).

- ``POST /connect/register`` registers a client. It needs an initial access token
  (RFC 7591 section 3) issued by an administrator (``idp clients
  issue-registration-token``); the token is stored as its SHA-256 and each use is
  counted with a conditional ``UPDATE`` in the same transaction as the new client, so a
  single-use token registers exactly one client. Metadata that the provider does not
  accept is refused with ``invalid_redirect_uri`` or ``invalid_client_metadata``
  (section 3.2.2); a missing, unknown, expired or used-up token with 401
  ``invalid_token`` (RFC 6750 section 3.1).
- ``GET``/``PUT``/``DELETE`` on the ``registration_client_uri`` read, replace or delete
  the client with its registration access token (RFC 7592 section 2), stored hashed and
  replaced at every ``PUT``.

Dynamically registered clients are never first party: users always see the consent
page for them. The same validation rules as the admin pages and the command line apply
(:mod:`idp.oidc.clients`).
"""

from __future__ import annotations

import base64
import binascii
import secrets
from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request, url_for
from sqlalchemy import update

from .. import audit
from ..auth.assurance import ACR_LEVELS
from ..extensions import db
from ..models import OAuthClient, RegistrationToken
from ..models.base import utcnow
from ..security.crypto import equal, hash_token
from ..services import services
from ..web import JSONRefused, JSONTooDeep, request_json
from .clients import (
    INFO_URIS,
    ClientValidationError,
    check_redirect_uri,
    create_client,
    delete_client,
    normalize_metadata,
    update_client,
)
from .server import safe_error_description

bp = Blueprint("registration", __name__)

# Metadata a client may send that the provider stores or checks (RFC 7591 2, OIDC
# Dynamic Client Registration 1.0 section 2); anything else is ignored (RFC 7591 2).
_LIST_FIELDS = ("redirect_uris", "post_logout_redirect_uris", "grant_types", "response_types",
                "default_acr_values", "allowed_origins")  # fmt: skip
# Boolean metadata: OpenID Connect Back-Channel Logout 1.0 2.2 and RFC 9126 6.
_FLAGS = ("backchannel_logout_session_required", "require_pushed_authorization_requests")
_READ_ONLY = ("registration_access_token", "registration_client_uri",
              "client_secret_expires_at", "client_id_issued_at")  # fmt: skip


class RegistrationError(Exception):
    def __init__(self, error: str, description: str, status: int = 400):
        # RFC 7591 3.2.2: a human-readable ASCII description (same characters as RFC 6749).
        description = safe_error_description(description)
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


def _error(err: RegistrationError) -> Response:
    resp = jsonify(error=err.error, error_description=err.description)
    resp.status_code = err.status
    resp.headers["Cache-Control"] = "no-store"
    if err.status == 401:
        resp.headers["WWW-Authenticate"] = f'Bearer error="{err.error}"'
    return resp


def _bearer() -> str:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() != "bearer " or not header[7:].strip():
        raise RegistrationError("invalid_token", "A bearer token is required.", 401)
    token = header[7:].strip()
    if len(token) > 256:
        raise RegistrationError("invalid_token", "The token is not valid.", 401)
    return token


def _token_hashes(token: str) -> list[str]:
    """Hashes to look the presented token up by: the token itself and, when the value
    is its base64 encoding, the decoded token (pyoidc, ``oic``, sends an initial access
    token that is not a JWT base64-encoded). Either way the 256-bit secret must match."""
    hashes = [hash_token(token)]
    try:
        decoded = base64.b64decode(token, validate=True).decode("ascii")
    except (binascii.Error, ValueError):
        return hashes
    if decoded.isprintable() and 20 <= len(decoded) <= 256:
        hashes.append(hash_token(decoded))
    return hashes


def _body() -> dict[str, Any]:
    """The client metadata: a JSON object (RFC 7591 3.1), read with the request edge's
    JSON rule (:func:`idp.web.request_json`: RFC 8259, at most MAX_JSON_DEPTH levels)."""
    try:
        data = request_json()
    except JSONTooDeep as exc:
        raise RegistrationError("invalid_request", str(exc)) from None
    except JSONRefused:
        data = None
    if not isinstance(data, dict):
        raise RegistrationError(
            "invalid_client_metadata", "Send the client metadata as a JSON object."
        )
    return data


def _strings(data: dict[str, Any], field: str) -> list[str] | None:
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistrationError("invalid_client_metadata", f"{field} must be an array of strings.")
    return value


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    """RFC 7591 metadata -> arguments of :func:`create_client`, validated."""
    for field in _LIST_FIELDS:
        _strings(data, field)
    for field in ("client_name", "scope", "token_endpoint_auth_method", *INFO_URIS):
        if field in data and not isinstance(data[field], str):
            raise RegistrationError("invalid_client_metadata", f"{field} must be a string.")
    for field in ("jwks_uri", "backchannel_logout_uri"):
        if field in data and not isinstance(data[field], str):
            raise RegistrationError("invalid_client_metadata", f"{field} must be a string.")
    for field in _FLAGS:
        if field in data and not isinstance(data[field], bool):
            raise RegistrationError("invalid_client_metadata", f"{field} must be true or false.")
    if "jwks" in data and "jwks_uri" in data:
        # RFC 7591 2: "The jwks_uri and jwks parameters MUST NOT both be present".
        raise RegistrationError("invalid_client_metadata", "Send jwks or jwks_uri, not both.")
    if "jwks" in data and not isinstance(data["jwks"], dict):
        raise RegistrationError("invalid_client_metadata", "jwks must be a JSON Web Key Set.")
    redirect_uris = _strings(data, "redirect_uris") or []
    try:
        for uri in redirect_uris:
            check_redirect_uri(uri)
    except ClientValidationError as exc:
        raise RegistrationError("invalid_redirect_uri", str(exc)) from None
    response_types = _strings(data, "response_types")
    if response_types is not None and set(response_types) - {"code"}:
        raise RegistrationError(
            "invalid_client_metadata", 'response_types: only "code" is supported.'
        )
    grant_types = _strings(data, "grant_types") or ["authorization_code"]
    acrs = _strings(data, "default_acr_values") or []
    default_acr = next((a for a in acrs if a in ACR_LEVELS), None)
    if acrs and default_acr is None:
        raise RegistrationError(
            "invalid_client_metadata", "default_acr_values: none of the values is supported."
        )
    metadata = {
        "name": data.get("client_name") or "Unnamed application",
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": _strings(data, "post_logout_redirect_uris") or [],
        "auth_method": data.get("token_endpoint_auth_method", "client_secret_basic"),
        "grant_types": grant_types,
        "scope": data.get("scope", "openid profile email"),
        "jwks": data.get("jwks"),
        # RFC 7591 2: shown on the sign-in pages (logo, home page, policy, terms).
        **{key: data.get(key) for key in INFO_URIS},
        "jwks_uri": data.get("jwks_uri"),
        # OpenID Connect Back-Channel Logout 1.0 2.2.
        "backchannel_logout_uri": data.get("backchannel_logout_uri"),
        "backchannel_logout_session_required": data.get(
            "backchannel_logout_session_required", False
        ),
        # An extension of this provider: the browser origins allowed to call the token,
        # revocation, PAR and userinfo endpoints (CORS; docs/APIS.md).
        "allowed_origins": _strings(data, "allowed_origins") or [],
        # RFC 9126 6.
        "require_par": data.get("require_pushed_authorization_requests", False),
    }
    try:
        normalize_metadata(**metadata)
    except ClientValidationError as exc:
        code = "invalid_redirect_uri" if "redirect URI" in str(exc) else "invalid_client_metadata"
        raise RegistrationError(code, str(exc)) from None
    return {**metadata, "default_acr": default_acr}


def _client_uri(client: OAuthClient) -> str:
    return services().settings.issuer + url_for("registration.manage", client_id=client.client_id)


def _response(client: OAuthClient, *, secret: str | None, rat: str | None) -> dict[str, Any]:
    """Client information response (RFC 7591 3.2.1, RFC 7592 3)."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.created_at.timestamp()),
        "client_name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "response_types": ["code"] if "authorization_code" in client.grant_types else [],
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": client.scope,
        "registration_client_uri": _client_uri(client),
    }
    if client.jwks:
        body["jwks"] = client.jwks
    for key in INFO_URIS:
        if getattr(client, key):
            body[key] = getattr(client, key)
    if client.jwks_uri:
        body["jwks_uri"] = client.jwks_uri
    if client.backchannel_logout_uri:
        body["backchannel_logout_uri"] = client.backchannel_logout_uri
        body["backchannel_logout_session_required"] = client.backchannel_logout_session_required
    if client.allowed_origins:
        body["allowed_origins"] = client.allowed_origins
    body["require_pushed_authorization_requests"] = client.require_par
    if client.default_acr:
        body["default_acr_values"] = [client.default_acr]
    if secret:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0  # never expires (RFC 7591 3.2.1)
    if rat:
        body["registration_access_token"] = rat
    return body


def _json(body: dict[str, Any], status: int) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Pragma"] = "no-cache"
    return resp


@bp.post("/connect/register")
def register() -> Response:
    """Client registration endpoint (RFC 7591 section 3)."""
    try:
        token = _bearer()
        row = (
            db.session.execute(
                db.select(RegistrationToken).where(
                    RegistrationToken.token_hash.in_(_token_hashes(token))
                )
            )
            .scalars()
            .first()
        )
        now = utcnow()
        if row is None or row.revoked_at is not None or row.expires_at <= now or row.uses_left < 1:
            raise RegistrationError(
                "invalid_token", "The initial access token is unknown, expired or used up.", 401
            )
        metadata = _metadata(_body())
        # Count the use in the same transaction as the new client (atomic, single use).
        used = db.session.execute(
            update(RegistrationToken)
            .where(RegistrationToken.id == row.id, RegistrationToken.uses_left > 0,
                   RegistrationToken.expires_at > now, RegistrationToken.revoked_at.is_(None))
            .values(uses_left=RegistrationToken.uses_left - 1)
            .execution_options(synchronize_session=False)
        )  # fmt: skip
        if used.rowcount != 1:
            db.session.rollback()
            raise RegistrationError(
                "invalid_token", "The initial access token is unknown, expired or used up.", 401
            )
        rat = secrets.token_urlsafe(32)
        client, secret = create_client(
            actor=f"registration_token:{row.id}", first_party=False, commit=False, **metadata
        )  # fmt: skip
        client.registered_dynamically = True
        client.registration_access_token_hash = hash_token(rat)
        audit.record("client.registered", client_id=client.client_id,
                     registration_token=row.id, name=client.name)  # fmt: skip
        db.session.commit()
    except RegistrationError as err:
        db.session.rollback()
        audit.record_now("client.registration_refused", outcome="failure", error=err.error,
                         reason=err.description[:200])  # fmt: skip
        return _error(err)
    except ClientValidationError as exc:
        db.session.rollback()
        return _error(RegistrationError("invalid_client_metadata", str(exc)))
    return _json(_response(client, secret=secret, rat=rat), 201)


def _managed(client_id: str) -> OAuthClient:
    """The client named in the path, if the registration access token is its own
    (RFC 7592 2: an unknown client or a wrong token is 401)."""
    token = _bearer()
    client = db.session.execute(
        db.select(OAuthClient).filter_by(client_id=client_id[:64])
    ).scalar_one_or_none()
    expected = client.registration_access_token_hash if client is not None else None
    if not expected or not equal(hash_token(token), expected):
        raise RegistrationError("invalid_token", "The registration access token is not valid.", 401)
    return client


@bp.route("/connect/register/<client_id>", methods=["GET", "PUT", "DELETE"])
def manage(client_id: str) -> Response:
    """Client configuration endpoint (RFC 7592 section 2)."""
    try:
        client = _managed(client_id)
        if request.method == "GET":
            return _json(_response(client, secret=None, rat=None), 200)
        if request.method == "DELETE":
            delete_client(client, actor="registration")
            return Response(status=204, headers={"Cache-Control": "no-store"})
        data = _body()
        if data.get("client_id") != client.client_id:
            raise RegistrationError(
                "invalid_client_metadata", "client_id must match the client being updated."
            )
        sent = [f for f in _READ_ONLY if f in data]
        if sent:
            raise RegistrationError("invalid_client_metadata", f"{sent[0]} must not be sent.")
        if "client_secret" in data and not client.check_client_secret(str(data["client_secret"])):
            raise RegistrationError("invalid_client_metadata", "client_secret does not match.")
        metadata = _metadata(data)
        if metadata.pop("auth_method") != client.token_endpoint_auth_method:
            raise RegistrationError(
                "invalid_client_metadata", "token_endpoint_auth_method cannot be changed."
            )
        default_acr = metadata.pop("default_acr")
        rat = secrets.token_urlsafe(32)
        client.registration_access_token_hash = hash_token(rat)
        update_client(client, actor="registration", default_acr=default_acr, **metadata)
    except RegistrationError as err:
        db.session.rollback()
        audit.record_now("client.registration_refused", outcome="failure", error=err.error,
                         method=request.method, reason=err.description[:200])  # fmt: skip
        return _error(err)
    except ClientValidationError as exc:
        db.session.rollback()
        return _error(RegistrationError("invalid_client_metadata", str(exc)))
    return _json(_response(client, secret=None, rat=rat), 200)


def issue_token(*, expires_in: int, uses: int = 1, label: str = "",
                created_by: str | None = None) -> tuple[str, RegistrationToken]:  # fmt: skip
    """Issue an initial access token (shown once; only its SHA-256 is stored)."""
    if uses < 1:
        raise ValueError("uses must be at least 1")
    if expires_in < 60:
        raise ValueError("expires_in must be at least 60 seconds")
    token = secrets.token_urlsafe(32)
    row = RegistrationToken(
        token_hash=hash_token(token), label=label[:200], max_uses=uses, uses_left=uses,
        created_by=created_by, expires_at=utcnow() + timedelta(seconds=expires_in),
    )  # fmt: skip
    db.session.add(row)
    db.session.flush()
    audit.record("client.registration_token_issued", token_id=row.id, uses=uses,
                 expires_in=expires_in, actor=created_by, label=label or None)  # fmt: skip
    db.session.commit()
    return token, row
