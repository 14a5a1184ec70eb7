"""``/admin/audit``: the audit trail with filters (user, client, event type, time range)
and export as JSON lines or CSV (streamed, oldest first)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from typing import Any

from flask import Response, request, stream_with_context

from .. import audit
from ..extensions import db
from ..models import AuditEvent, User
from ..security.text import ascii_int
from .access import Staff, staff_only
from .views import bp, render

PAGE = 100
FIELDS = ("id", "at", "event", "outcome", "user_id", "client_id", "ip", "user_agent",
          "details", "prev_hash", "hash")  # fmt: skip


class FilterError(ValueError):
    pass


def _date(name: str, end: bool = False) -> dt.datetime | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        day = dt.date.fromisoformat(raw)
    except ValueError:
        raise FilterError(f"{name}: use a date like 2026-01-31") from None
    at = dt.datetime.combine(day, dt.time(), dt.UTC)
    return at + dt.timedelta(days=1) if end else at


def _filters() -> tuple[list[Any], dict[str, str]]:
    """SQL conditions from the query string (and the values to show in the form)."""
    args = {k: request.args.get(k, "").strip()[:200] for k in ("user", "client", "event",
                                                              "since", "until")}  # fmt: skip
    conds: list[Any] = []
    if args["user"]:
        if ascii_int(args["user"], max_digits=9) is not None:
            conds.append(AuditEvent.user_id == int(args["user"]))
        else:
            uid = db.session.execute(
                db.select(User.id).filter_by(email=User.normalize_email(args["user"]))
            ).scalar()
            conds.append(AuditEvent.user_id == (uid if uid is not None else -1))
    if args["client"]:
        conds.append(AuditEvent.client_id == args["client"])
    if args["event"]:
        if args["event"].endswith("*"):
            prefix = args["event"][:-1].replace("%", "").replace("_", "\\_")
            conds.append(AuditEvent.event.like(prefix + "%", escape="\\"))
        else:
            conds.append(AuditEvent.event == args["event"])
    since, until = _date("since"), _date("until", end=True)
    if since:
        conds.append(AuditEvent.at >= since)
    if until:
        conds.append(AuditEvent.at < until)
    return conds, args


def _row(e: AuditEvent) -> dict[str, Any]:
    return {
        "id": e.id, "at": e.at.isoformat(), "event": e.event, "outcome": e.outcome,
        "user_id": e.user_id, "client_id": e.client_id, "ip": e.ip,
        "user_agent": e.user_agent, "details": e.details, "prev_hash": e.prev_hash,
        "hash": e.hash,
    }  # fmt: skip


def _iter(conds: list[Any]) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(db.session.execute(
            db.select(AuditEvent).where(*conds, AuditEvent.id > last)
            .order_by(AuditEvent.id).limit(500)
        ).scalars())  # fmt: skip
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def _cell(value: Any) -> Any:
    """Neutralise spreadsheet formulas (CSV injection) in exported text."""
    if isinstance(value, dict):
        value = json.dumps(value, sort_keys=True)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _export(fmt: str, conds: list[Any], staff: Staff) -> Response:
    audit.record_now("admin.audit_exported", user_id=staff.user.id, actor=staff.actor,
                     format=fmt)  # fmt: skip
    audit.seal()  # the export carries every event's link, its own included

    def jsonl() -> Iterator[str]:
        for e in _iter(conds):
            yield json.dumps(_row(e), sort_keys=True) + "\n"

    def as_csv() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(FIELDS)
        for e in _iter(conds):
            row = _row(e)
            writer.writerow([_cell(row[f]) for f in FIELDS])
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
        yield buf.getvalue()

    body, mimetype, ext = (
        (jsonl(), "application/x-ndjson", "jsonl")
        if fmt == "jsonl"
        else (as_csv(), "text/csv", "csv")
    )
    return Response(
        stream_with_context(body),
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="audit.{ext}"',
            "Cache-Control": "no-store",
        },
    )


@bp.get("/audit", endpoint="audit")
@staff_only("admin")
def audit_trail(staff: Staff) -> Response:
    try:
        conds, args = _filters()
    except FilterError as exc:
        return render("admin/audit.html", staff, status=400, events=[], args=request.args,
                      error=str(exc), more=None)  # fmt: skip
    fmt = request.args.get("format")
    if fmt in ("jsonl", "csv"):
        return _export(fmt, conds, staff)
    audit.seal()  # show the chain as it stands, without an unsealed tail
    before = request.args.get("before", "")
    before_id = ascii_int(before)
    page_conds = [*conds, AuditEvent.id < before_id] if before_id is not None else conds
    events = list(db.session.execute(
        db.select(AuditEvent).where(*page_conds).order_by(AuditEvent.id.desc()).limit(PAGE + 1)
    ).scalars())  # fmt: skip
    more = events[PAGE - 1].id if len(events) > PAGE else None
    return render("admin/audit.html", staff, events=events[:PAGE], args=args, error=None,
                  more=more)  # fmt: skip
