"""Client registration rules and operations, shared by the command line, the admin pages
and dynamic registration (RFC 7591)."""

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
from ..security.text import web_origin
from . import resources as api_resources


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
        raise ClientValidationError(f"Enter a {field}, or leave out the empty line.")
    if len(uri) > 2000:
        raise ClientValidationError(f"Each {field} must be at most 2000 characters long.")
    shown = uri if len(uri) <= 120 else uri[:117] + "..."
    if "*" in uri:
        raise ClientValidationError(
            f"The {field} {shown} has a wildcard (*): each address must be written out in full."
        )
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise ClientValidationError(f"The {field} {shown} is not a valid web address.") from None
    if parts.fragment or "#" in uri:
        raise ClientValidationError(
            f"The {field} {shown} must not contain a fragment (the part from #)."
        )
    if parts.scheme == "https" and host:
        return uri
    if parts.scheme == "http" and _is_loopback(host):
        return uri
    if parts.scheme == "http":
        raise ClientValidationError(
            f"The {field} {shown} must use https "
            "(http is allowed only for localhost and 127.0.0.1)."
        )
    raise ClientValidationError(
        f"The {field} {shown} must be a full address that starts with https://."
    )


#: Client metadata URLs the sign-in pages show (RFC 7591 section 2), with their names
#: in messages.
INFO_URIS = {
    "logo_uri": "logo URL",
    "client_uri": "home page URL",
    "policy_uri": "privacy policy URL",
    "tos_uri": "terms of service URL",
}


def check_info_uri(uri: str | None, *, field: str) -> str | None:
    """A URL shown on the sign-in pages: https (http only on this machine), absolute,
    no user information. Empty means none."""
    uri = (uri or "").strip()
    if not uri:
        return None
    if len(uri) > 2000:
        raise ClientValidationError(f"The {field} is longer than 2000 characters.")
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        raise ClientValidationError(f"The {field} is not a valid web address.") from None
    # A web address in shape (a plain host, no user information) whatever its scheme;
    # then only https, or http on this machine, is accepted.
    if host and "@" not in parts.netloc and web_origin(parts._replace(scheme="https").geturl()):
        if parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host)):
            return uri
        raise ClientValidationError(f"The {field} must start with https://.")
    raise ClientValidationError(f"The {field} must be a web address like https://example.gov/.")


#: Metadata for OpenID Connect Back-Channel Logout 1.0 (section 2.2), CORS, the client's
#: keys by URL (RFC 7591 2) and pushed authorization requests (RFC 9126 6), with the value
#: of a client that registers none.
PROTOCOL_FIELDS: dict[str, Any] = {
    "jwks_uri": None,
    "backchannel_logout_uri": None,
    "backchannel_logout_session_required": False,
    "allowed_origins": [],
    "require_par": False,
}


def check_origin(origin: str) -> str:
    """A web origin (RFC 6454) a browser application calls from, written
    ``scheme://host[:port]``: https, or http on a loopback host; no path, query,
    fragment, user information or wildcard. Returned as browsers send it in ``Origin``
    (lower case, without the scheme's default port)."""
    origin = origin.strip()
    shown = origin if len(origin) <= 120 else origin[:117] + "..."
    example = "like https://app.example.gov"
    if not origin or len(origin) > 300:
        raise ClientValidationError(f"Each allowed origin is an address {example}.")
    if "*" in origin:
        raise ClientValidationError(
            f"The allowed origin {shown} has a wildcard (*): write each origin out in full."
        )
    try:
        parts = urlsplit(origin)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ClientValidationError(f"The allowed origin {shown} is not valid.") from None
    if (parts.path or parts.query or parts.fragment or "#" in origin or "?" in origin
            or "@" in parts.netloc or not host):  # fmt: skip
        raise ClientValidationError(
            f"The allowed origin {shown} must be only a scheme and a host (and port), {example}:"
            " no path, not even a final /."
        )
    if not origin.isascii():
        raise ClientValidationError(
            f"Write the allowed origin {shown} with an ASCII host name (punycode)."
        )
    scheme = parts.scheme.lower()
    if scheme == "http" and not _is_loopback(host):
        raise ClientValidationError(
            f"The allowed origin {shown} must use https (http only for localhost and 127.0.0.1)."
        )
    if scheme not in ("http", "https"):
        raise ClientValidationError(f"The allowed origin {shown} must start with https://.")
    shown_host = f"[{host}]" if ":" in host else host
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{shown_host}" + (f":{port}" if port not in (None, default) else "")


def _protocol_metadata(values: dict[str, Any]) -> dict[str, Any]:
    """Back-channel logout, allowed origins and PAR metadata, checked (``jwks_uri`` is
    checked with the keys)."""
    logout_uri = (values.get("backchannel_logout_uri") or "").strip() or None
    if logout_uri is not None:
        # Section 2.2: an absolute URI that may have a query but no fragment; the same
        # scheme rules as redirect URIs.
        logout_uri = check_redirect_uri(logout_uri, field="back-channel logout URI")
    origins = values.get("allowed_origins") or []
    if isinstance(origins, str) or not all(isinstance(o, str) for o in origins):
        raise ClientValidationError("Allowed origins are a list of origins.")
    if len(origins) > 100:
        raise ClientValidationError("Register at most 100 allowed origins.")
    flags = {}
    for key in ("backchannel_logout_session_required", "require_par"):
        value = values.get(key, False)
        if not isinstance(value, bool):
            raise ClientValidationError(f"{key} must be true or false.")
        flags[key] = value
    return {
        "backchannel_logout_uri": logout_uri,
        "allowed_origins": list(dict.fromkeys(check_origin(o) for o in origins)),
        **flags,
    }


def check_jwks_uri(uri: str | None) -> str | None:
    """Where a private_key_jwt client publishes its keys (RFC 7591 2): https (http only
    on this machine), no fragment. Where it points is checked at every fetch
    (:mod:`idp.oidc.client_keys`)."""
    uri = (uri or "").strip()
    if not uri:
        return None
    return check_redirect_uri(uri, field="jwks_uri")


# RFC 6749 A.1: client_id is *VSCHAR (printable ASCII); the column and every lookup
# (query_client) stop at 64 characters.
_CLIENT_ID = re.compile(r"[\x21-\x7e]{1,64}")


def check_client_id(client_id: str) -> str:
    if not _CLIENT_ID.fullmatch(client_id):
        raise ClientValidationError(
            "A client ID is 1 to 64 characters: letters, digits and punctuation, no spaces."
        )
    return client_id


def check_default_acr(acr: str | None) -> str | None:
    """An acr the provider knows; anything else would make every sign-in unmet."""
    if acr is None:
        return None
    if acr not in ACR_LEVELS:
        raise ClientValidationError(
            f"The default assurance level must be one of: {', '.join(ACR_LEVELS)}."
        )
    return acr


def _check_choice(values: Iterable[str], allowed: Iterable[str], field: str) -> list[str]:
    values = list(dict.fromkeys(values))
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ClientValidationError(
            f"The {field} {bad[0][:80]} is not supported. Choose from: {', '.join(allowed)}."
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
    **info: Any,
) -> dict[str, Any]:
    """The checked metadata as :class:`OAuthClient` columns. *info* holds the sign-in
    page URLs (:data:`INFO_URIS`) and :data:`PROTOCOL_FIELDS`."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ClientValidationError(
            "Enter the application's name (at most 200 characters)."
            if not name
            else "The application's name must be at most 200 characters long."
        )
    _check_choice([auth_method], AUTH_METHODS, "authentication method")
    grants = _check_choice(
        grant_types or ["authorization_code", "refresh_token"], GRANT_TYPES, "grant type"
    )
    if auth_method == "none" and "client_credentials" in grants:
        raise ClientValidationError(
            "A public client (no secret, no keys) cannot use client credentials."
        )
    uris = [check_redirect_uri(u) for u in redirect_uris]
    if "authorization_code" in grants and not uris:
        raise ClientValidationError(
            "Enter at least one redirect URI: the code flow sends users back to it."
        )
    logout_uris = [
        check_redirect_uri(u, field="post-logout redirect URI") for u in post_logout_redirect_uris
    ]
    # The OpenID Connect scopes and the scopes of the registered APIs (RFC 8707).
    scopes = _check_choice(scope.split(), api_resources.supported_scopes(), "scope")
    jwks_uri = check_jwks_uri(info.get("jwks_uri"))
    if jwks_uri and auth_method != "private_key_jwt":
        raise ClientValidationError(
            "A jwks_uri is used only by clients that authenticate with private_key_jwt."
        )
    if jwks_uri and jwks:
        # RFC 7591 2: jwks and jwks_uri MUST NOT both be present.
        raise ClientValidationError("Register the keys either as a JWK set or as a jwks_uri, "
                                    "not both.")  # fmt: skip
    if auth_method == "private_key_jwt" and not jwks_uri:
        keys = (jwks or {}).get("keys")
        if not isinstance(keys, list) or not keys:
            raise ClientValidationError(
                "Signed-assertion clients (private_key_jwt) need their public keys (a JWK set)."
            )
        if any(("d" in k) for k in keys if isinstance(k, dict)):
            raise ClientValidationError(
                "The key set contains a private key. Register the public keys only, and "
                "replace that key: it is no longer secret."
            )
    return {
        "name": name,
        "redirect_uris": list(dict.fromkeys(uris)),
        "post_logout_redirect_uris": list(dict.fromkeys(logout_uris)),
        "token_endpoint_auth_method": auth_method,
        "grant_types": grants,
        "scope": " ".join(scopes),
        "jwks": jwks if auth_method == "private_key_jwt" and not jwks_uri else None,
        "jwks_uri": jwks_uri,
        **{key: check_info_uri(info.get(key), field=field) for key, field in INFO_URIS.items()},
        **_protocol_metadata(info),
    }


def create_client(
    *,
    client_id: str | None = None,
    first_party: bool = False,
    require_mfa: bool = False,
    default_acr: str | None = None,
    actor: str | None = None,
    commit: bool = True,
    resources: Iterable[str] = (),
    **metadata: Any,
) -> tuple[OAuthClient, str | None]:
    """Register a client; returns it and its secret (shown once; only a hash is stored).

    *resources* are the URIs of the registered APIs (RFC 8707) the client may ask
    tokens for; each resource scope in its ``scope`` must belong to one of them.
    ``commit=False`` leaves the new client in the caller's transaction (dynamic
    registration commits it together with the use of the initial access token)."""
    unknown = set(metadata) - {
        "name", "redirect_uris", "post_logout_redirect_uris", "auth_method", "grant_types",
        "scope", "jwks", *INFO_URIS, *PROTOCOL_FIELDS,
    }  # fmt: skip
    if unknown:
        raise TypeError(f"unknown client metadata {sorted(unknown)}")
    data = normalize_metadata(**metadata)
    if client_id is not None:
        check_client_id(client_id)
    check_default_acr(default_acr)
    uris = _check_resources(data["scope"], resources)
    client = OAuthClient(
        # Hex: never starts with "-" (an option to a command line) and needs no escaping.
        client_id=client_id or secrets.token_hex(16),
        first_party=first_party,
        require_mfa=require_mfa,
        default_acr=default_acr,
        **data,
    )
    if db.session.execute(db.select(OAuthClient.id).filter_by(client_id=client.client_id)).first():
        raise ClientValidationError(f"The client ID {client.client_id} is already registered.")
    secret = None
    if data["token_endpoint_auth_method"] in ("client_secret_basic", "client_secret_post"):
        secret = secrets.token_urlsafe(32)
        client.set_secret(secret)
    db.session.add(client)
    db.session.flush()
    audit.record("client.created", client_id=client.client_id, actor=actor, name=client.name)
    if uris:
        api_resources.set_client_resources(client, uris, actor=actor)
    if commit:
        db.session.commit()
    return client, secret


#: "Leave unchanged" for :func:`update_client` arguments where None is a value.
UNSET: Any = object()
_UNSET = UNSET


def update_client(
    client: OAuthClient,
    *,
    actor: str | None = None,
    first_party: bool | None = None,
    require_mfa: bool | None = None,
    default_acr: str | None = _UNSET,
    disabled: bool | None = None,
    resources: Iterable[str] | None = None,
    **metadata: Any,
) -> list[str]:
    """Validate and apply new metadata (lists replace the old ones whole), audit
    ``client.updated`` with the changed fields and commit; returns the changed fields.
    The auth method is not changed here (a client's credentials would change with it).
    *resources* (API URIs, RFC 8707) replaces the client's allowed APIs; ``None`` keeps
    them."""
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
        **{key: metadata.get(key, getattr(client, key)) for key in INFO_URIS},
        **{key: metadata.get(key, getattr(client, key)) for key in PROTOCOL_FIELDS},
    )
    if default_acr is not _UNSET:
        check_default_acr(default_acr)
    uris = _check_resources(
        data["scope"],
        api_resources.client_resource_uris(client) if resources is None else resources,
    )
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
    if resources is not None and api_resources.set_client_resources(client, uris, actor=actor):
        changed.append("resources")
    audit.record("client.updated", client_id=client.client_id, actor=actor, fields=changed)
    db.session.commit()
    return changed


def rotate_secret(client: OAuthClient, *, actor: str | None = None) -> str:
    if client.token_endpoint_auth_method not in ("client_secret_basic", "client_secret_post"):
        raise ClientValidationError(
            "This client does not authenticate with a secret, so it has none to rotate."
        )
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
    api_resources.release_client(cid)
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
        **{key: getattr(client, key) for key in INFO_URIS},
        **{key: getattr(client, key) for key in PROTOCOL_FIELDS},
        "resources": api_resources.client_resource_uris(client),
        "created_at": client.created_at.isoformat() if client.created_at else None,
    }


def _check_resources(scope: str, uris: Iterable[str]) -> list[str]:
    """The registered APIs *uris* (RFC 8707), each existing, and every resource scope
    of *scope* belonging to one of them."""
    try:
        found = [r.uri for r in api_resources.resolve_uris(uris)]
        api_resources.check_client_scopes(scope, found)
    except api_resources.ResourceValidationError as exc:
        raise ClientValidationError(str(exc)) from None
    return found
