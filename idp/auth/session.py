"""Server-side browser sessions kept in the store (Redis, or memory for one process).

The cookie carries only a random 256-bit id; the store key is its SHA-256, so a store
dump cannot be replayed as cookies. Sessions end after ``idle_timeout`` without use
and ``absolute_timeout`` after sign-in (NIST SP 800-63B 7.1; FedRAMP: 15 min / 12 h).
The id is replaced whenever privilege changes (:meth:`SessionManager.establish`).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..security.crypto import hash_token
from ..store import Store
from .assurance import amr_for

# Only refresh the idle timer when it has moved by this much: a store write per page
# view buys nothing.
_TOUCH_EVERY = 30


@dataclass
class BrowserSession:
    """What the provider knows about a signed-in browser."""

    user_id: int
    sid: str  # public session id, asserted as ``sid`` in ID tokens
    created_at: int
    last_seen: int
    auth_time: int  # time of the last authentication event (OIDC Core 2, auth_time)
    amr: list[str] = field(default_factory=list)  # RFC 8176 values earned so far
    # method -> time it last passed in this session, e.g. {"pwd": 1700000000}
    methods: dict[str, int] = field(default_factory=dict)
    key: str = ""  # store key suffix (hash of the cookie value); not persisted

    def method_age(self, method: str, now: int) -> int | None:
        at = self.methods.get(method)
        return None if at is None else now - at


class SessionManager:
    def __init__(
        self,
        store: Store,
        *,
        idle_timeout: int,
        absolute_timeout: int,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.clock = clock

    def _ttl(self, s: BrowserSession, now: int) -> int:
        return max(1, min(self.idle_timeout, s.created_at + self.absolute_timeout - now))

    def _save(self, s: BrowserSession, now: int) -> None:
        data = dict(vars(s))  # flat JSON values: no deep copy (dataclasses.asdict)
        data.pop("key")
        self.store.set(f"session:{s.key}", json.dumps(data).encode(), self._ttl(s, now))

    def load(self, cookie_value: str | None) -> BrowserSession | None:
        """Return the live session for a cookie, enforcing both timeouts."""
        if not cookie_value or len(cookie_value) > 128:
            return None
        key = hash_token(cookie_value)
        raw = self.store.get(f"session:{key}")
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        s = BrowserSession(key=key, **data)
        now = int(self.clock())
        if now - s.last_seen > self.idle_timeout or now - s.created_at > self.absolute_timeout:
            self._delete(s)
            return None
        if now - s.last_seen >= _TOUCH_EVERY:
            s.last_seen = now
            self._save(s, now)
        return s

    def establish(
        self,
        user_id: int,
        method: str,
        *,
        previous: BrowserSession | None = None,
        amr: tuple[str, ...] | list[str] = (),
    ) -> tuple[str, BrowserSession]:
        """Record that *method* (``"pwd"`` or a factor type) passed, with the RFC 8176
        *amr* values it earned, and return a NEW cookie value (session id rotation).

        Passing the previous session of the same user keeps its methods (a second
        factor after the password); a different user starts from nothing.
        """
        now = int(self.clock())
        cookie = secrets.token_urlsafe(32)
        keep = previous if previous is not None and previous.user_id == user_id else None
        s = BrowserSession(
            user_id=user_id,
            sid=keep.sid if keep else secrets.token_hex(16),
            created_at=keep.created_at if keep else now,
            last_seen=now,
            auth_time=now,
            methods=dict(keep.methods) if keep else {},
            amr=list(keep.amr) if keep else [],
            key=hash_token(cookie),
        )
        s.methods[method] = now
        s.amr = amr_for(s.methods, [*s.amr, *(amr or ((method,) if method == "pwd" else ()))])
        if previous is not None:
            self._delete(previous)
        self._save(s, now)
        self.store.add_to_set(f"user_sessions:{user_id}", s.key, self.absolute_timeout)
        return cookie, s

    def _delete(self, s: BrowserSession) -> None:
        self.store.delete(f"session:{s.key}")
        self.store.remove_from_set(f"user_sessions:{s.user_id}", s.key)

    def destroy(self, s: BrowserSession) -> None:
        self._delete(s)

    def destroy_all(self, user_id: int) -> int:
        """End every session of a user (password reset, help-desk action, MFA reset)."""
        keys = self.store.members(f"user_sessions:{user_id}")
        if keys:
            self.store.delete(*(f"session:{k}" for k in keys))
        self.store.delete(f"user_sessions:{user_id}")
        return len(keys)

    def count_for(self, user_id: int) -> int:
        keys = self.store.members(f"user_sessions:{user_id}")
        return sum(1 for k in keys if self.store.get(f"session:{k}") is not None)
