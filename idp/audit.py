"""Audit log service: every security-relevant event, with who, from where and which client.

Events are added to the current database session and committed with the change they
describe, so an event is never recorded for work that was rolled back (and vice versa).
Use :func:`record_now` for failures, where nothing else is committed.

Events are hash-chained (:mod:`idp.models.audit`), but not by the writer: an event is
inserted unsealed (no ``chain_seq``, ``prev_hash`` or ``hash``) and :func:`seal` chains
the committed unsealed events a moment later, oldest id first, in batches. So writing
an event costs one ``INSERT`` inside the caller's transaction, and concurrent writers
never wait for each other; the chain is appended by one sealer at a time (a
transaction-level advisory lock on PostgreSQL, a process lock plus the unique
``chain_seq`` and ``prev_hash`` elsewhere, which refuse a fork outright).

Sealing runs after a response is sent, at most once per ``[audit] seal_interval`` per
process, when the request recorded events; and before anything reads the chain
(:func:`verify_chain`, ``idp audit verify``, the admin audit pages). The unsealed tail is
at most a few seconds of events under traffic. It is no weaker than the sealed part
against someone who can write to the database: the chain has no secret, so such a
person could recompute it; what it gives is that any change made *without* recomputing
every later link is found (``idp audit verify``).

Deleting a user (``idp users delete``) pseudonymises their events instead of breaking the
chain (:func:`pseudonymise_user`): each sealed event of the user loses what identifies
the person (``user_id``, ``ip``, ``user_agent`` and free-text details; it keeps a keyed
pseudonym, ``user_ref``, so the deleted user's events still read as one trail) and is
marked ``redacted_by`` the ``user.deleted`` event recorded in the same transaction. That
event, chained after them, carries ``redaction_digest``: the SHA-256 over the ids and
chain hashes of the redacted contents. :func:`verify_chain` accepts a redacted event
whose link (``prev_hash``, ``hash``) is intact and whose redacted content matches the
digest of the ``user.deleted`` event it names; it reports any other change as before.
So the redaction itself is on the record, and changing a redacted event afterwards, or
marking an event redacted without a matching ``user.deleted``, breaks the chain.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, current_app, g, has_request_context, request
from sqlalchemy import bindparam, func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from .extensions import db
from .models import AuditEvent
from .models.audit import GENESIS_HASH, event_digest
from .models.base import utcnow
from .ops.logs import FIELDS_ATTRIBUTE
from .ops.metrics import observe_event

log = logging.getLogger("idp.audit")

# pg_advisory_xact_lock key for appending to the chain ("idp.audit" as a 63-bit integer).
CHAIN_LOCK_KEY = 0x6964702E61756469
SEAL_BATCH = 500
_EVENTS = AuditEvent.__table__
_HASHED = ("at", "event", "outcome", "user_id", "client_id", "ip", "user_agent", "details")


def _text(value: str | None, limit: int) -> str | None:
    """Text an event may carry from a request: NUL (which PostgreSQL text cannot hold)
    replaced, cut to the column's length, so no input can make an audit write fail."""
    if value is None:
        return None
    return str(value).replace("\x00", "\ufffd")[:limit]


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v) for v in value]
    return value


def _request_facts() -> tuple[str | None, str | None]:
    if not has_request_context():
        return None, None
    return _text(request.remote_addr, 64), _text(request.headers.get("User-Agent"), 400)


def record(
    event: str,
    *,
    outcome: str = "success",
    user_id: int | None = None,
    client_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit event to the current transaction (committed with it, sealed into
    the chain after the commit by :func:`seal`)."""
    ip, ua = _request_facts()
    entry = AuditEvent(
        at=utcnow(),
        event=event,
        outcome=outcome,
        user_id=user_id,
        client_id=_text(client_id, 64),
        ip=ip,
        user_agent=ua or None,
        details={k: _clean(v) for k, v in details.items() if v is not None},
    )
    db.session.add(entry)
    if has_request_context():
        g.audit_recorded = True
    _log_event(entry)
    observe_event(event, outcome, entry.details)
    return entry


def _log_event(entry: AuditEvent) -> None:
    """The event on the log stream: its facts as JSON fields (``audit``) of a JSON line,
    or as JSON text after the message in text logs, never a Python ``repr``."""
    fields = {"event": entry.event, "outcome": entry.outcome, "user_id": entry.user_id,
              "client_id": entry.client_id, "details": entry.details}  # fmt: skip
    details = json.dumps(entry.details, sort_keys=True, ensure_ascii=False, default=str)
    log.info(
        "audit %s %s user=%s client=%s %s", entry.event, entry.outcome,
        entry.user_id if entry.user_id is not None else "-", entry.client_id or "-", details,
        extra={FIELDS_ATTRIBUTE: {"audit": fields}},
    )  # fmt: skip


def record_now(event: str, **kwargs: Any) -> None:
    """Record and commit at once (for failures where nothing else is committed)."""
    record(event, **kwargs)
    db.session.commit()


# -- sealing -------------------------------------------------------------------------
class _Sealer:
    """Per-app state: when this process last sealed, and one sealer thread at a time."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.lock = threading.Lock()
        self.last = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


def _sealer() -> _Sealer:
    return current_app.extensions["idp.audit"]  # installed by init_audit (create_app)


def _digest(row: Any, prev_hash: str) -> str:
    """The chain hash of a row read back from the table (the sealer and the verifier
    hash the same stored values)."""
    return event_digest(**{name: getattr(row, name) for name in _HASHED}, prev_hash=prev_hash)


def _seal_batch(wait: bool, limit: int) -> int | None:
    """Chain up to *limit* unsealed events in one transaction of its own. ``None`` when
    another sealer holds the chain and *wait* is false."""
    with db.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            if wait:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK_KEY})
            elif not conn.execute(
                text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK_KEY}
            ).scalar():
                return None
        last = conn.execute(
            select(_EVENTS.c.chain_seq, _EVENTS.c.hash)
            .where(_EVENTS.c.chain_seq.is_not(None))
            .order_by(_EVENTS.c.chain_seq.desc())
            .limit(1)
        ).first()
        seq, prev = (last.chain_seq, last.hash) if last else (0, GENESIS_HASH)
        rows = conn.execute(
            select(_EVENTS.c.id, *(_EVENTS.c[name] for name in _HASHED))
            .where(_EVENTS.c.chain_seq.is_(None))
            .order_by(_EVENTS.c.id)
            .limit(limit)
        ).all()
        links = []
        for row in rows:
            seq += 1
            digest = _digest(row, prev)
            links.append({"row_id": row.id, "seq": seq, "prev": prev, "digest": digest})
            prev = digest
        if links:
            conn.execute(
                _EVENTS.update()
                .where(_EVENTS.c.id == bindparam("row_id"))
                .values(chain_seq=bindparam("seq"), prev_hash=bindparam("prev"),
                        hash=bindparam("digest")),
                links,
            )  # fmt: skip
        return len(links)


def seal(*, wait: bool = True, batches: int | None = None) -> int:
    """Chain every committed unsealed event, oldest id first; returns how many.

    With ``wait=False`` it gives way to a sealer already at work (in this process or,
    on PostgreSQL, in any instance) and returns 0. *batches* bounds the work (batches of
    :data:`SEAL_BATCH`); the rest waits for the next seal.
    """
    state = _sealer()
    if not state.lock.acquire(blocking=wait):
        return 0
    try:
        total = 0
        while True:
            try:
                done = _seal_batch(wait, SEAL_BATCH)
            except IntegrityError:
                # Another process appended the same position first (SQLite has no
                # advisory lock): nothing was written; the next seal continues.
                log.info("audit seal: another sealer appended first")
                return total
            if not done:
                return total
            total += done
            if done < SEAL_BATCH or (batches is not None and total >= batches * SEAL_BATCH):
                return total
    finally:
        state.lock.release()


def _seal_after(app: Flask) -> None:
    with app.app_context():
        try:
            # One batch (about 30 ms of this thread's time at most, measured in
            # docs/PERFORMANCE.md); a larger backlog goes to the next seals.
            seal(wait=False, batches=1)
        except OperationalError as exc:  # the database is down: the next seal catches up
            log.warning("audit seal failed: %s", exc)


def init_audit(app: Flask, interval: float) -> None:
    """Seal after responses of requests that recorded events, at most every *interval*
    seconds per process (after the response is sent, so no user waits for it)."""
    state = _Sealer(interval)
    app.extensions["idp.audit"] = state

    @app.after_request
    def _schedule_seal(resp: Response) -> Response:
        if g.pop("audit_recorded", False) and state.due():
            target = current_app._get_current_object()  # type: ignore[attr-defined]
            resp.call_on_close(lambda: _seal_after(target))
        return resp


def unsealed_count() -> int:
    return db.session.execute(
        select(func.count()).select_from(_EVENTS).where(_EVENTS.c.chain_seq.is_(None))
    ).scalar_one()


@dataclass(frozen=True)
class ChainReport:
    """Result of :func:`verify_chain`: events checked, and the first broken link."""

    checked: int
    broken_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_id is None


# -- pseudonymisation (right to erasure) -------------------------------------------------

#: Detail keys a pseudonymised event keeps: structured facts about what happened that
#: identify nobody. Everything else (labels, names, free-text reasons...) is dropped.
KEPT_DETAILS = frozenset({
    "acr", "action", "actor", "actor_role", "alg", "amr", "channel", "days_left",
    "devices", "endpoint", "expires_in", "factor", "factor_id", "failures", "fields",
    "format", "hours", "kind", "limit", "linked_push", "locks", "method", "purpose",
    "refresh", "removed", "revoked", "role", "scope", "second_factor", "seconds",
    "sessions", "sessions_ended", "target_role", "token_families", "trusted_browser", "uses",
    "via",
})  # fmt: skip
_CODE = re.compile(r"[a-z0-9_.:-]{1,64}")
REDACTED_BY = "redacted_by"
DELETION_EVENT = "user.deleted"


def user_ref(user_id: int, secret: str) -> str:
    """The pseudonym of a user in redacted events: ``u-`` and 16 hex characters of
    HMAC-SHA256 under the provider's secret key. The same for all of one user's events;
    without the key it cannot be linked back to the (deleted) id."""
    mac = hmac.new(secret.encode(), f"audit-user:{user_id}".encode(), hashlib.sha256)
    return "u-" + mac.hexdigest()[:16]


def _redacted(details: dict[str, Any] | None, ref: str, by: int | None) -> dict[str, Any]:
    kept: dict[str, Any] = {k: v for k, v in (details or {}).items() if k in KEPT_DETAILS}
    reason = (details or {}).get("reason")
    if isinstance(reason, str) and _CODE.fullmatch(reason):
        kept["reason"] = reason  # a reason code ("bad_password"), not a help-desk note
    kept["user_ref"] = ref
    if by is not None:
        kept[REDACTED_BY] = by
    return kept


def _redaction_digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def pseudonymise_user(user_id: int, *, secret: str, actor: str) -> tuple[AuditEvent, int]:
    """Pseudonymise the events of *user_id* in the current transaction and record the
    ``user.deleted`` event that vouches for it; returns it and the number of sealed
    events redacted. Call :func:`seal` before the transaction writes anything, so the
    user's events are in the chain (any event still unsealed is simply redacted and
    chained that way)."""
    ref = user_ref(user_id, secret)
    marker = AuditEvent(at=utcnow(), event=DELETION_EVENT, outcome="success", user_id=None,
                        details={"user_ref": ref, "actor": actor})  # fmt: skip
    db.session.add(marker)
    db.session.flush()
    lines = []
    rows = db.session.execute(
        select(AuditEvent).where(AuditEvent.user_id == user_id).order_by(AuditEvent.id)
    ).scalars()
    for row in rows:
        sealed = row.chain_seq is not None
        row.user_id, row.ip, row.user_agent = None, None, None
        row.details = _redacted(row.details, ref, marker.id if sealed else None)
        if sealed:
            lines.append(f"{row.id}:{row.compute_hash(row.prev_hash or '')}")
    marker.details = {**marker.details, "redacted_events": len(lines),
                      "redaction_digest": _redaction_digest(lines)}  # fmt: skip
    db.session.flush()
    _log_event(marker)
    return marker, len(lines)


def _rows(batch: int = 1000) -> Iterator[Any]:
    last = 0
    while True:
        rows = db.session.execute(
            select(_EVENTS.c.id, _EVENTS.c.chain_seq, _EVENTS.c.prev_hash, _EVENTS.c.hash,
                   *(_EVENTS.c[name] for name in _HASHED))
            .where(_EVENTS.c.chain_seq > last).order_by(_EVENTS.c.chain_seq).limit(batch)
        ).all()  # fmt: skip
        if not rows:
            return
        yield from rows
        last = rows[-1].chain_seq


def verify_chain() -> ChainReport:
    """Seal what is pending, then walk the audit chain oldest first and report the first
    event whose stored hash does not match its content, or whose ``prev_hash`` is not
    the previous event's hash (a changed, inserted or deleted row)."""
    seal()
    prev = GENESIS_HASH
    checked = 0
    redacted: dict[Any, list[str]] = {}  # user.deleted event id -> its redacted events
    for row in _rows():
        if row.prev_hash != prev:
            return ChainReport(checked, row.id, "prev_hash does not match the previous event")
        details = row.details if isinstance(row.details, dict) else {}
        if REDACTED_BY in details:
            # A pseudonymised event: its link stays; its content is vouched for by the
            # user.deleted event it names, checked when the walk reaches that event.
            redacted.setdefault(details[REDACTED_BY], []).append(f"{row.id}:{_digest(row, prev)}")
        elif row.hash != _digest(row, prev):
            return ChainReport(checked, row.id, "hash does not match the event's content")
        if row.event == DELETION_EVENT and "redaction_digest" in details:
            lines = redacted.pop(row.id, [])
            if (len(lines) != details.get("redacted_events")
                    or _redaction_digest(lines) != details["redaction_digest"]):  # fmt: skip
                return ChainReport(checked, row.id, "the events it pseudonymised do not match "
                                   "its redaction digest")  # fmt: skip
        prev = row.hash
        checked += 1
    for by, lines in redacted.items():
        first = int(lines[0].split(":", 1)[0])
        return ChainReport(checked, first, f"marked redacted by event {by!r}, which does not "
                           "vouch for it")  # fmt: skip
    return ChainReport(checked)
