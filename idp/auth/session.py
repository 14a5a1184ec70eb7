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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ..security.crypto import hash_token
from ..store import Store
from .assurance import DEFAULT_AMR, amr_for, has_first_step

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
    # method -> time it last passed in this session, e.g. {"pwd": 1700000000}; a
    # sign-in with a passkey alone passes "passkey" (the first step) and "webauthn"
    methods: dict[str, int] = field(default_factory=dict)
    # method -> the RFC 8176 values its last pass earned (a security key: ["hwk", "user"])
    method_amr: dict[str, list[str]] = field(default_factory=dict)
    # method -> ids of the factors of that type passed in this session: removing one of
    # them ends the session (and the tokens it earned).
    method_factors: dict[str, list[int]] = field(default_factory=dict)
    # The application this session last signed in to ("Back to ..." on the account pages).
    last_client: str = ""
    key: str = ""  # store key suffix (hash of the cookie value); not persisted

    def method_age(self, method: str, now: int) -> int | None:
        at = self.methods.get(method)
        return None if at is None else now - at

    def assurance(self, methods: Iterable[str]) -> Assurance:
        """``auth_time``, ``amr`` and factor ids of *methods* only: the methods that
        satisfy one authorization request (OIDC Core 2; RFC 8176 section 2).

        ``auth_time`` is the time of the OLDEST method counted, so a relying party that
        checks it against its ``max_age`` sees the age of every method behind ``acr``.
        """
        counted = [m for m in methods if m in self.methods]
        if not counted:
            return Assurance(self.auth_time, (), ())
        values: list[str] = []
        ids: list[int] = []
        for m in counted:
            values.extend(self.method_amr.get(m) or DEFAULT_AMR.get(m, ()))
            ids.extend(self.method_factors.get(m, ()))
        return Assurance(
            auth_time=min(self.methods[m] for m in counted),
            amr=tuple(amr_for(counted, values)),
            factor_ids=tuple(sorted(set(ids))),
        )


@dataclass(frozen=True)
class Assurance:
    """What one authorization request may assert about how the user authenticated."""

    auth_time: int
    amr: tuple[str, ...]
    factor_ids: tuple[int, ...]


_FIELDS = {f for f in BrowserSession.__dataclass_fields__ if f != "key"}


class SessionManager:
    def __init__(
        self,
        store: Store,
        *,
        idle_timeout: int,
        absolute_timeout: int,
        clock: Callable[[], float] = time.time,
        on_end: Callable[[int, list[str]], None] | None = None,
    ):
        self.store = store
        self.idle_timeout = idle_timeout
        self.absolute_timeout = absolute_timeout
        self.clock = clock
        # Called with (user id, ended sids) when sessions are ended on purpose (sign-out,
        # revocation, password reset, factor removal): the grants bound to those sessions
        # end with them. The caller commits. (Expiry needs no call: a session-bound
        # refresh token checks :meth:`is_alive` at every use, and the back-channel
        # logout sweep, idp.oidc.backchannel, finds expired sessions by their sid.)
        self.on_end = on_end

    def _ttl(self, s: BrowserSession, now: int) -> int:
        return max(1, min(self.idle_timeout, s.created_at + self.absolute_timeout - now))

    def _save(self, s: BrowserSession, now: int, *, record_only: bool = False) -> None:
        """Write the record and the sid's entry with one lifetime. With *record_only* the
        record alone is rewritten, keeping the expiry both got at the last full save
        (``last_seen``), so it never outlives the sid's entry."""
        data = dict(vars(s))  # flat JSON values: no deep copy (dataclasses.asdict)
        data.pop("key")
        if record_only:
            ttl = max(1, s.last_seen + self._ttl(s, s.last_seen) - now)
        else:
            ttl = self._ttl(s, now)
        self.store.set(f"session:{s.key}", json.dumps(data).encode(), ttl)
        if not record_only:
            # sid -> store key, with the same lifetime: a refresh token bound to this
            # session asks whether it is alive with one read.
            self.store.set(f"session_sid:{s.sid}", s.key.encode(), ttl)

    def is_alive(self, sid: str | None) -> bool:
        """True while the browser session with public id *sid* exists (not signed out,
        not revoked, within its idle and absolute timeouts)."""
        if not sid:
            return False
        key = self.store.get(f"session_sid:{sid}")
        return key is not None and self.store.get(f"session:{key.decode()}") is not None

    def load(self, cookie_value: str | None) -> BrowserSession | None:
        """Return the live session for a cookie, enforcing both timeouts."""
        if not cookie_value or len(cookie_value) > 128:
            return None
        key = hash_token(cookie_value)
        raw = self.store.get(f"session:{key}")
        if raw is None:
            return None
        data: dict[str, Any] = json.loads(raw)
        s = BrowserSession(key=key, **{k: v for k, v in data.items() if k in _FIELDS})
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
        factor_id: int | None = None,
        also: tuple[str, ...] = (),
    ) -> tuple[str, BrowserSession]:
        """Record that *method* (``"pwd"``, ``"passkey"`` or a factor type; *factor_id*
        names the factor) passed, with the RFC 8176 *amr* values it earned, and return a
        NEW cookie value (session id rotation). The methods in *also* passed in the same
        act with the same values (a passkey sign-in: ``"passkey"`` also passes
        ``"webauthn"``).

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
            method_amr={k: list(v) for k, v in keep.method_amr.items()} if keep else {},
            method_factors={k: list(v) for k, v in keep.method_factors.items()} if keep else {},
            last_client=keep.last_client if keep else "",
            key=hash_token(cookie),
        )
        earned = list(amr or DEFAULT_AMR.get(method, ()))
        for name in (method, *also):
            s.methods[name] = now
            s.method_amr[name] = list(earned)
            if factor_id is not None and factor_id not in s.method_factors.get(name, []):
                s.method_factors.setdefault(name, []).append(factor_id)
        s.amr = amr_for(s.methods, [*s.amr, *earned])
        # The new record first, then the old one goes: a session that keeps its sid is
        # never seen as ended in between (the back-channel logout sweep asks).
        self._save(s, now)
        if previous is not None:
            self._delete(previous, keep_sid=previous.sid == s.sid)
        self.store.add_to_set(f"user_sessions:{user_id}", s.key, self.absolute_timeout)
        return cookie, s

    def note_client(self, s: BrowserSession, client_id: str) -> None:
        """Remember the application this session just signed in to (written only when
        it changes)."""
        if s.last_client != client_id:
            s.last_client = client_id
            self._save(s, int(self.clock()), record_only=True)

    def _delete(self, s: BrowserSession, *, keep_sid: bool = False) -> None:
        """Forget the record *s*; with *keep_sid* its sid lives on in a rotated record."""
        if keep_sid:
            self.store.delete(f"session:{s.key}")
        else:
            self.store.delete(f"session:{s.key}", f"session_sid:{s.sid}")
        self.store.remove_from_set(f"user_sessions:{s.user_id}", s.key)

    def _ended(self, user_id: int, sids: list[str]) -> None:
        if sids and self.on_end is not None:
            self.on_end(user_id, sids)

    def destroy(self, s: BrowserSession) -> None:
        """End one session (sign-out) and the grants bound to it."""
        self._delete(s)
        self._ended(s.user_id, [s.sid])

    def sessions_of(self, user_id: int) -> list[BrowserSession]:
        """The user's live sessions."""
        out = []
        for key in self.store.members(f"user_sessions:{user_id}"):
            raw = self.store.get(f"session:{key}")
            if raw is not None:
                data = json.loads(raw)
                out.append(BrowserSession(key=key, **{k: data[k] for k in data if k in _FIELDS}))
        return out

    def destroy_all(self, user_id: int) -> int:
        """End every session of a user (password reset, help-desk action, MFA reset)
        and the grants bound to them."""
        keys = self.store.members(f"user_sessions:{user_id}")
        sids = [s.sid for s in self.sessions_of(user_id)]
        if keys:
            self.store.delete(*(f"session:{k}" for k in keys))
        if sids:
            self.store.delete(*(f"session_sid:{sid}" for sid in sids))
        self.store.delete(f"user_sessions:{user_id}")
        self._ended(user_id, sids)
        return len(keys)

    def destroy_using_factor(self, user_id: int, factor_id: int, *, keep: str | None = None) -> int:
        """End every session of the user in which factor *factor_id* passed (it is being
        removed: what it earned ends with it), except the session with sid *keep*."""
        ended = []
        for s in self.sessions_of(user_id):
            if s.sid != keep and any(factor_id in ids for ids in s.method_factors.values()):
                self._delete(s)
                ended.append(s.sid)
        self._ended(user_id, ended)
        return len(ended)

    def forget_factor(
        self, s: BrowserSession, factor_id: int
    ) -> tuple[str, BrowserSession | None] | None:
        """Rotate *s* into a session that no longer counts factor *factor_id* (removed
        while this browser was signed in); None when the session never used it. A
        method stays passed only if another factor of its type passed in the session.

        A session whose first step was that factor (a sign-in with that passkey alone)
        keeps no first step: it ends, with its grants, and ``("", None)`` is returned
        (the caller clears the cookie)."""
        if not any(factor_id in ids for ids in s.method_factors.values()):
            return None
        factors = {m: [i for i in ids if i != factor_id] for m, ids in s.method_factors.items()}
        dropped = {m for m, ids in factors.items() if not ids}
        if not has_first_step(m for m in s.methods if m not in dropped):
            self.destroy(s)
            return "", None
        now = int(self.clock())
        cookie = secrets.token_urlsafe(32)
        fresh = BrowserSession(
            user_id=s.user_id, sid=s.sid, created_at=s.created_at, last_seen=now,
            auth_time=s.auth_time,
            methods={m: t for m, t in s.methods.items() if m not in dropped},
            method_amr={m: list(v) for m, v in s.method_amr.items() if m not in dropped},
            method_factors={m: ids for m, ids in factors.items() if ids},
            key=hash_token(cookie),
        )  # fmt: skip
        fresh.amr = amr_for(fresh.methods, [v for vs in fresh.method_amr.values() for v in vs])
        self._save(fresh, now)
        self._delete(s, keep_sid=True)
        self.store.add_to_set(f"user_sessions:{s.user_id}", fresh.key, self.absolute_timeout)
        return cookie, fresh

    def count_for(self, user_id: int) -> int:
        keys = self.store.members(f"user_sessions:{user_id}")
        return sum(1 for k in keys if self.store.get(f"session:{k}") is not None)
