"""Audit events: who did what, from where, to which client.

Events form a hash chain: each row stores the SHA-256 of the previous row (``prev_hash``)
and its own ``hash`` over a canonical JSON of its fields and ``prev_hash``, so that
changing, inserting or deleting a row breaks every link after it (``idp audit verify``).
The chain is built by the sealer in batches (:func:`idp.audit.seal`); ``chain_seq`` is
an event's position in it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import db
from .base import UTCDateTime, utcnow

#: ``prev_hash`` of the first event of the chain.
GENESIS_HASH = "0" * 64


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None:  # SQLite hands back naive UTC values before the type decorator
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_digest(
    *,
    at: datetime,
    event: str,
    outcome: str,
    user_id: int | None,
    client_id: str | None,
    ip: str | None,
    user_agent: str | None,
    details: dict[str, Any] | None,
    prev_hash: str,
) -> str:
    """SHA-256 (hex) of the canonical JSON of an event and the previous event's hash.

    Canonical form (chain format 1): the fields above as one JSON object with sorted
    keys, no whitespace, UTF-8; ``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC.
    """
    body = {
        "v": 1,
        "at": _timestamp(at),
        "event": event,
        "outcome": outcome,
        "user_id": user_id,
        "client_id": client_id,
        "ip": ip,
        "user_agent": user_agent,
        "details": details or {},
        "prev_hash": prev_hash,
    }
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class AuditEvent(db.Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    outcome: Mapped[str] = mapped_column(String(16), default="success")  # success | failure
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    client_id: Mapped[str | None] = mapped_column(String(64), index=True)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Set by the sealer (idp.audit.seal), not by the writer: an event is inserted with
    # all three empty and chained a moment later. chain_seq is its position in the
    # chain; unique, like prev_hash, so two sealers can never both append (no fork).
    chain_seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    prev_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    hash: Mapped[str | None] = mapped_column(String(64))

    def compute_hash(self, prev_hash: str) -> str:
        return event_digest(
            at=self.at,
            event=self.event,
            outcome=self.outcome,
            user_id=self.user_id,
            client_id=self.client_id,
            ip=self.ip,
            user_agent=self.user_agent,
            details=self.details,
            prev_hash=prev_hash,
        )
