"""Client registration rules and operations, shared by the command line (and later the
admin pages and dynamic registration)."""

from __future__ import annotations

import ipaddress
import re
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from .. import audit
from ..auth.assurance import ACR_LEVELS
from ..extensions import db
from ..models import OAuthClient
from ..models.oauth import AUTH_METHODS, GRANT_TYPES
from .server import SCOPES_SUPPORTED


class ClientValidationError(ValueError):
    """Client metadata that cannot be accepted; the message says which field and why."""


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str, *, field: str = "redirect URI") -> str:
    """https, or http on a loopback host (RFC 8252 7.3); absolute, no fragment, no wildcard
    (RFC 6749 3.1.2; OAuth 2.0 Security BCP 4.1.3 requires exact matching)."""
    uri = uri.strip()
    if not uri:
        raise ClientValidationError(f"{field}: empty")
    if len(uri) > 2000:
        raise ClientValidationError(f"{field}: longer than 2000 characters")
    if "*" in uri:
        raise ClientValidationError(f"{field} {uri!r}: wildcards are not allowed")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise ClientValidationError(f"{field} {uri!r}: not a valid URL") from None
    if parts.fragment or "#" in uri:
        raise ClientValidationError(f"{field} {uri!r}: must not contain a fragment")
    if parts.scheme == "https" and host:
        return uri
    if parts.scheme == "http" and _is_loopback(host):
        return uri
    if parts.scheme == "http":
        raise ClientValidationError(
            f"{field} {uri!r}: must use https (http is allowed only for localhost/127.0.0.1)"
        )
    raise ClientValidationError(f"{field} {uri!r}: must be an absolute https URL")


# RFC 6749 A.1: client_id is *VSCHAR (printable ASCII); the column and every lookup
# (query_client) stop at 64 characters.
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.fullmatch(client_id):
        raise ClientValidationError(
            f"client_id {client_id[:80]!r}: 1 to 64 printable ASCII characters, no spaces"
        )
    return client_id


def check_default_acr(acr: str | None) -> str | None:
    """An acr the provider knows; anything else would make every sign-in unmet."""
    if acr is None:
        return None
    if acr not in ACR_LEVELS:
        raise ClientValidationError(
            f"default acr {acr!r}: unsupported value (allowed: {', '.join(ACR_LEVELS)})"
        )
    return acr


def _check_choice(values: Iterable[str], allowed: Iterable[str], field: str) -> list[str]:
    values = list(dict.fromkeys(values))
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ClientValidationError(
            f"{field}: unsupported value {bad[0]!r} (allowed: {', '.join(allowed)})"
        )
    return values


def normalize_metadata(
    *,
    name: str,
    redirect_uris: Iterable[str],
    post_logout_redirect_uris: Iterable[str] = (),
    auth_method: str = "client_secret_basic",
    grant_types: Iterable[str] | None = None,
    scope: str = "openid profile email",
    jwks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    name = name.strip()
    if not name or len(name) > 200:
        raise ClientValidationError("name: required, at most 200 characters")
    _check_choice([auth_method], AUTH_METHODS, "auth method")
    grants = _check_choice(
        grant_types or ["authorization_code", "refresh_token"], GRANT_TYPES, "grant types"
    )
    if auth_method == "none" and "client_credentials" in grants:
        raise ClientValidationError("grant types: a public client cannot use client_credentials")
    uris = [check_redirect_uri(u) for u in redirect_uris]
    if "authorization_code" in grants and not uris:
        raise ClientValidationError("redirect URI: at least one is required")
    logout_uris = [
        check_redirect_uri(u, field="post-logout redirect URI") for u in post_logout_redirect_uris
    ]
    scopes = _check_choice(scope.split(), SCOPES_SUPPORTED, "scope")
    if auth_method == "private_key_jwt":
        keys = (jwks or {}).get("keys")
        if not isinstance(keys, list) or not keys:
            raise ClientValidationError("jwks: private_key_jwt needs the client's public keys")
        if any(("d" in k) for k in keys if isinstance(k, dict)):
            raise ClientValidationError("jwks: contains a private key; register public keys only")
    return {
        "name": name,
        "redirect_uris": list(dict.fromkeys(uris)),
        "post_logout_redirect_uris": list(dict.fromkeys(logout_uris)),
        "token_endpoint_auth_method": auth_method,
        "grant_types": grants,
        "scope": " ".join(scopes),
        "jwks": jwks if auth_method == "private_key_jwt" else None,
    }


def create_client(
    *,
    client_id: str | None = None,
    first_party: bool = False,
    require_mfa: bool = False,
    default_acr: str | None = None,
    actor: str | None = None,
    commit: bool = True,
    **metadata: Any,
) -> tuple[OAuthClient, str | None]:
    """Register a client; returns it and its secret (shown once; only a hash is stored).

    ``commit=False`` leaves the new client in the caller's transaction (dynamic
    registration commits it together with the use of the initial access token)."""
    data = normalize_metadata(**metadata)
    if client_id is not None:
        check_client_id(client_id)
    check_default_acr(default_acr)
    client = OAuthClient(
        # Hex: never starts with "-" (an option to a command line) and needs no escaping.
        client_id=client_id or secrets.token_hex(16),
        first_party=first_party,
        require_mfa=require_mfa,
        default_acr=default_acr,
        **data,
    )
    if db.session.execute(db.select(OAuthClient.id).filter_by(client_id=client.client_id)).first():
        raise ClientValidationError(f"client_id {client.client_id!r} is already registered")
    secret = None
    if data["token_endpoint_auth_method"] in ("client_secret_basic", "client_secret_post"):
        secret = secrets.token_urlsafe(32)
        client.set_secret(secret)
    db.session.add(client)
    db.session.flush()
    audit.record("client.created", client_id=client.client_id, actor=actor, name=client.name)
    if commit:
        db.session.commit()
    return client, secret


_UNSET: Any = object()


def update_client(
    client: OAuthClient,
    *,
    actor: str | None = None,
    first_party: bool | None = None,
    require_mfa: bool | None = None,
    default_acr: str | None = _UNSET,
    disabled: bool | None = None,
    **metadata: Any,
) -> list[str]:
    """Validate and apply new metadata (lists replace the old ones whole), audit
    ``client.updated`` with the changed fields and commit; returns the changed fields.
    The auth method is not changed here (a client's credentials would change with it)."""
    data = normalize_metadata(
        name=metadata.get("name", client.name),
        redirect_uris=metadata.get("redirect_uris", client.redirect_uris),
        post_logout_redirect_uris=metadata.get(
            "post_logout_redirect_uris", client.post_logout_redirect_uris
        ),
        auth_method=client.token_endpoint_auth_method,
        grant_types=metadata.get("grant_types", client.grant_types),
        scope=metadata.get("scope", client.scope),
        jwks=metadata.get("jwks", client.jwks),
    )
    if default_acr is not _UNSET:
        check_default_acr(default_acr)
    changed = [k for k, v in data.items() if getattr(client, k) != v]
    for key, value in data.items():
        setattr(client, key, value)
    flags = {"first_party": first_party, "require_mfa": require_mfa, "disabled": disabled}
    if client.registered_dynamically:
        flags["first_party"] = None  # RFC 7591 clients are never first party
    for attr, value in flags.items():
        if value is not None and getattr(client, attr) != value:
            setattr(client, attr, value)
            changed.append(attr)
    if default_acr is not _UNSET and client.default_acr != default_acr:
        client.default_acr = default_acr
        changed.append("default_acr")
    audit.record("client.updated", client_id=client.client_id, actor=actor, fields=changed)
    db.session.commit()
    return changed


def rotate_secret(client: OAuthClient, *, actor: str | None = None) -> str:
    if client.token_endpoint_auth_method not in ("client_secret_basic", "client_secret_post"):
        raise ClientValidationError("this client does not authenticate with a secret")
    secret = secrets.token_urlsafe(32)
    client.set_secret(secret)
    audit.record("client.secret_rotated", client_id=client.client_id, actor=actor)
    db.session.commit()
    return secret


def delete_client(client: OAuthClient, *, actor: str | None = None) -> None:
    from ..models import AuthorizationCode, Consent, RefreshToken

    cid = client.client_id
    for model in (AuthorizationCode, RefreshToken, Consent):
        db.session.execute(db.delete(model).where(model.client_id == cid))
    db.session.delete(client)
    audit.record("client.deleted", client_id=cid, actor=actor)
    db.session.commit()


def describe(client: OAuthClient) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "scope": client.scope,
        "first_party": client.first_party,
        "require_mfa": client.require_mfa,
        "default_acr": client.default_acr,
        "disabled": client.disabled,
        "created_at": client.created_at.isoformat() if client.created_at else None,
    }
