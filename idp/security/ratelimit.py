"""Fixed-window rate limits stored in the shared :class:`~idp.store.Store`.

Limits are named by purpose (``"login.ip"``, ``"login.account_ip"``, ``"mfa.totp"``...)
so counters for different checks never collide, and so logs say which limit fired.

Fail closed: if the store is down, :class:`~idp.store.StoreUnavailable` propagates out
of :meth:`RateLimiter.hit` / :meth:`RateLimiter.check` / :meth:`RateLimiter.clear`.
It is never swallowed here, and callers must not catch it to carry on without the
limit -- answer 503 instead.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from idp.store.base import Store


class RateLimited(Exception):
    """The limit is reached; retry after ``retry_after`` seconds (>= 1)."""

    def __init__(self, retry_after: int, name: str = "") -> None:
        self.retry_after = max(1, int(retry_after))
        self.name = name
        super().__init__(f"rate limit {name or '?'} reached; retry after {self.retry_after}s")


@dataclass(frozen=True)
class Limit:
    """At most ``limit`` attempts per fixed window of ``window`` seconds."""

    name: str
    limit: int
    window: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a limit needs a name")
        for field in ("limit", "window"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Limit.{field} must be a positive int, got {value!r}")


class RateLimiter:
    """Counts attempts per key (an IP, an account, "account|ip"...) under one :class:`Limit`.

    Keys are hashed before they reach the store (``rl:<name>:<sha256 prefix>``), so raw
    emails or IPs never appear in key names. Normalise keys before passing them (e.g.
    lower-case emails), or variants count separately.

    Every method raises :class:`~idp.store.StoreUnavailable` when the store is down: the
    limiter fails closed and never lets an attempt through unchecked.
    """

    def __init__(self, store: Store, limit: Limit) -> None:
        self._store = store
        self.limit = limit

    def _key(self, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
        return f"rl:{self.limit.name}:{digest}"

    def _retry_after(self, storage_key: str) -> int:
        remaining = self._store.ttl(storage_key)
        return self.limit.window if remaining is None else remaining

    def hit(self, key: str) -> int:
        """Count one attempt and return the count in the current window.

        Raises :class:`RateLimited` if this attempt takes the count over the limit (the
        attempt that crosses is refused, and so is every later one in the window).
        Raises :class:`~idp.store.StoreUnavailable` if the store is down (fail closed).
        """
        storage_key = self._key(key)
        count = self._store.incr(storage_key, self.limit.window)
        if count > self.limit.limit:
            raise RateLimited(self._retry_after(storage_key), self.limit.name)
        return count

    def check(self, key: str) -> None:
        """Raise :class:`RateLimited` if the limit is already reached, without counting.

        Raises :class:`~idp.store.StoreUnavailable` if the store is down (fail closed).
        """
        storage_key = self._key(key)
        raw = self._store.get(storage_key)
        if raw is not None and int(raw) >= self.limit.limit:
            raise RateLimited(self._retry_after(storage_key), self.limit.name)

    def clear(self, key: str) -> None:
        """Forget the attempts for ``key`` (e.g. after a successful login).

        Raises :class:`~idp.store.StoreUnavailable` if the store is down.
        """
        self._store.delete(self._key(key))
