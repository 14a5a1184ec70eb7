"""``/admin/mfa``: the adoption figures for a seeded population, the SVG chart, the CSV
of users without MFA, and the reminder batches (each audited, never twice within
``[admin] reminder_interval``)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import threading
from datetime import timedelta

import pytest

from idp.extensions import db
from idp.models import Factor, User
from idp.models.base import utcnow
from idp.wording import long_date
from tests.conftest import make_settings
from tests.integration.test_admin_access import audit_events, signed_in


def today() -> dt.date:
    """Resolved when a test runs, never at collection (a run may cross midnight)."""
    return dt.datetime.now(dt.UTC).date()


def deadline() -> dt.date:
    return today() + timedelta(days=10)


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"enforce_from": deadline().isoformat()},
                         admin={"reminder_batch_size": 2})  # fmt: skip


def _days_ago(n: int) -> dt.datetime:
    return utcnow() - timedelta(days=n)


# email -> (status, [(factor type, factor status, days since activation)])
POPULATION = {
    "admin@example.com": ("active", [("webauthn", "active", 20)]),
    "u0@example.com": ("active", []),
    "u1@example.com": ("active", []),
    "u2@example.com": ("active", []),
    "u3@example.com": ("active", [("totp", "active", 10)]),
    "u4@example.com": ("active", [("webauthn", "active", 10)]),
    "u5@example.com": ("active", [("totp", "active", 5), ("recovery", "active", 4)]),
    "u6@example.com": ("active", [("totp", "active", 2), ("webauthn", "active", 2),
                                  ("recovery", "active", 1)]),
    "u7@example.com": ("active", [("totp", "pending", 0)]),  # never finished set-up
    "u8@example.com": ("disabled", [("totp", "active", 30)]),  # not counted at all
}  # fmt: skip
WITHOUT = ["u0@example.com", "u1@example.com", "u2@example.com", "u7@example.com"]


@pytest.fixture
def population(app, make_user):
    ids = {}
    for email, (status, factors) in POPULATION.items():
        role = "admin" if email.startswith("admin") else "user"
        uid = make_user(email, status=status, role=role)[0]
        ids[email] = uid
        with app.app_context():
            for n, (kind, fstatus, age) in enumerate(factors):
                at = _days_ago(age)
                db.session.add(Factor(user_id=uid, type=kind, label=f"{kind} {n}", status=fstatus,
                                      created_at=at,
                                      activated_at=at if fstatus == "active" else None,
                                      credential_id=f"cred-{uid}-{n}" if kind == "webauthn"
                                      else None))  # fmt: skip
            db.session.commit()
    return ids


@pytest.fixture
def admin(app, population):
    return signed_in(app, population["admin@example.com"], factor="webauthn")


def test_figures_for_a_seeded_population(admin, app):
    data = admin.get("/admin/api/mfa").json
    assert data["active_users"] == 9
    assert data["with_at_least_one_factor"] == 5
    assert data["with_at_least_two_factors"] == 2
    assert data["without_mfa"] == 4
    # Every factor type the deployment offers is listed, with 0 where nobody has one.
    assert {t: n for t, n in data["by_type"].items() if n} == {"webauthn": 3, "totp": 3,
                                                                "recovery": 2}  # fmt: skip
    assert set(data["by_type"]) >= set(app.extensions["idp.mfa"].registry)
    assert data["enforce_from"] == deadline().isoformat() and data["days_left"] == 10
    assert data["reminders_due"] == 4
    expected = [(20, 1), (10, 3), (5, 4), (2, 5)]
    assert data["enrollments"] == [
        {"date": (today() - timedelta(days=d)).isoformat(), "cumulative": n} for d, n in expected
    ]


def test_dashboard_page_and_svg_chart(admin):
    page = admin.get("/admin/mfa")
    assert page.status_code == 200
    text = page.text
    assert 'id="fig-active">9<' in text and 'id="fig-one">5 (56%)<' in text
    assert 'id="fig-two">2<' in text and 'id="fig-without">4<' in text
    assert f"{long_date(deadline())} (10 days left)" in text
    assert "Authenticator app: 3 users" in text
    svg = text[text.index("<svg") : text.index("</svg>")]
    assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
    assert f"enforcement {long_date(deadline())}" in svg
    assert "5 of 9 active users have a second sign-in step" in svg
    assert "<polyline" in svg and "<script" not in text and "style=" not in svg
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")  # no CDN
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]


def test_without_a_date_the_page_says_enforced_now(app, population, monkeypatch):
    from dataclasses import replace

    svc = app.extensions["idp"]
    monkeypatch.setattr(
        svc, "settings", replace(svc.settings, mfa=replace(svc.settings.mfa, enforce_from=""))
    )
    b = signed_in(app, population["admin@example.com"], factor="webauthn")
    assert "none set: MFA is enforced now" in b.get("/admin/mfa").text
    assert b.get("/admin/api/mfa").json["days_left"] is None


def test_csv_of_users_without_mfa(admin, app):
    resp = admin.get("/admin/mfa/without-mfa.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert "attachment" in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [r["email"] for r in rows] == WITHOUT
    assert audit_events(app, "admin.without_mfa_exported")[0].details["actor"].startswith("user:")


def _mail(app) -> list[dict]:
    path = app.extensions["idp"].settings.delivery.outbox
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _reminders(app) -> list[str]:
    return [m["to"] for m in _mail(app) if m["purpose"] == "admin.mfa_reminder"]


def test_reminders_go_out_in_batches_with_progress(admin, app, population):
    first = admin.post("/admin/mfa/remind")
    assert first.status_code == 200
    assert "Reminders: 2 of 4 sent" in first.text and "Send next batch" in first.text
    assert _reminders(app) == WITHOUT[:2]
    second = admin.post("/admin/mfa/remind", {"sent_so_far": "2"})
    assert "Reminders: 4 of 4 sent" in second.text
    assert "Every user due has been reminded" in second.text
    assert "Send next batch" not in second.text
    assert _reminders(app) == WITHOUT
    text = [m for m in _mail(app) if m["to"] == "u0@example.com"][0]["text"]
    assert f"From {long_date(deadline())} (10 days from now)" in text
    assert "http://localhost/account/security" in text
    sent = audit_events(app, "mfa.reminder_sent")
    assert [e.user_id for e in sent] == [population[e] for e in WITHOUT]
    assert {e.details["actor"] for e in sent} == {f"user:{population['admin@example.com']}"}


def test_reminders_are_idempotent_within_the_interval(admin, app, population):
    admin.post("/admin/mfa/remind")
    admin.post("/admin/mfa/remind")
    again = admin.post("/admin/mfa/remind")
    assert "Reminders: 0 of 0 sent" in again.text
    assert _reminders(app) == WITHOUT
    assert "0 users can be reminded now" in admin.get("/admin/mfa").text
    # Once the interval (7 days by default) has passed, the user is due again.
    with app.app_context():
        u = db.session.get(User, population["u1@example.com"])
        u.mfa_reminded_at = utcnow() - timedelta(days=7, minutes=1)
        db.session.commit()
    admin.post("/admin/mfa/remind")
    assert _reminders(app) == [*WITHOUT, "u1@example.com"]
    assert len(audit_events(app, "mfa.reminder_sent")) == 5


def test_two_administrators_at_once_never_double_send(app, population, backend):
    """Concurrent batches claim users with a conditional UPDATE: each user once."""
    if backend == "sqlite":
        pytest.skip("concurrent writers are a PostgreSQL matter")
    from dataclasses import replace

    from idp.admin import service

    svc = app.extensions["idp"]
    svc.settings = replace(svc.settings, admin=replace(svc.settings.admin, reminder_batch_size=10))
    results, errors = [], []

    def run() -> None:
        try:
            with app.test_request_context("/"):
                results.append(service.send_reminder_batch(actor="user:1").sent)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sum(results) == 4
    assert sorted(_reminders(app)) == WITHOUT


def test_a_failed_delivery_stays_due_and_is_audited(admin, app, population, monkeypatch):
    from idp.delivery import DeliveryError

    def refuse(message):
        raise DeliveryError("smtp down", reason="unavailable")

    monkeypatch.setattr(app.extensions["idp"].email, "send", refuse)
    resp = admin.post("/admin/mfa/remind")
    assert "could not be delivered" in resp.text
    failed = audit_events(app, "mfa.reminder_failed")
    assert len(failed) == 2 and failed[0].outcome == "failure"
    with app.app_context():
        assert db.session.get(User, population["u0@example.com"]).mfa_reminded_at is None
    monkeypatch.undo()
    admin.post("/admin/mfa/remind")
    assert _reminders(app) == WITHOUT[:2]


def test_helpdesk_may_send_reminders_but_users_may_not(app, population):
    user = signed_in(app, population["u0@example.com"])
    assert user.post("/admin/mfa/remind").status_code == 403
    assert _reminders(app) == []
