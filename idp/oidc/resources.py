"""API resources (RFC 8707 resource indicators) and their scopes.

One module for the rules and the operations shared by the command line
(``idp resources``), the admin pages (``/admin/resources``), client registration and
the token endpoint:

- a resource is an API named by an absolute URI: ``https`` (``http`` only on a
  loopback host), no fragment (RFC 8707 2: "MUST NOT include a fragment component"), no
  query (RFC 8707 2: "SHOULD NOT include a query component"), no user information;
- its scopes belong to it alone (a name is unique across resources) and never take the
  name of an OpenID Connect scope (:data:`OIDC_SCOPES`), which concern the user and are
  released by the provider itself (OIDC Core 5.4);
- a client may ask for a token for a resource only when it is *allowed* that resource
  (``client_resources``) and gets only the resource's scopes it is allowed (its
  ``scope``) and the user granted;
- :func:`choose_target` picks the audience and the scope of each access token (RFC 8707
  2.2, RFC 9068 3): a token for a resource carries ``aud`` = the resource URI and only
  that resource's scopes; a token requested without ``resource`` is for the client
  itself (``aud`` = the client id) and carries only OpenID Connect scopes;
- the resource server's own client (``ApiResource.client_id``) may introspect tokens
  issued for the resource (RFC 7662 2.1; :func:`serves_audience`).

Every change is audited (``resource.created``, ``resource.updated``,
``resource.deleted``, ``client.resources_changed``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from .. import audit
from ..extensions import db
from ..models import ApiResource, OAuthClient, ResourceScope, client_resources
from .client_cache import Remembered

#: The OpenID Connect scopes (OIDC Core 5.4, 11; ``groups`` is this provider's). They
#: are about the signed-in user and only ever travel in tokens for the client itself,
#: never in a token for an API.
OIDC_SCOPES = ("openid", "profile", "email", "phone", "offline_access", "groups")

#: At most this many ``resource`` values in one authorization request.
MAX_RESOURCES_PER_REQUEST = 10
#: At most this many scopes per resource (each is a checkbox on the consent page).
MAX_SCOPES = 50

# RFC 6749 3.3 allows any printable ASCII but space, '"' and '\'; scope names here are
# narrower so that they read well on the consent page and in a command line: a letter or
# digit, then letters, digits and . _ : / - (no "=", which separates the description).
_SCOPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ResourceValidationError(ValueError):
    """Resource data that cannot be accepted. ``field`` names the form field (``uri``,
    ``name``, ``scopes``, ``client_id``); the message says what is wrong in plain words."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class ResourceConflict(ResourceValidationError):
    """The URI or a scope name is already registered (the command line exits 1)."""


class InvalidTarget(ValueError):
    """A ``resource`` value that cannot be granted: RFC 8707 2 ``invalid_target``."""


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _shown(value: str) -> str:
    return value if len(value) <= 120 else value[:117] + "..."


def check_resource_uri(uri: str) -> str:
    """The resource indicator (RFC 8707 2): an absolute https URI (http only on a
    loopback host, for development), without fragment, query or user information."""
    uri = (uri or "").strip()
    if not uri:
        raise ResourceValidationError("Enter the API's address (its resource URI).", "uri")
    if len(uri) > 2000:
        raise ResourceValidationError("The API's address must be at most 2000 characters.", "uri")
    shown = _shown(uri)
    if _CONTROL.search(uri) or " " in uri:
        raise ResourceValidationError(
            f"The address {shown!r} contains spaces or control characters.", "uri"
        )
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        raise ResourceValidationError(f"{shown} is not a valid web address.", "uri") from None
    if "#" in uri:
        raise ResourceValidationError(
            f"The address {shown} must not contain a fragment (the part from #).", "uri"
        )
    if "?" in uri:
        raise ResourceValidationError(
            f"The address {shown} must not contain a query (the part from ?).", "uri"
        )
    if "@" in parts.netloc:
        raise ResourceValidationError(
            f"The address {shown} must not contain a user name or password.", "uri"
        )
    if parts.scheme == "https" and host:
        return uri
    if parts.scheme == "http" and _is_loopback(host):
        return uri
    if parts.scheme == "http" and host:
        raise ResourceValidationError(
            f"The address {shown} must use https (http is allowed only for localhost "
            "and 127.0.0.1).",
            "uri",
        )
    raise ResourceValidationError(
        f"The address {shown} must be a full address that starts with https://.", "uri"
    )


def check_scope_name(name: str) -> str:
    """A scope name a resource may own: see :data:`_SCOPE_NAME`, not an OIDC scope."""
    if not _SCOPE_NAME.fullmatch(name):
        raise ResourceValidationError(
            f"The scope name {_shown(name)!r} is not valid: start with a letter or digit, "
            "then use letters, digits and . _ : / - only (at most 100 characters).",
            "scopes",
        )
    if name in OIDC_SCOPES:
        raise ResourceValidationError(
            f"The scope name {name!r} is an OpenID Connect scope; give the API's scope "
            "another name (for example api:read).",
            "scopes",
        )
    return name


def parse_scope(text: str) -> tuple[str, str]:
    """``"name"`` or ``"name=description"`` (the syntax of ``--scope`` and of each line of
    the admin form) as ``(name, description)``; spaces around both are ignored."""
    name, _, description = text.partition("=")
    name, description = name.strip(), " ".join(description.split())
    check_scope_name(name)
    if len(description) > 300:
        raise ResourceValidationError(
            f"The description of {name} must be at most 300 characters.", "scopes"
        )
    if _CONTROL.search(description):
        raise ResourceValidationError(
            f"The description of {name} contains control characters.", "scopes"
        )
    return name, description


def _check_scopes(scopes: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    for name, description in scopes:
        name, description = parse_scope(f"{name}={description}")
        if name in out:
            raise ResourceValidationError(f"The scope {name} is listed twice.", "scopes")
        out[name] = description
    if len(out) > MAX_SCOPES:
        raise ResourceValidationError(f"An API has at most {MAX_SCOPES} scopes.", "scopes")
    return list(out.items())


def _check_name(name: str | None) -> str:
    name = " ".join((name or "").split())
    if len(name) > 200:
        raise ResourceValidationError("The name must be at most 200 characters.", "name")
    return name


def _server_client(client_id: str | None) -> str | None:
    if not client_id:
        return None
    found = db.session.execute(
        db.select(OAuthClient.client_id).filter_by(client_id=client_id[:64])
    ).scalar_one_or_none()
    if found is None:
        raise ResourceValidationError(
            f"There is no client {_shown(client_id)!r}: register the API's own client "
            "first (idp clients create), or leave it out.",
            "client_id",
        )
    return found


def _taken_scopes(names: Iterable[str], resource_id: int | None) -> None:
    names = list(names)
    if not names:
        return
    query = (
        db.select(ResourceScope.name, ApiResource.uri)
        .join(ApiResource)
        .where(ResourceScope.name.in_(names))
    )
    if resource_id is not None:
        query = query.where(ResourceScope.resource_id != resource_id)
    row = db.session.execute(query).first()
    if row is not None:
        raise ResourceConflict(
            f"The scope {row[0]} already belongs to the API {row[1]}: scope names are "
            "unique across APIs.",
            "scopes",
        )


# -- operations ----------------------------------------------------------------------------


def find_resource(uri: str) -> ApiResource | None:
    if not uri or len(uri) > 2000:
        return None
    return db.session.execute(db.select(ApiResource).filter_by(uri=uri)).scalar_one_or_none()


def create_resource(
    uri: str,
    scopes: Iterable[tuple[str, str]] = (),
    *,
    name: str | None = None,
    client_id: str | None = None,
    actor: str | None = None,
) -> ApiResource:
    """Register an API and its scopes, audit ``resource.created`` and commit."""
    uri = check_resource_uri(uri)
    name = _check_name(name)
    checked = _check_scopes(scopes)
    server = _server_client(client_id)
    if find_resource(uri) is not None:
        raise ResourceConflict(f"The API {_shown(uri)} is already registered.", "uri")
    _taken_scopes((n for n, _ in checked), None)
    resource = ApiResource(uri=uri, name=name, client_id=server)
    resource.scopes = [ResourceScope(name=n, description=d) for n, d in checked]
    db.session.add(resource)
    db.session.flush()
    audit.record("resource.created", actor=actor, resource=uri, scopes=[n for n, _ in checked],
                 server_client=server)  # fmt: skip
    db.session.commit()
    return resource


#: "Leave unchanged" for :func:`update_resource` arguments where None is a value.
UNSET: Any = object()


def update_resource(
    resource: ApiResource,
    *,
    uri: str | None = None,
    name: str | None = None,
    scopes: Iterable[tuple[str, str]] | None = None,
    client_id: str | None = UNSET,
    actor: str | None = None,
) -> list[str]:
    """Change an API (``scopes`` replaces the list whole; ``client_id=None`` removes the
    resource server's client), audit ``resource.updated`` with the changed fields and
    commit; returns the changed fields. A scope taken away is taken from every client
    that was allowed it too, and a new URI is what tokens carry from now on (tokens
    already issued keep the old one until they expire)."""
    changed: list[str] = []
    removed: list[str] = []
    old_uri = resource.uri
    if uri is not None:
        uri = check_resource_uri(uri)
        if uri != resource.uri:
            other = find_resource(uri)
            if other is not None and other.id != resource.id:
                raise ResourceConflict(f"The API {_shown(uri)} is already registered.", "uri")
            resource.uri = uri
            changed.append("uri")
    if name is not None:
        name = _check_name(name)
        if name != resource.name:
            resource.name = name
            changed.append("name")
    if client_id is not UNSET:
        server = _server_client(client_id)
        if server != resource.client_id:
            resource.client_id = server
            changed.append("client_id")
    if scopes is not None:
        checked = dict(_check_scopes(scopes))
        _taken_scopes(checked, resource.id)
        current = {s.name: s for s in resource.scopes}
        removed = [n for n in current if n not in checked]
        for n in removed:
            resource.scopes.remove(current[n])
        for n, description in checked.items():
            if n in current:
                if current[n].description != description:
                    current[n].description = description
                    changed.append("scope_descriptions")
            else:
                resource.scopes.append(ResourceScope(name=n, description=description))
        if removed or set(checked) - set(current):
            changed.append("scopes")
        db.session.flush()
    if removed:
        _strip_client_scopes(removed, actor=actor)
    changed = list(dict.fromkeys(changed))
    audit.record("resource.updated", actor=actor, resource=resource.uri, fields=changed,
                 previous_uri=old_uri if old_uri != resource.uri else None,
                 removed_scopes=removed or None)  # fmt: skip
    db.session.commit()
    return changed


def delete_resource(resource: ApiResource, *, actor: str | None = None) -> None:
    """Delete an API: its scopes go, and every client loses it and its scopes. Tokens
    already issued for it stay valid until they expire (at most the access-token
    lifetime); refresh tokens can no longer be narrowed to it."""
    uri, names = resource.uri, [s.name for s in resource.scopes]
    _strip_client_scopes(names, actor=actor)
    db.session.execute(
        db.delete(client_resources).where(client_resources.c.resource_id == resource.id)
    )
    db.session.delete(resource)
    audit.record("resource.deleted", actor=actor, resource=uri, scopes=names)
    db.session.commit()


def _strip_client_scopes(names: Sequence[str], *, actor: str | None) -> None:
    """Take scopes that no longer exist out of every client's ``scope`` (so that the
    client's registration stays valid)."""
    gone = set(names)
    if not gone:
        return
    for client in db.session.execute(db.select(OAuthClient)).scalars():
        kept = [s for s in client.scope.split() if s not in gone]
        if len(kept) != len(client.scope.split()):
            client.scope = " ".join(kept)
            audit.record("client.updated", client_id=client.client_id, actor=actor,
                         fields=["scope"], reason="resource scopes removed")  # fmt: skip


def list_resources() -> list[ApiResource]:
    return list(db.session.execute(db.select(ApiResource).order_by(ApiResource.uri)).scalars())


def clients_allowed(resource: ApiResource) -> list[str]:
    """The client ids allowed to ask for tokens for *resource*."""
    return list(
        db.session.execute(
            db.select(OAuthClient.client_id)
            .join(client_resources, client_resources.c.client_pk == OAuthClient.id)
            .where(client_resources.c.resource_id == resource.id)
            .order_by(OAuthClient.client_id)
        ).scalars()
    )


def describe_resource(resource: ApiResource) -> dict[str, Any]:
    return {
        "uri": resource.uri,
        "name": resource.name,
        "client_id": resource.client_id,
        "scopes": [{"name": s.name, "description": s.description} for s in resource.scopes],
        "clients": clients_allowed(resource),
        "created_at": resource.created_at.isoformat() if resource.created_at else None,
    }


# -- clients and their resources -------------------------------------------------------------


def client_resource_uris(client: OAuthClient) -> list[str]:
    """The URIs of the resources *client* may ask tokens for. Works with the transient
    copies of the client cache (only the primary key is read)."""
    if client.id is None:
        return []
    return list(
        db.session.execute(
            db.select(ApiResource.uri)
            .join(client_resources, client_resources.c.resource_id == ApiResource.id)
            .where(client_resources.c.client_pk == client.id)
            .order_by(ApiResource.uri)
        ).scalars()
    )


def resolve_uris(uris: Iterable[str]) -> list[ApiResource]:
    """The registered resources named by *uris* (each must exist), in the given order."""
    out: list[ApiResource] = []
    for uri in dict.fromkeys(u.strip() for u in uris if u and u.strip()):
        resource = find_resource(uri)
        if resource is None:
            raise ResourceValidationError(
                f"There is no API {_shown(uri)}: register it first (idp resources create).",
                "resources",
            )
        out.append(resource)
    return out


def set_client_resources(
    client: OAuthClient, uris: Iterable[str], *, actor: str | None = None
) -> bool:
    """Allow *client* exactly the resources *uris* (flushed, not committed); audit
    ``client.resources_changed`` and return True when the set changed."""
    wanted = resolve_uris(uris)
    current = set(client_resource_uris(client))
    if {r.uri for r in wanted} == current:
        return False
    db.session.execute(db.delete(client_resources).where(client_resources.c.client_pk == client.id))
    if wanted:
        db.session.execute(
            client_resources.insert(),
            [{"client_pk": client.id, "resource_id": r.id} for r in wanted],
        )
    audit.record("client.resources_changed", client_id=client.client_id, actor=actor,
                 resources=[r.uri for r in wanted])  # fmt: skip
    return True


def scope_owners(names: Iterable[str]) -> dict[str, ApiResource]:
    """The resource each of *names* belongs to (OIDC scopes and unknown names left out)."""
    wanted = [n for n in dict.fromkeys(names) if n not in OIDC_SCOPES]
    if not wanted:
        return {}
    rows = db.session.execute(
        db.select(ResourceScope.name, ApiResource)
        .join(ApiResource)
        .where(ResourceScope.name.in_(wanted))
    ).all()
    return {name: resource for name, resource in rows}


def check_client_scopes(scope: str, resource_uris: Iterable[str]) -> None:
    """Every resource scope a client is registered with must belong to a resource the
    client is allowed (otherwise no token could ever carry it)."""
    allowed = set(resource_uris)
    for name, resource in scope_owners(scope.split()).items():
        if resource.uri not in allowed:
            raise ResourceValidationError(
                f"The scope {name} belongs to the API {resource.uri}, which this application "
                "may not use: allow that API too, or remove the scope.",
                "scope",
            )


def supported_scopes() -> list[str]:
    """Every scope a client may be registered with: the OpenID Connect scopes, then the
    registered resources' scopes, as the database holds them now."""
    names = db.session.execute(db.select(ResourceScope.name).order_by(ResourceScope.name))
    return [*OIDC_SCOPES, *names.scalars()]


def advertised_scopes() -> list[str]:
    """:func:`supported_scopes` for discovery's ``scopes_supported``: read once per
    change of the registrations in each process (:class:`Remembered`), not per request."""
    memo = current_app.extensions.get("idp.advertised_scopes")
    if memo is None:
        memo = current_app.extensions["idp.advertised_scopes"] = Remembered(
            lambda: tuple(supported_scopes())
        )
    return list(memo.get())


def scope_catalog(names: Iterable[str]) -> dict[str, tuple[ApiResource, str]]:
    """For the consent page: each resource scope among *names* with its resource and
    its description."""
    wanted = [n for n in dict.fromkeys(names) if n not in OIDC_SCOPES]
    if not wanted:
        return {}
    rows = db.session.execute(
        db.select(ResourceScope, ApiResource)
        .join(ApiResource)
        .where(ResourceScope.name.in_(wanted))
    ).all()
    return {s.name: (r, s.description) for s, r in rows}


# -- what a token is for (RFC 8707 2.1, 2.2) --------------------------------------------------


def requested_resources(values: Iterable[str]) -> list[str]:
    """The ``resource`` values of a request, each checked as a resource indicator
    (RFC 8707 2: absolute, no fragment), duplicates removed."""
    out = list(dict.fromkeys(values))
    if len(out) > MAX_RESOURCES_PER_REQUEST:
        raise InvalidTarget(f"At most {MAX_RESOURCES_PER_REQUEST} resources per request.")
    for value in out:
        try:
            check_resource_uri(value)
        except ResourceValidationError:
            raise InvalidTarget(
                "Each resource must be the absolute URI of a registered API, without a fragment."
            ) from None
    return out


def allowed_resources(client: OAuthClient, uris: Sequence[str]) -> list[ApiResource]:
    """The resources *uris* if *client* is allowed each of them (RFC 8707 2.1), else
    :class:`InvalidTarget`."""
    if not uris:
        return []
    rows = {
        r.uri: r
        for r in db.session.execute(
            db.select(ApiResource)
            .join(client_resources, client_resources.c.resource_id == ApiResource.id)
            .where(client_resources.c.client_pk == client.id, ApiResource.uri.in_(list(uris)))
        ).scalars()
    }
    missing = [u for u in uris if u not in rows]
    if missing:
        raise InvalidTarget(
            f"The resource {_shown(missing[0])} is not registered, or this client may not "
            "ask for it."
        )
    return [rows[u] for u in uris]


def authorization_scope(scope: str, resources: Sequence[ApiResource]) -> str:
    """The scope an authorization request can grant: the OpenID Connect scopes it asks
    for, and the resource scopes of the resources it names (RFC 8707 2: the authorization
    server should downscope to what the named resources can use). A resource scope
    asked for without its resource could never be used, so it is neither shown on the
    consent page nor granted."""
    usable = {s.name for r in resources for s in r.scopes}
    return " ".join(s for s in scope.split() if s in OIDC_SCOPES or s in usable)


@dataclass(frozen=True)
class Target:
    """The audience and the scope of one access token."""

    audience: str  # the resource URI, or the client id
    scope: str
    resource: str | None = None  # the resource URI when the token is for a resource


def choose_target(
    client: OAuthClient,
    *,
    granted_scope: str,
    granted_resources: Sequence[str] | None,
    requested: Sequence[str],
    requested_scope: str | None = None,
) -> Target:
    """The access token a token request gets (RFC 8707 2.2, RFC 9068 3).

    - No ``resource``: a token for the client itself, ``aud`` = the client id, with the
      granted OpenID Connect scopes only (the token for ``/userinfo``; resource scopes
      only ever travel in a token for their resource). This holds whatever resources the
      grant covers: the answer never depends on guessing which one was meant.
    - One ``resource``: it must be among *granted_resources* (those of the authorization
      request; ``None`` for client credentials, where the client's allowed resources
      are the grant) and still allowed to the client; the token's ``aud`` is its URI and
      its scope the resource's scopes that were granted, that the client is allowed
      (its ``scope``) and, with *requested_scope*, that were asked for.
    - More than one: refused (``invalid_target``): a token has one audience here, so
      that a resource server can never replay a token at another.
    """
    if len(requested) > 1:
        raise InvalidTarget("Ask for one resource per token request.")
    asked = set(requested_scope.split()) if requested_scope is not None else None
    if not requested:
        scope = [s for s in granted_scope.split() if s in OIDC_SCOPES]
        if asked is not None:
            scope = [s for s in scope if s in asked]
        return Target(client.client_id, " ".join(scope))
    uri = requested[0]
    requested_resources([uri])
    if granted_resources is not None and uri not in granted_resources:
        raise InvalidTarget(
            "The resource was not named in the authorization request: ask for it there."
        )
    (resource,) = allowed_resources(client, [uri])
    names = {s.name for s in resource.scopes}
    allowed = set(client.scope.split())
    scope = [s for s in granted_scope.split() if s in names and s in allowed]
    if asked is not None:
        scope = [s for s in scope if s in asked]
    return Target(resource.uri, " ".join(scope), resource.uri)


def serves_audience(client_id: str, aud: Any) -> bool:
    """Whether *client_id* is the resource server's client of a resource in *aud* (the
    ``aud`` claim of an access token): RFC 7662 2.1 lets it introspect such tokens."""
    auds = aud if isinstance(aud, list) else [aud]
    uris = [a for a in auds if isinstance(a, str) and a]
    if not uris:
        return False
    return (
        db.session.execute(
            db.select(ApiResource.id).where(
                ApiResource.client_id == client_id, ApiResource.uri.in_(uris)
            )
        ).first()
        is not None
    )


def release_client(client_id: str) -> None:
    """A client is being deleted: it stops being any resource's server client and loses
    its resources (SQLite does not enforce the foreign keys' ON DELETE), so a client
    registered later under the same id inherits nothing. The caller commits."""
    db.session.execute(
        db.update(ApiResource).where(ApiResource.client_id == client_id).values(client_id=None)
    )
    pk = db.session.execute(
        db.select(OAuthClient.id).filter_by(client_id=client_id)
    ).scalar_one_or_none()
    if pk is not None:
        db.session.execute(db.delete(client_resources).where(client_resources.c.client_pk == pk))
