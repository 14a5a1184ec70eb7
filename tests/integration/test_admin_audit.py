"""``/admin/audit``: filters (user, client, event type, time range) and export as JSON
lines and CSV; exports are audited and neutralise spreadsheet formulas."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest

from idp.extensions import db
from idp.models import AuditEvent
from idp.models.base import utcnow
from tests.integration import test_admin_access as access
from tests.integration.test_admin_access import audit_events, signed_in

# Fixtures shared with the other admin modules.
people = access.people
settings = access.settings


@pytest.fixture
def events(app, people):
    from idp import audit

    with app.test_request_context("/"):
        audit.record("login.success", user_id=people["user"], client_id="portal")
        audit.record("mfa.failure", outcome="failure", user_id=people["user"], factor="totp")
        audit.record("client.created", client_id="portal", actor="cli", name="=HYPERLINK(1)")
        audit.record("login.success", user_id=people["helpdesk"], client_id="other")
        db.session.commit()
        old = audit.record("login.success", user_id=people["user"])
        db.session.flush()
        old_id = old.id
        db.session.commit()
    return {"old": old_id}


def test_filters(app, people, events):
    b = signed_in(app, people["admin"])
    page = b.get("/admin/audit?user=user@example.com")
    assert page.status_code == 200
    assert page.text.count("login.success") == 2 and "mfa.failure (failure)" in page.text
    assert b.get(f"/admin/audit?user={people['helpdesk']}").text.count("login.success") == 1
    by_client = b.get("/admin/audit?client=portal").text
    assert "client.created" in by_client and "mfa.failure" not in by_client
    assert "mfa.failure" in b.get("/admin/audit?event=mfa.*").text
    assert "login.success" not in b.get("/admin/audit?event=mfa.*").text
    assert "No events match" in b.get("/admin/audit?user=nobody@example.com").text
    today = utcnow().date()
    assert "login.success" in b.get(f"/admin/audit?since={today}&until={today}").text
    tomorrow = today + timedelta(days=1)
    assert "No events match" in b.get(f"/admin/audit?since={tomorrow}").text


def test_bad_dates_get_a_message(app, people, events):
    b = signed_in(app, people["admin"])
    resp = b.get("/admin/audit?since=yesterday")
    assert resp.status_code == 400 and "use a date like" in resp.text


def test_export_json_lines(app, people, events):
    b = signed_in(app, people["admin"])
    resp = b.get("/admin/audit?format=jsonl&user=user@example.com")
    assert resp.status_code == 200 and resp.mimetype == "application/x-ndjson"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="audit.jsonl"'
    rows = [json.loads(line) for line in resp.get_data(as_text=True).splitlines()]
    assert [r["event"] for r in rows] == ["login.success", "mfa.failure", "login.success"]
    assert all(len(r["hash"]) == 64 and len(r["prev_hash"]) == 64 for r in rows)
    assert rows[1]["details"] == {"factor": "totp"}
    (exported,) = audit_events(app, "admin.audit_exported")
    assert exported.details == {"actor": f"user:{people['admin']}", "format": "jsonl"}


def test_export_csv_neutralises_formulas(app, people, events):
    b = signed_in(app, people["admin"])
    resp = b.get("/admin/audit?format=csv&client=portal")
    assert resp.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [r["event"] for r in rows] == ["login.success", "client.created"]
    assert json.loads(rows[1]["details"])["name"] == "=HYPERLINK(1)"  # inside JSON: inert
    with app.test_request_context("/"):
        from idp import audit

        audit.record_now("test.event", client_id="portal", note="x")
        db.session.execute(db.update(AuditEvent).where(AuditEvent.event == "test.event")
                           .values(user_agent="=cmd|' /C calc'!A0"))  # fmt: skip
        db.session.commit()
    rows = list(csv.DictReader(io.StringIO(b.get("/admin/audit?format=csv&event=test.event")
                                           .get_data(as_text=True))))  # fmt: skip
    assert rows[0]["user_agent"].startswith("'=")


def test_pages_of_events(app, people, events):
    from idp import audit

    with app.test_request_context("/"):
        for n in range(105):
            audit.record("bulk.event", n=n)
        db.session.commit()
    b = signed_in(app, people["admin"])
    first = b.get("/admin/audit?event=bulk.event")
    assert first.text.count("bulk.event</td>") == 100 and "Older events" in first.text
    import re

    older = re.search(r'href="(/admin/audit\?[^"]*before=\d+[^"]*)"', first.text).group(1)
    second = b.get(older.replace("&amp;", "&"))
    assert second.text.count("bulk.event</td>") == 5 and "Older events" not in second.text


def test_helpdesk_cannot_read_or_export_the_audit_trail(app, people, events):
    b = signed_in(app, people["helpdesk"])
    assert b.get("/admin/audit").status_code == 403
    assert b.get("/admin/audit?format=csv").status_code == 403
