"""Client registrations remembered across requests, for the protocol endpoints.

Every token request, and every step of a sign-in, looks up the client. Registrations
change rarely, so each process keeps a copy of the ones it has served, checked on every
request against a *generation* counter in the shared store (one Redis ``GET`` per
request instead of one SQL query per lookup):

* any commit that adds, changes or deletes a client (admin pages, ``idp clients``,
  dynamic registration), an API or an API's scope increments the generation after the
  commit, so every instance drops its copies at its next request;
* a copy is also dropped after ``ttl`` seconds, which bounds how long a change can go
  unseen if the increment itself failed (Redis down at that moment);
* when the store cannot be read, the cache is bypassed (the database answers);
* only a store shared by every process (Redis) enables it: with the in-memory store a
  command run in another process could not tell the server.

The copies are transient ``OAuthClient`` objects, never attached to a session: they are
read, never written.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from flask import current_app, g, has_app_context, has_request_context
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session

from ..models import ApiResource, OAuthClient, ResourceScope
from ..store import Store, StoreUnavailable

log = logging.getLogger("idp.oidc")

T = TypeVar("T")

GENERATION_KEY = "clients.generation"
_GENERATION_TTL = 7 * 86400
_CHANGED = "idp.clients_changed"
_MAX_ENTRIES = 10_000


def _copy(client: OAuthClient) -> OAuthClient:
    """A transient copy of a loaded client (its column values, no session state)."""
    columns = inspect(OAuthClient).column_attrs
    return OAuthClient(**{attr.key: getattr(client, attr.key) for attr in columns})


class ClientCache:
    def __init__(self, store: Store, *, enabled: bool, ttl: float = 30.0) -> None:
        self.store = store
        self.enabled = enabled
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[bytes, float, OAuthClient]] = {}

    def _generation(self) -> bytes | None:
        """The store's generation, read once per request; ``None`` bypasses the cache."""
        if has_request_context() and "client_generation" in g:
            return g.client_generation
        try:
            value = self.store.get(GENERATION_KEY) or b"0"
        except StoreUnavailable:
            value = None
        if has_request_context():
            g.client_generation = value
        return value

    def generation(self) -> bytes | None:
        """The current generation (changes whenever a client changes), or None when
        nothing may be remembered (not enabled, or the store cannot be read)."""
        return self._generation() if self.enabled else None

    def get(self, client_id: str, load: Callable[[], OAuthClient | None]) -> OAuthClient | None:
        """The client *client_id*: a remembered copy if still current, else ``load()``."""
        if not self.enabled:
            return load()
        generation = self._generation()
        if generation is None:
            return load()
        now = time.monotonic()
        entry = self._entries.get(client_id)
        if entry is not None and entry[0] == generation and now - entry[1] < self.ttl:
            return entry[2]
        client = load()
        if client is None:
            return None  # unknown ids are not remembered (no memory for made-up ids)
        copy = _copy(client)
        with self._lock:
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
            self._entries[client_id] = (generation, now, copy)
        return copy

    def changed(self) -> None:
        """Tell every process that a client changed (after the commit)."""
        with self._lock:
            self._entries.clear()
        try:
            self.store.incr(GENERATION_KEY, _GENERATION_TTL)
        except StoreUnavailable as exc:
            log.error("client change not announced (store unavailable; copies expire "
                      "within %ss): %s", self.ttl, exc)  # fmt: skip


class Remembered(Generic[T]):
    """A value computed from the registrations (the origins every client allows, the
    scopes discovery lists), kept per process while the generation stays the same and
    for at most ``ttl`` seconds; computed afresh on every call when the store cannot
    give a generation (the in-memory store, or Redis unreachable)."""

    def __init__(self, compute: Callable[[], T], ttl: float = 30.0) -> None:
        self.compute, self.ttl = compute, ttl
        self._lock = threading.Lock()
        self._value: tuple[bytes | None, float, T] | None = None

    def get(self) -> T:
        cache = client_cache()
        generation = cache.generation() if cache is not None else None
        now = time.monotonic()
        value = self._value
        if (generation is not None and value is not None and value[0] == generation
                and now - value[1] < self.ttl):  # fmt: skip
            return value[2]
        fresh = self.compute()
        with self._lock:
            self._value = (generation, now, fresh)
        return fresh


#: What a change to any of these classes makes stale: clients, and the APIs (resources)
#: and scopes they may be granted.
_WATCHED = (OAuthClient, ApiResource, ResourceScope)


def _note_changes(session: Session, *_: Any) -> None:
    if any(isinstance(o, _WATCHED) for o in (*session.new, *session.dirty, *session.deleted)):
        session.info[_CHANGED] = True


def _after_commit(session: Session) -> None:
    if session.info.pop(_CHANGED, False) and has_app_context():
        cache: ClientCache | None = current_app.extensions.get("idp.client_cache")
        if cache is not None:
            cache.changed()


def _after_rollback(session: Session) -> None:
    session.info.pop(_CHANGED, None)


def install(app: Any, store: Store) -> ClientCache:
    """Create the app's cache and register the session hooks (once per process)."""
    cache = ClientCache(store, enabled=getattr(store, "shared", False))
    app.extensions["idp.client_cache"] = cache
    if not event.contains(Session, "before_flush", _note_changes):
        event.listen(Session, "before_flush", _note_changes)
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)
    return cache


def client_cache() -> ClientCache | None:
    return current_app.extensions.get("idp.client_cache")
