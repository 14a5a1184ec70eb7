"""Short-lived state (sessions, one-time codes, counters) behind one small interface."""

from __future__ import annotations

from idp.store.base import Store, StoreUnavailable
from idp.store.memory import MemoryStore
from idp.store.redis import RedisStore

__all__ = ["MemoryStore", "RedisStore", "Store", "StoreUnavailable", "create_store"]


def create_store(backend: str, *, redis_url: str, prefix: str) -> Store:
    """Build the configured store: ``"memory"`` (one process only) or ``"redis"``.

    Construction does not contact Redis; call :meth:`Store.ping` to check reachability.
    """
    if backend == "memory":
        return MemoryStore(prefix=prefix)
    if backend == "redis":
        return RedisStore(redis_url, prefix=prefix)
    raise ValueError(f"unknown store backend {backend!r} (expected 'memory' or 'redis')")
