"""OpenID Connect Back-Channel Logout 1.0: telling applications that a browser session
ended, server to server.

What happens, in order:

1. **Recording** (:meth:`BackchannelLogout.record`). When an authorization code is
   exchanged, the client that receives the tokens is remembered under the browser
   session's ``sid``, if it registered a ``backchannel_logout_uri`` (section 2.2): one
   store key per (sid, client) holding the user's ``sub``, the set of clients of the sid
   and an index of such sids, all for the session's absolute lifetime plus two sweeps.
2. **The end of a session.** A session ended on purpose (RP-initiated logout, the
   "Sign out" button, a help-desk revocation, a password reset or change, the removal of
   a factor the session used) calls :meth:`sessions_ended` through the session
   manager's ``on_end`` hook, in the request that ended it. A session that simply
   expires (idle or absolute timeout: the store forgets it) is found by
   :meth:`sweep`, which looks at the indexed sids at most once per
   ``[backchannel_logout] sweep_interval`` across all instances (a store lock) and
   ends those whose session is gone: an application hears of an expiry up to that many
   seconds late.
3. **One logout token per client** (section 2.4, :func:`logout_token`). Each (sid,
   client) record is *taken* atomically from the store, so of several processes ending
   the same sid exactly one sends each token. The delivery is queued, never sent in the
   request: the user's sign-out does not wait for any application.
4. **Delivery** (section 2.5, :class:`Dispatcher`). One worker thread per process POSTs
   ``logout_token`` as a form to the client's ``backchannel_logout_uri`` under the
   outbound rules of :mod:`.outbound` (no redirects, short timeouts, at most 4 KiB of the
   answer read), signs a fresh token for each attempt, retries with exponential backoff
   (``retries``, ``retry_backoff``), and audits the outcome once:
   ``backchannel_logout.delivered`` or ``backchannel_logout.failed``. The queue holds
   at most ``queue_size`` deliveries (first attempts and waiting retries); a token that
   does not fit is not sent, and that is audited (``backchannel_logout.failed``,
   ``error="queue_full"``).

What can be lost: deliveries wait in the memory of the process that queued them. A
process that crashes loses its queue (at most ``queue_size`` deliveries, and no more
than the sessions it ended in the last few seconds while an application is healthy); a
process that exits cleanly gives its queue up to :data:`EXIT_DRAIN` seconds. The
records of sessions live in the store, so an expiry is still found by another
instance's sweep. docs/APIS.md says the same for operators.
"""

from __future__ import annotations

import atexit
import heapq
import itertools
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from ..store import Store
from . import outbound

if TYPE_CHECKING:
    from flask import Flask

    from ..auth.session import SessionManager
    from ..config import Settings
    from ..keys import KeyRing
    from ..models import OAuthClient, User

log = logging.getLogger("idp.backchannel")

#: Section 2.4: the one member of the ``events`` claim.
BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: Section 2.4: logout tokens are explicitly typed (RFC 8725 3.11).
LOGOUT_TOKEN_TYP = "logout+jwt"
#: Bytes of an application's answer read at most (it is logged, never parsed further).
ANSWER_LIMIT = 4096
#: Seconds a cleanly exiting process gives its queue.
EXIT_DRAIN = 10.0

_INDEX = "bcl_index"
_SWEEP_LOCK = "bcl_sweep"


def _clients_key(sid: str) -> str:
    return f"bcl_clients:{sid}"


def _record_key(sid: str, client_id: str) -> str:
    return f"bcl:{sid}:{client_id}"


def logout_token(
    keys: KeyRing,
    *,
    issuer: str,
    client_id: str,
    sub: str | None,
    sid: str | None,
    ttl: int,
    now: int | None = None,
) -> str:
    """A logout token (section 2.4): ``iss``, ``aud``, ``iat``, ``exp``, ``jti``,
    ``events`` with the back-channel logout event, ``sub`` and ``sid`` where known, and
    never a ``nonce``; signed with the provider's active key, header ``typ``
    ``logout+jwt``."""
    if not sub and not sid:
        raise ValueError("a logout token names a sub, a sid or both")
    now = int(time.time()) if now is None else now
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
        "events": {BACKCHANNEL_EVENT: {}},
    }
    if sub:
        claims["sub"] = sub
    if sid:
        claims["sid"] = sid
    return keys.sign_jwt(claims, typ=LOGOUT_TOKEN_TYP)


@dataclass(frozen=True)
class Delivery:
    """One logout token to send: to whom, about which session, and why it ended."""

    client_id: str
    uri: str
    sid: str
    sub: str | None
    user_id: int | None
    reason: str  # "ended" (on purpose) or "expired"
    attempt: int = 1


class DeliveryFailed(Exception):
    """An attempt that did not end with 200 (or 204) from the application."""


# -- the worker ----------------------------------------------------------------------

_DISPATCHERS: weakref.WeakSet[Dispatcher] = weakref.WeakSet()


@atexit.register
def _drain_at_exit() -> None:
    deadline = time.monotonic() + EXIT_DRAIN
    for dispatcher in list(_DISPATCHERS):
        dispatcher.drain(max(0.0, deadline - time.monotonic()))


def _after_fork_in_child() -> None:
    for dispatcher in list(_DISPATCHERS):
        dispatcher._forget_parent()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Dispatcher:
    """A bounded queue of deliveries worked by one daemon thread per process.

    ``send(item)`` delivers or raises (any exception is a failed attempt); a failed
    attempt is tried again after ``backoff * 2**(attempt - 1)`` seconds while attempts
    remain (``1 + retries`` in all); ``report(item, ok, detail)`` hears the outcome
    once. :meth:`submit` never blocks: it answers False when ``capacity`` deliveries
    (queued, waiting for a retry or in flight) are pending.

    The thread starts at the first :meth:`submit` and ends after :data:`IDLE_EXIT`
    seconds with nothing to do (a command or a test sends a few tokens and is done),
    unless :meth:`start` made it a serving worker: then it stays, and runs ``tick()``
    (the sweep) every ``tick_interval`` seconds. A forked child starts from an empty
    queue (what its parent queued is the parent's to send).
    """

    IDLE_EXIT = 5.0

    def __init__(
        self,
        send: Callable[[Delivery], None],
        report: Callable[[Delivery, bool, str], None],
        *,
        capacity: int,
        retries: int,
        backoff: float,
        tick: Callable[[], None] | None = None,
        tick_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.send, self.report, self.tick = send, report, tick
        self.capacity, self.retries, self.backoff = capacity, retries, backoff
        self.tick_interval = tick_interval
        self.clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Delivery]] = []
        self._pending = 0
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._serving = False
        self._stopped = False
        self._next_tick = 0.0

    @property
    def pending(self) -> int:
        """Deliveries queued, waiting for a retry or in flight."""
        with self._cond:
            return self._pending

    def start(self) -> None:
        """Make this a serving worker: the thread stays and runs the ticks."""
        with self._cond:
            self._serving, self._stopped = True, False
            self._next_tick = self.clock() + self.tick_interval
            self._ensure_thread()
            self._cond.notify_all()

    def submit(self, item: Delivery) -> bool:
        """Queue *item*; False (nothing queued) when the queue is full."""
        with self._cond:
            if self._pending >= self.capacity:
                return False
            self._push(self.clock(), item)
            self._pending += 1
            self._ensure_thread()
            self._cond.notify_all()
            return True

    def drain(self, timeout: float) -> bool:
        """Wait until nothing is pending (True) or *timeout* seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def stop(self) -> None:
        """End the thread after the current item (queued items stay queued)."""
        with self._cond:
            self._stopped, self._serving = True, False
            self._cond.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # -- the thread ------------------------------------------------------------------

    def _push(self, due: float, item: Delivery) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), item))

    def _ensure_thread(self) -> None:
        """Start the thread if none runs (call with the lock held)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="idp-backchannel", daemon=True)
        self._thread.start()
        _DISPATCHERS.add(self)

    def _forget_parent(self) -> None:
        self._cond = threading.Condition()
        self._heap, self._pending, self._thread = [], 0, None

    def _next(self) -> Delivery | str:
        """The next due item, or "tick", or "exit" (stopped, or idle and not serving)."""
        with self._cond:
            idle_since = None
            while not self._stopped:
                now = self.clock()
                if self._serving and self.tick is not None and now >= self._next_tick:
                    self._next_tick = now + self.tick_interval
                    return "tick"
                if self._heap and self._heap[0][0] <= now:
                    return heapq.heappop(self._heap)[2]
                waits = [self._heap[0][0] - now] if self._heap else []
                if self._serving and self.tick is not None:
                    waits.append(self._next_tick - now)
                if not self._serving and not self._pending:
                    idle_since = now if idle_since is None else idle_since
                    if now - idle_since >= self.IDLE_EXIT:
                        break
                    waits.append(self.IDLE_EXIT - (now - idle_since))
                else:
                    idle_since = None
                self._cond.wait(max(0.01, min(waits)) if waits else None)
            if self._thread is threading.current_thread():
                self._thread = None
            return "exit"

    def _run(self) -> None:
        while True:
            item = self._next()
            if item == "exit":
                return
            if item == "tick":
                self._tick()
            elif isinstance(item, Delivery):
                self._attempt(item)

    def _tick(self) -> None:
        if self.tick is None:
            return
        try:
            self.tick()
        except Exception:  # the sweep tries again at the next tick
            log.exception("back-channel logout sweep failed")

    def _attempt(self, item: Delivery) -> None:
        try:
            self.send(item)
        except Exception as exc:  # every failure is an attempt that did not succeed
            detail = str(exc) or type(exc).__name__
            if item.attempt <= self.retries:
                delay = self.backoff * 2 ** (item.attempt - 1)
                log.info("back-channel logout to %s failed (attempt %d, %s); retry in %.1f s",
                         item.client_id, item.attempt, detail, delay)  # fmt: skip
                with self._cond:
                    self._push(self.clock() + delay, replace(item, attempt=item.attempt + 1))
                    self._cond.notify_all()
                return
            self._finish(item, False, detail)
            return
        self._finish(item, True, "")

    def _finish(self, item: Delivery, ok: bool, detail: str) -> None:
        try:
            self.report(item, ok, detail)
        except Exception:
            log.exception("recording the back-channel logout outcome failed")
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()


# -- the service ---------------------------------------------------------------------


class BackchannelLogout:
    """Records which clients received tokens in which session, and sends them logout
    tokens when the session ends (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        sessions: SessionManager,
        keys: Callable[[], KeyRing],
    ) -> None:
        self.store = store
        self.settings = settings
        self.sessions = sessions
        self.keys = keys
        cfg = settings.backchannel_logout
        self.policy = outbound.OutboundPolicy(
            allow_loopback=not settings.is_production,
            allow_private=cfg.allow_private_networks,
            timeout=float(cfg.timeout),
            max_bytes=ANSWER_LIMIT,
        )
        # Records outlive the session by two sweeps, so the sweep finds every expiry.
        self.record_ttl = settings.session.absolute_timeout + 2 * cfg.sweep_interval + 60
        self._app: Flask | None = None
        self.dispatcher = Dispatcher(
            self._send,
            self._report,
            capacity=cfg.queue_size,
            retries=cfg.retries,
            backoff=float(cfg.retry_backoff),
            tick=self._sweep_in_app,
            tick_interval=float(cfg.sweep_interval),
        )

    def bind(self, app: Flask) -> None:
        """The application whose context the worker thread uses (database, audit)."""
        self._app = app

    def start(self) -> None:
        """Start the worker (and so the sweep) in a serving process."""
        self.dispatcher.start()

    # -- recording -------------------------------------------------------------------

    def record(self, sid: str | None, client: OAuthClient, user: User) -> None:
        """Remember that *client* received tokens in the browser session *sid*."""
        if not sid or not client.backchannel_logout_uri:
            return
        value = json.dumps({"sub": user.sub, "user_id": user.id}).encode()
        self.store.set(_record_key(sid, client.client_id), value, self.record_ttl)
        self.store.add_to_set(_clients_key(sid), client.client_id, self.record_ttl)
        self.store.add_to_set(_INDEX, sid, self.record_ttl)

    def clients_of(self, sid: str) -> set[str]:
        """The clients recorded for *sid* that have not been sent a logout token yet."""
        return self.store.members(_clients_key(sid))

    # -- ending --------------------------------------------------------------------------

    def sessions_ended(self, sids: list[str], *, reason: str = "ended") -> int:
        """Queue a logout token for every client recorded in the sessions *sids*;
        returns how many were queued. Call it in an app context; nothing here waits for
        an application."""
        return sum(self._end(sid, reason) for sid in sids)

    def _end(self, sid: str, reason: str) -> int:
        from .. import audit
        from ..extensions import db
        from ..models import OAuthClient

        queued = 0
        for client_id in sorted(self.store.members(_clients_key(sid))):
            raw = self.store.take(_record_key(sid, client_id))
            self.store.remove_from_set(_clients_key(sid), client_id)
            if raw is None:
                continue  # another process (or request) took it first
            facts = json.loads(raw)
            uri = db.session.execute(
                db.select(OAuthClient.backchannel_logout_uri).filter_by(client_id=client_id)
            ).scalar_one_or_none()
            if not uri:
                continue  # the client is gone or no longer wants logout tokens
            item = Delivery(client_id, uri, sid, facts.get("sub"), facts.get("user_id"), reason)
            if self.dispatcher.submit(item):
                queued += 1
                continue
            log.error("back-channel logout queue full: no logout token for %s", client_id)
            audit.record("backchannel_logout.failed", outcome="failure",
                         user_id=item.user_id, client_id=client_id, sid=sid, reason=reason,
                         attempts=0, error="queue_full")  # fmt: skip
        self.store.remove_from_set(_INDEX, sid)
        return queued

    def sweep(self) -> int:
        """End the indexed sessions that expired; returns how many logout tokens were
        queued. Runs at most once per ``sweep_interval`` across every process sharing
        the store (a lock in the store), in an app context."""
        from ..extensions import db

        interval = self.settings.backchannel_logout.sweep_interval
        if not self.store.set_if_absent(_SWEEP_LOCK, str(os.getpid()).encode(), interval):
            return 0
        queued = 0
        for sid in self.store.members(_INDEX):
            # Asked twice: a session whose id rotates between the two reads of one
            # is_alive call can look gone for an instant.
            if self.sessions.is_alive(sid) or self.sessions.is_alive(sid):
                continue
            queued += self._end(sid, "expired")
        db.session.commit()  # the queue_full audit events, if any
        return queued

    def _sweep_in_app(self) -> None:
        if self._app is None:
            return
        with self._app.app_context():
            self.sweep()

    # -- delivery ----------------------------------------------------------------------

    def _send(self, item: Delivery) -> None:
        """One attempt (section 2.5): POST ``logout_token``; 200 is success (and 204,
        which some frameworks answer instead; section 2.8)."""
        token = logout_token(
            self.keys(),
            issuer=self.settings.issuer,
            client_id=item.client_id,
            sub=item.sub,
            sid=item.sid,
            ttl=self.settings.backchannel_logout.token_ttl,
        )
        resp = outbound.request(
            "POST", item.uri, self.policy, form={"logout_token": token}, truncate=True
        )
        if resp.status not in (200, 204):
            shown = resp.body[:200].decode("utf-8", "replace").replace("\n", " ")
            raise DeliveryFailed(f"answered HTTP {resp.status}: {shown}".rstrip(": "))

    def _report(self, item: Delivery, ok: bool, detail: str) -> None:
        from .. import audit

        if self._app is None:
            log.warning("back-channel logout to %s: %s", item.client_id, "sent" if ok else detail)
            return
        with self._app.app_context():
            if ok:
                audit.record("backchannel_logout.delivered", user_id=item.user_id,
                             client_id=item.client_id, sid=item.sid, reason=item.reason,
                             attempts=item.attempt)  # fmt: skip
            else:
                audit.record("backchannel_logout.failed", outcome="failure",
                             user_id=item.user_id, client_id=item.client_id, sid=item.sid,
                             reason=item.reason, attempts=item.attempt,
                             error=detail[:300])  # fmt: skip
            from ..extensions import db

            db.session.commit()
