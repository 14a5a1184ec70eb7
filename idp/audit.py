"""Audit log service: every security-relevant event, with who, from where and which client.

Events are added to the current database session and committed with the change they
describe, so an event is never recorded for work that was rolled back (and vice versa).
Use :func:`record_now` for failures, where nothing else is committed.

Events are hash-chained (:mod:`idp.models.audit`): each new event stores the hash of
the one before it. On PostgreSQL a transaction-level advisory lock is taken before the
last hash is read, so concurrent writers append one after the other and never fork the
chain; it is released when the transaction ends. On SQLite writes are serialized by the
database, and the unique ``prev_hash`` refuses a fork outright. :func:`verify_chain`
walks the chain (``idp audit verify``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request
from sqlalchemy import text

from .extensions import db
from .models import AuditEvent
from .models.audit import GENESIS_HASH
from .models.base import utcnow
from .ops.metrics import observe_event

log = logging.getLogger("idp.audit")

# pg_advisory_xact_lock key for appending to the chain ("idp.audit" as a 63-bit integer).
CHAIN_LOCK_KEY = 0x6964702E61756469
_sequence = itertools.count()


def _last_hash() -> str:
    """The hash the next event chains to: the newest event of this transaction not yet
    flushed, else the newest row (read under the chain lock on PostgreSQL)."""
    if db.session.get_bind().dialect.name == "postgresql":
        # Flush first so that this transaction takes its row locks before the chain
        # lock, always in that order (no lock cycle between two writers).
        db.session.flush()
        db.session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK_KEY})
    pending = [e for e in db.session.new if isinstance(e, AuditEvent) and e.hash]
    if pending:
        return max(pending, key=lambda e: e.__dict__.get("_chain_seq", 0)).hash
    with db.session.no_autoflush:
        last = db.session.execute(
            db.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
        ).scalar()
    return last or GENESIS_HASH


def _request_facts() -> tuple[str | None, str | None]:
    if not has_request_context():
        return None, None
    ua = request.headers.get("User-Agent")
    return request.remote_addr, (ua[:400] if ua else None)


def record(
    event: str,
    *,
    outcome: str = "success",
    user_id: int | None = None,
    client_id: str | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit event to the current transaction (committed with it)."""
    ip, ua = _request_facts()
    entry = AuditEvent(
        at=utcnow(),
        event=event,
        outcome=outcome,
        user_id=user_id,
        client_id=client_id,
        ip=ip,
        user_agent=ua,
        details={k: v for k, v in details.items() if v is not None},
    )
    entry.prev_hash = _last_hash()
    entry.hash = entry.compute_hash(entry.prev_hash)
    entry.__dict__["_chain_seq"] = next(_sequence)
    db.session.add(entry)
    log.info("audit %s %s user=%s client=%s %s", event, outcome, user_id, client_id, entry.details)
    observe_event(event, outcome, entry.details)
    return entry


def record_now(event: str, **kwargs: Any) -> None:
    """Record and commit at once (for failures where nothing else is committed)."""
    record(event, **kwargs)
    db.session.commit()


@dataclass(frozen=True)
class ChainReport:
    """Result of :func:`verify_chain`: events checked, and the first broken link."""

    checked: int
    broken_id: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def _rows(batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(
            db.session.execute(
                db.select(AuditEvent).where(AuditEvent.id > last).order_by(AuditEvent.id)
                .limit(batch)
            ).scalars()
        )  # fmt: skip
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        db.session.expunge_all()


def verify_chain() -> ChainReport:
    """Walk the audit chain oldest first and report the first event whose stored hash
    does not match its content, or whose ``prev_hash`` is not the previous event's hash
    (a changed, inserted or deleted row)."""
    prev = GENESIS_HASH
    checked = 0
    for row in _rows():
        if row.prev_hash != prev:
            return ChainReport(checked, row.id, "prev_hash does not match the previous event")
        if row.hash != row.compute_hash(prev):
            return ChainReport(checked, row.id, "hash does not match the event's content")
        prev = row.hash
        checked += 1
    return ChainReport(checked)
