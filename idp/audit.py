"""Audit log service: every security-relevant event, with who, from where and which client.

Events are added to the current database session and committed with the change they
describe, so an event is never recorded for work that was rolled back (and vice versa).
Use :func:`record_now` for failures, where nothing else is committed.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import has_request_context, request

from .extensions import db
from .models import AuditEvent

log = logging.getLogger("idp.audit")


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
        event=event,
        outcome=outcome,
        user_id=user_id,
        client_id=client_id,
        ip=ip,
        user_agent=ua,
        details={k: v for k, v in details.items() if v is not None},
    )
    db.session.add(entry)
    log.info("audit %s %s user=%s client=%s %s", event, outcome, user_id, client_id, entry.details)
    return entry


def record_now(event: str, **kwargs: Any) -> None:
    """Record and commit at once (for failures where nothing else is committed)."""
    record(event, **kwargs)
    db.session.commit()
