"""In-process implementation of :class:`idp.store.base.Store`.

For tests and single-process development only: state is not shared between processes
or instances, and is lost on restart. Semantics match :class:`idp.store.redis.RedisStore`.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable

from idp.store.base import check_timeout, check_ttl, check_value

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# What Redis accepts as an integer string (string2ll): no sign "+", no spaces, no
# leading zeros.
_REDIS_INT = re.compile(rb"-?(0|[1-9][0-9]*)")


class _Entry:
    __slots__ = ("value", "expires_at")

    def __init__(self, value: bytes | set[str], expires_at: float | None) -> None:
        self.value = value
        self.expires_at = expires_at


class _Mailbox:
    """One waiter's inbox (compared by identity, unlike a plain list)."""

    __slots__ = ("messages",)

    def __init__(self) -> None:
        self.messages: list[bytes] = []


class MemoryStore:
    """A thread-safe, single-process store.

    Expiry is lazy (an expired key is dropped when it is touched) plus a sweep of all
    expired keys at most every :attr:`SWEEP_INTERVAL` seconds of ``clock`` time, run by
    writes, so memory stays bounded by what is live.

    ``clock`` (default :func:`time.monotonic`) drives expiry and can be replaced by a fake
    in tests. :meth:`wait_for` timeouts are real time regardless of ``clock``.
    """

    SWEEP_INTERVAL = 60.0

    #: Seen only by this process (see :attr:`idp.store.base.Store.shared`).
    shared = False

    def __init__(self, prefix: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self._prefix = prefix
        self._clock = clock
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._data: dict[str, _Entry] = {}
        self._waiters: dict[str, set[_Mailbox]] = {}
        self._next_sweep = clock() + self.SWEEP_INTERVAL

    # -- helpers (call with the lock held) -------------------------------------------

    def _k(self, key: str) -> str:
        return self._prefix + key

    def _live(self, k: str, now: float) -> _Entry | None:
        entry = self._data.get(k)
        if entry is None:
            return None
        if entry.expires_at is not None and now >= entry.expires_at:
            del self._data[k]
            return None
        return entry

    def _maybe_sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.SWEEP_INTERVAL
        dead = [
            k for k, e in self._data.items() if e.expires_at is not None and now >= e.expires_at
        ]
        for k in dead:
            del self._data[k]

    @staticmethod
    def _as_bytes(entry: _Entry | None) -> bytes | None:
        if entry is None:
            return None
        if not isinstance(entry.value, bytes):
            raise TypeError("operation against a key holding the wrong kind of value")
        return entry.value

    @staticmethod
    def _as_set(entry: _Entry | None) -> set[str] | None:
        if entry is None:
            return None
        if not isinstance(entry.value, set):
            raise TypeError("operation against a key holding the wrong kind of value")
        return entry.value

    # -- Store -----------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self._as_bytes(self._live(self._k(key), self._clock()))

    def set(self, key: str, value: bytes, ttl: int) -> None:
        check_value(value)
        check_ttl(ttl)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            self._data[self._k(key)] = _Entry(value, now + ttl)

    def set_if_absent(self, key: str, value: bytes, ttl: int) -> bool:
        check_value(value)
        check_ttl(ttl)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            k = self._k(key)
            if self._live(k, now) is not None:
                return False
            self._data[k] = _Entry(value, now + ttl)
            return True

    def delete(self, *keys: str) -> int:
        with self._lock:
            now = self._clock()
            count = 0
            for k in {self._k(key) for key in keys}:
                if self._live(k, now) is not None:
                    del self._data[k]
                    count += 1
            return count

    def take(self, key: str) -> bytes | None:
        with self._lock:
            k = self._k(key)
            value = self._as_bytes(self._live(k, self._clock()))
            if value is not None:
                del self._data[k]
            return value

    def incr(self, key: str, ttl: int) -> int:
        check_ttl(ttl)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            k = self._k(key)
            entry = self._live(k, now)
            current = self._as_bytes(entry)
            if current is None:
                self._data[k] = _Entry(b"1", now + ttl)
                return 1
            if not _REDIS_INT.fullmatch(current):
                raise ValueError("value is not an integer or out of range")
            new = int(current) + 1
            if not _INT64_MIN <= new <= _INT64_MAX:
                raise ValueError("increment would overflow")
            assert entry is not None
            entry.value = str(new).encode()
            if entry.expires_at is None:  # never leave a counter without a window
                entry.expires_at = now + ttl
            return new

    def ttl(self, key: str) -> int | None:
        with self._lock:
            now = self._clock()
            entry = self._live(self._k(key), now)
            if entry is None or entry.expires_at is None:
                return None
            return max(1, math.ceil(entry.expires_at - now))

    def expire(self, key: str, ttl: int) -> bool:
        check_ttl(ttl)
        with self._lock:
            now = self._clock()
            entry = self._live(self._k(key), now)
            if entry is None:
                return False
            entry.expires_at = now + ttl
            return True

    def add_to_set(self, key: str, member: str, ttl: int) -> None:
        check_ttl(ttl)
        with self._lock:
            now = self._clock()
            self._maybe_sweep(now)
            k = self._k(key)
            entry = self._live(k, now)
            members = self._as_set(entry)
            if entry is None or members is None:
                self._data[k] = _Entry({member}, now + ttl)
            else:
                members.add(member)
                entry.expires_at = now + ttl

    def remove_from_set(self, key: str, member: str) -> None:
        with self._lock:
            k = self._k(key)
            members = self._as_set(self._live(k, self._clock()))
            if members is None:
                return
            members.discard(member)
            if not members:
                del self._data[k]

    def members(self, key: str) -> set[str]:
        with self._lock:
            members = self._as_set(self._live(self._k(key), self._clock()))
            return set(members) if members is not None else set()

    def publish(self, channel: str, message: bytes) -> None:
        check_value(message)
        with self._cond:
            for mailbox in self._waiters.get(self._k(channel), ()):
                mailbox.messages.append(message)
            self._cond.notify_all()

    def wait_for(self, channel: str, timeout: float) -> bytes | None:
        timeout = check_timeout(timeout)
        deadline = time.monotonic() + timeout
        c = self._k(channel)
        mailbox = _Mailbox()
        with self._cond:
            self._waiters.setdefault(c, set()).add(mailbox)
            try:
                while not mailbox.messages:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                return mailbox.messages[0]
            finally:
                waiters = self._waiters[c]
                waiters.discard(mailbox)
                if not waiters:
                    del self._waiters[c]

    def ping(self) -> None:
        return None
