"""The short-lived state store contract.

Everything the IdP keeps for seconds to hours (sessions, one-time codes, rate-limit
counters, pending push approvals) goes through :class:`Store`. Two implementations
exist: :class:`idp.store.memory.MemoryStore` (one process, tests and development) and
:class:`idp.store.redis.RedisStore` (production, shared between instances). Both have
the same observable semantics; the shared test suite in ``tests/unit/test_store.py``
runs against both.

Rules every implementation follows:

* Keys are namespaced by a prefix given at construction (e.g. ``"idp:"``). Callers pass
  bare keys such as ``"session:abc"``; the prefix is applied inside the store, to keys
  and to pub/sub channels alike.
* Every write that creates a key gives it a TTL. ``ttl`` arguments are whole seconds and
  must be a positive ``int``; anything else raises :class:`ValueError` before the store is
  contacted. Nothing is ever stored forever.
* Values are ``bytes`` (``TypeError`` otherwise); set members are ``str``.
* Operating on a key that holds another kind of value (e.g. ``get`` on a set) raises
  :class:`TypeError`; ``incr`` on a value that is not an integer raises
  :class:`ValueError`. These are programming errors, not outages.
* If the backing service cannot be reached, **every** method raises
  :class:`StoreUnavailable`; no method ever answers ``None``/``0``/an empty set in place
  of an error. Callers must fail closed (HTTP 503) and never skip a security check
  because the store is down.
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable


class StoreUnavailable(Exception):
    """The store cannot be reached; callers must fail closed (503), never skip a check."""


@runtime_checkable
class Store(Protocol):
    """Key/value store for short-lived state. See the module docstring for the rules."""

    #: True when every process and instance sees the same data (Redis); False for a
    #: store private to one process (memory).
    shared: bool

    def get(self, key: str) -> bytes | None:
        """Return the value of ``key``, or ``None`` if it is missing or expired."""
        ...

    def set(self, key: str, value: bytes, ttl: int) -> None:
        """Store ``value`` under ``key`` for ``ttl`` seconds (> 0), replacing any value."""
        ...

    def set_if_absent(self, key: str, value: bytes, ttl: int) -> bool:
        """``SET NX EX``: store only if ``key`` does not exist. True if stored."""
        ...

    def delete(self, *keys: str) -> int:
        """Delete ``keys``; return how many existed. ``delete()`` returns 0."""
        ...

    def take(self, key: str) -> bytes | None:
        """Atomically get and delete ``key`` (``GETDEL``).

        Of any number of concurrent callers, exactly one receives the value; the others
        get ``None``. Use it for one-time codes, authorization codes, nonces.
        """
        ...

    def incr(self, key: str, ttl: int) -> int:
        """Atomically add 1 to the counter at ``key`` and return the new value.

        The TTL is set only when the increment creates the key (a fixed window: later
        increments do not extend it). A missing key counts from 0.
        """
        ...

    def ttl(self, key: str) -> int | None:
        """Remaining lifetime in whole seconds, rounded up (so >= 1 for a live key).

        ``None`` if the key is missing or has no expiry.
        """
        ...

    def expire(self, key: str, ttl: int) -> bool:
        """Set the TTL of an existing key to ``ttl`` seconds. False if the key is missing."""
        ...

    def add_to_set(self, key: str, member: str, ttl: int) -> None:
        """``SADD`` then ``EXPIRE`` (atomically): add ``member`` and (re)set the set's TTL.

        Used e.g. to index a user's sessions.
        """
        ...

    def remove_from_set(self, key: str, member: str) -> None:
        """``SREM``: remove ``member``; an emptied set disappears. No-op if absent."""
        ...

    def members(self, key: str) -> set[str]:
        """All members of the set at ``key`` (empty set if the key is missing)."""
        ...

    def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to everyone currently blocked in :meth:`wait_for` on ``channel``.

        Fire and forget, like Redis pub/sub: a message published while nobody waits is
        lost, so waiters must check persistent state before (and after) waiting.
        """
        ...

    def wait_for(self, channel: str, timeout: float) -> bytes | None:
        """Block until one message arrives on ``channel`` or ``timeout`` (> 0, real seconds)
        passes; return the message, or ``None`` on timeout."""
        ...

    def ping(self) -> None:
        """Return if the store is reachable, raise :class:`StoreUnavailable` otherwise."""
        ...


def check_ttl(ttl: object) -> int:
    """Validate a TTL argument: a positive ``int`` number of seconds."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"ttl must be a positive integer number of seconds, got {ttl!r}")
    return ttl


def check_value(value: object) -> bytes:
    """Validate a value argument: ``bytes`` only (both backends return ``bytes``)."""
    if not isinstance(value, bytes):
        raise TypeError(f"store values must be bytes, got {type(value).__name__}")
    return value


def check_timeout(timeout: object) -> float:
    """Validate a ``wait_for`` timeout: a positive number of seconds."""
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout < math.inf
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)
