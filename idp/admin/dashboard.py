"""``/admin/mfa``: the MFA adoption dashboard, the export of users without MFA, and
the "send reminder" batches; ``/admin/api/...``: the same figures as JSON."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

from flask import Response, current_app, jsonify, request, stream_with_context
from markupsafe import Markup

from .. import audit
from ..extensions import db
from ..security.text import ascii_int
from ..services import services
from . import service
from .access import Staff, staff_only
from .chart import enrollment_svg
from .views import bp, render


def _svg(figures: service.Adoption) -> Markup:
    svg = enrollment_svg(figures.series, today=figures.today, deadline=figures.enforce_from,
                         target=figures.active_users)  # fmt: skip
    return Markup(svg)  # noqa: S704  (numbers, ISO dates and escaped text only)


def _interval() -> str:
    seconds = services().settings.admin.reminder_interval
    if seconds % 86400 == 0:
        days = seconds // 86400
        return f"{days} day{'' if days == 1 else 's'}"
    hours = max(1, seconds // 3600)
    return f"{hours} hour{'' if hours == 1 else 's'}"


def _names() -> dict[str, str]:
    return {t: impl.display_name for t, impl in current_app.extensions["idp.mfa"].registry.items()}


@bp.get("/mfa")
@staff_only()
def mfa(staff: Staff) -> Response:
    figures = service.adoption()
    return render("admin/mfa.html", staff, f=figures, names=_names(), chart=_svg(figures),
                  due=service.reminders_due(), batch=None, interval=_interval())  # fmt: skip


@bp.post("/mfa/remind")
@staff_only()
def mfa_remind(staff: Staff) -> Response:
    """Send one batch; the page shows the progress and a button for the next batch."""
    raw = request.form.get("sent_so_far", "0")
    so_far = ascii_int(raw, max_digits=9) or 0
    result = service.send_reminder_batch(actor=staff.actor)
    figures = service.adoption()
    batch = {"sent": result.sent, "failed": result.failed, "total_sent": so_far + result.sent,
             "remaining": result.remaining}  # fmt: skip
    return render("admin/mfa.html", staff, f=figures, names=_names(), chart=_svg(figures),
                  due=result.remaining, batch=batch, interval=_interval())  # fmt: skip


def _cell(value: str | None) -> str:
    value = value or ""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


@bp.get("/mfa/without-mfa.csv")
@staff_only()
def mfa_export(staff: Staff) -> Response:
    """Active users without a second factor, as CSV (email, name, created, last sign-in,
    last reminder)."""
    audit.record_now("admin.without_mfa_exported", user_id=staff.user.id, actor=staff.actor)

    def rows() -> Iterator[str]:
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["email", "name", "created_at", "last_login_at", "mfa_reminded_at"])
        query = service.users_without_mfa_query().execution_options(yield_per=500)
        for u in db.session.execute(query).scalars():
            writer.writerow([
                _cell(u.email), _cell(u.name), u.created_at.isoformat(),
                u.last_login_at.isoformat() if u.last_login_at else "",
                u.mfa_reminded_at.isoformat() if u.mfa_reminded_at else "",
            ])  # fmt: skip
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()

    return Response(
        stream_with_context(rows()),
        mimetype="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="users-without-mfa.csv"',
            "Cache-Control": "no-store",
        },  # fmt: skip
    )


# -- JSON API (same session and step-up rules; errors as JSON) ---------------------------


@bp.get("/api/mfa")
@staff_only(api=True)
def api_mfa(staff: Staff) -> Response:
    f = service.adoption()
    resp = jsonify(
        active_users=f.active_users,
        with_at_least_one_factor=f.with_one,
        with_at_least_two_factors=f.with_two,
        without_mfa=f.without,
        by_type=f.by_type,
        enforce_from=f.enforce_from.isoformat() if f.enforce_from else None,
        days_left=f.days_left,
        reminders_due=service.reminders_due(),
        enrollments=[{"date": d.isoformat(), "cumulative": n} for d, n in f.series],
    )
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/api/users")
@staff_only(api=True)
def api_users(staff: Staff) -> Response:
    users = service.search_users(request.args.get("q", ""))
    resp = jsonify(users=[{"id": u.id, "email": u.email, "name": u.name, "status": u.status,
                           "role": u.role} for u in users])  # fmt: skip
    resp.headers["Cache-Control"] = "no-store"
    return resp
