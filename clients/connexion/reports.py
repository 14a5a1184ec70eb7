"""Form C reports: the fields, their validation and their storage in SQLite.

The same :func:`validate` serves the web form (error messages shown next to each
field) and the API (the messages returned as JSON), so the two cannot disagree.
Storage is plain ``sqlite3``: one table, ``form_c_reports``, created on start-up, and
a connection per call (safe with a threaded server).
"""

from __future__ import annotations

import re
import secrets
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from flask_babel import gettext as _

from .assurance import utc_time
from .due_dates import (
    form_c_due_date,
    next_form_c_period,
    period_code,
    period_label,
    period_start_from_code,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS form_c_reports (
    id INTEGER PRIMARY KEY,
    confirmation TEXT NOT NULL UNIQUE,
    sub TEXT NOT NULL,
    supplier_number TEXT NOT NULL,
    period TEXT NOT NULL,
    subcontractors INTEGER NOT NULL,
    total_purchases_cents INTEGER NOT NULL,
    acr TEXT,
    auth_time INTEGER,
    submitted_at TEXT NOT NULL
)
"""

MAX_SUBCONTRACTORS = 9999
MAX_CENTS = 99_999_999_999  # $999,999,999.99
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class Period:
    code: str  # "2026-H2"
    label: str  # "July–December 2026"
    due: date


@dataclass(frozen=True)
class FormC:
    supplier_number: str
    period: str
    subcontractors: int
    total_purchases_cents: int


def periods(today: date) -> list[Period]:
    """The periods a report may be filed for: the one due next and the one before it
    (a late report)."""
    start = next_form_c_period(today)
    before = date(start.year - 1, 7, 1) if start.month == 1 else date(start.year, 1, 1)
    return [Period(period_code(s), period_label(s), form_c_due_date(s)) for s in (start, before)]


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() in ("on", "true", "yes"))


def validate(data: Mapping[str, Any], today: date) -> tuple[FormC | None, dict[str, str]]:
    """Check submitted fields (form strings or JSON values). Returns the report, or
    ``None`` and ``{field: message}``."""
    errors: dict[str, str] = {}

    supplier = re.sub(r"[\s-]", "", str(data.get("supplier_number") or ""))
    if not re.fullmatch(r"\d{10}", supplier):
        errors["supplier_number"] = _(
            "Enter your 10-digit supplier number, for example 1234567890."
        )

    period = str(data.get("period") or "")
    if period not in {p.code for p in periods(today)}:
        errors["period"] = _("Choose the reporting period.")

    raw_count = data.get("subcontractors")
    count = -1
    if isinstance(raw_count, int) and not isinstance(raw_count, bool):
        count = raw_count
    elif isinstance(raw_count, str) and raw_count.strip().isdigit():
        count = int(raw_count.strip())
    if not 0 <= count <= MAX_SUBCONTRACTORS:
        errors["subcontractors"] = _(
            "Enter the number of subcontractors as a whole number from 0 to %(max)s.",
            max=MAX_SUBCONTRACTORS,
        )

    raw_amount = data.get("total_purchases")
    cents = -1
    if isinstance(raw_amount, str | int | float) and not isinstance(raw_amount, bool):
        text = str(raw_amount).strip().lstrip("$").replace(",", "")
        try:
            amount = Decimal(text)
            if amount.is_finite() and amount == amount.quantize(Decimal("0.01")):
                cents = int(amount * 100)
        except InvalidOperation:
            pass
    if not 0 <= cents <= MAX_CENTS:
        errors["total_purchases"] = _(
            "Enter the total purchases in dollars, for example 12500 or 12,500.00."
        )

    if not _truthy(data.get("certified")):
        errors["certified"] = _("Check the box to certify that the report is accurate.")

    if errors:
        return None, errors
    return FormC(supplier, period, count, cents), {}


def init_db(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute(SCHEMA)
    conn.close()


def _confirmation(period: str) -> str:
    suffix = "".join(secrets.choice(_CROCKFORD) for _ in range(10))
    return f"FC-{period.replace('-', '')}-{suffix}"


def save(path: str, report: FormC, *, sub: str, acr: str | None, auth_time: Any) -> str:
    """Store *report*; returns its confirmation number."""
    confirmation = _confirmation(report.period)
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute(
                "INSERT INTO form_c_reports (confirmation, sub, supplier_number, period,"
                " subcontractors, total_purchases_cents, acr, auth_time, submitted_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    confirmation,
                    sub,
                    report.supplier_number,
                    report.period,
                    report.subcontractors,
                    report.total_purchases_cents,
                    acr,
                    auth_time if isinstance(auth_time, int) else None,
                    datetime.now(UTC).isoformat(timespec="seconds"),
                ),
            )
    finally:
        conn.close()
    return confirmation


def find(path: str, confirmation: str, sub: str) -> dict[str, Any] | None:
    """The report with this confirmation number, if *sub* filed it."""
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute(
            "SELECT * FROM form_c_reports WHERE confirmation = ? AND sub = ?", (confirmation, sub)
        ).fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    out = dict(row)
    out["period_label"] = period_label(period_start_from_code(out["period"]))
    out["total_purchases"] = f"${out['total_purchases_cents'] / 100:,.2f}"
    # Dates in words on the page ("December 4, 2026, 3:05 p.m. UTC"), not ISO 8601.
    out["submitted_text"] = utc_time(datetime.fromisoformat(out["submitted_at"]).timestamp())
    return out
