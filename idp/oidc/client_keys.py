"""The public keys of ``private_key_jwt`` clients that registered a ``jwks_uri``
(RFC 7591 2) instead of their keys.

The key set is fetched with the outbound rules of :mod:`.outbound` (https, http only
to localhost outside production; every address the host resolves to checked, no
private, loopback or link-local target in production; no redirects;
``[client_keys] fetch_timeout``, 3 s; at most ``max_bytes``, 64 KiB) and kept in the
store for ``cache_ttl`` seconds (300), shared by every instance, under the hash of the
client id and the URI (a changed URI is a new entry).

A client assertion whose ``kid`` the kept set lacks (the client rotated its keys)
fetches the set again, but at most once per ``refresh_interval`` seconds (60) per client
and URI across all instances (a lock in the store): assertions with made-up key ids
cannot make the provider fetch at every request, nor aim it at the client's server. A
fetch that fails is not tried again for ``refresh_interval`` seconds either.
The set must be a JSON object with a non-empty ``keys`` array of public keys (a private
member such as ``d`` refuses the whole set) that joserfc can import.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ..config import Settings
from ..security.crypto import hash_token
from ..security.jsontext import JSONRefused, parse_json
from ..store import Store
from . import outbound

log = logging.getLogger("idp.oidc")

#: Members only private (or symmetric) keys have (RFC 7518 6.2.2, 6.3.2, 6.4.1).
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


class ClientKeysUnavailable(Exception):
    """The key set cannot be had now; the message says why (for logs and audits)."""


def check_key_set(data: Any) -> dict[str, Any]:
    """*data* as a JWK set of public keys, or :class:`ClientKeysUnavailable`."""
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) for k in keys):
        raise ClientKeysUnavailable('the document is not a JWK set (a "keys" array)')
    if any(member in key for key in keys for member in _PRIVATE_MEMBERS):
        raise ClientKeysUnavailable("the key set holds a private or symmetric key")
    try:
        KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError, KeyError) as exc:
        raise ClientKeysUnavailable(f"the key set cannot be read ({type(exc).__name__})") from None
    return {"keys": keys}


def _kids(jwks: dict[str, Any]) -> set[str]:
    return {k["kid"] for k in jwks["keys"] if isinstance(k.get("kid"), str)}


class ClientKeys:
    """Fetches and keeps the key sets of clients' ``jwks_uri``."""

    def __init__(self, store: Store, settings: Settings, *, resolver: Any = None) -> None:
        cfg = settings.client_keys
        self.store = store
        self.cache_ttl = cfg.cache_ttl
        self.refresh_interval = cfg.refresh_interval
        self.policy = outbound.OutboundPolicy(
            allow_loopback=not settings.is_production,
            allow_private=False,
            timeout=float(cfg.fetch_timeout),
            max_bytes=cfg.max_bytes,
        )
        self.resolver = resolver

    def key_set(self, client_id: str, uri: str, kid: str | None) -> dict[str, Any]:
        """The client's key set: the kept one if it has *kid* (or *kid* is None),
        else a fresh one when a fetch is allowed now (see the module docstring)."""
        name = hash_token(json.dumps([client_id, uri]))
        kept_raw = self.store.get(f"client_jwks:{name}")
        kept = json.loads(kept_raw) if kept_raw is not None else None
        if kept is not None:
            if kid is None or kid in _kids(kept):
                return kept
            refresh = f"client_jwks_refresh:{name}"
            if not self.store.set_if_absent(refresh, b"1", self.refresh_interval):
                return kept  # the unknown kid fails the signature check, without a fetch
        elif self.store.get(f"client_jwks_failed:{name}") is not None:
            raise ClientKeysUnavailable(
                f"the last fetch failed less than {self.refresh_interval} s ago"
            )
        try:
            jwks = self.fetch(uri)
        except ClientKeysUnavailable:
            # A failing jwks_uri is not asked again at every request either.
            self.store.set(f"client_jwks_failed:{name}", b"1", self.refresh_interval)
            raise
        self.store.set(f"client_jwks:{name}", json.dumps(jwks).encode(), self.cache_ttl)
        log.info("client %s: key set fetched from its jwks_uri (%d keys)", client_id,
                 len(jwks["keys"]))  # fmt: skip
        return jwks

    def fetch(self, uri: str) -> dict[str, Any]:
        """GET the key set at *uri* under the outbound rules."""
        kwargs = {"resolver": self.resolver} if self.resolver is not None else {}
        try:
            resp = outbound.request(
                "GET", uri, self.policy,
                accept="application/jwk-set+json, application/json", **kwargs,
            )  # fmt: skip
        except outbound.OutboundError as exc:
            raise ClientKeysUnavailable(str(exc)) from None
        if resp.status != 200:
            raise ClientKeysUnavailable(f"the jwks_uri answered HTTP {resp.status}")
        try:
            data = parse_json(resp.body)
        except JSONRefused:
            raise ClientKeysUnavailable("the jwks_uri did not answer JSON") from None
        return check_key_set(data)
