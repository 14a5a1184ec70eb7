"""The audit hash chain: each event stores the previous event's hash and its own hash
over a canonical JSON; events are written unsealed and chained by the sealer after the
commit; ``idp audit verify`` finds the first broken link; concurrent writers and sealers
never fork the chain; the migrations chain events recorded before them."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from idp.models.audit import GENESIS_HASH, event_digest

IDP = Path(sys.executable).with_name("idp")

FIELDS = dict(
    at=datetime(2026, 1, 31, 12, 0, 0, 123456, tzinfo=UTC), event="mfa.reset",
    outcome="success", user_id=7, client_id=None, ip="203.0.113.9", user_agent="UA",
    details={"actor": "user:1", "reason": "lost phone"}, prev_hash=GENESIS_HASH,
)  # fmt: skip


def test_digest_is_canonical_and_covers_every_field():
    base = event_digest(**FIELDS)
    assert len(base) == 64 and base == event_digest(**FIELDS)
    # Key order of details does not matter; the time zone of the same instant neither.
    assert (
        event_digest(**{**FIELDS, "details": {"reason": "lost phone", "actor": "user:1"}}) == base
    )
    from datetime import timedelta, timezone

    east = FIELDS["at"].astimezone(timezone(timedelta(hours=5)))
    assert event_digest(**{**FIELDS, "at": east}) == base
    changes = {
        "at": datetime(2026, 1, 31, 12, 0, 0, 123457, tzinfo=UTC), "event": "mfa.resets",
        "outcome": "failure", "user_id": 8, "client_id": "rp", "ip": "203.0.113.10",
        "user_agent": "UA2", "details": {"actor": "user:2", "reason": "lost phone"},
        "prev_hash": "1" * 64,
    }  # fmt: skip
    for field, value in changes.items():
        assert event_digest(**{**FIELDS, field: value}) != base, field


def _record(app, n: int, *, one_transaction: bool = False) -> None:
    from idp import audit
    from idp.extensions import db

    with app.test_request_context("/", headers={"User-Agent": "pytest"}):
        for i in range(n):
            audit.record("test.event", user_id=None, n=i, note="ü ✓")
            if not one_transaction:
                db.session.commit()
        db.session.commit()
        audit.seal()  # what the server does after the response


def _verify(app):
    from idp.audit import verify_chain

    with app.app_context():
        return verify_chain()


def _sql(app, statement: str, **params) -> None:
    from idp.extensions import db

    with app.app_context():
        db.session.execute(text(statement), params)
        db.session.commit()


def test_events_are_chained_within_and_across_transactions(app):
    _record(app, 3)
    _record(app, 4, one_transaction=True)
    _record(app, 2)
    report = _verify(app)
    assert report.ok and report.checked == 9
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = list(db.session.execute(db.select(AuditEvent).order_by(AuditEvent.id)).scalars())
    assert rows[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))


def test_a_changed_row_is_detected(app):
    _record(app, 5)
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        third = db.session.execute(
            db.select(AuditEvent.id).order_by(AuditEvent.id).offset(2).limit(1)
        ).scalar_one()
    _sql(app, "UPDATE audit_events SET outcome = 'failure' WHERE id = :id", id=third)
    report = _verify(app)
    assert not report.ok and report.broken_id == third and report.checked == 2
    assert "content" in report.problem


def test_a_deleted_row_breaks_the_next_link(app):
    _record(app, 4)
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        ids = list(db.session.execute(db.select(AuditEvent.id).order_by(AuditEvent.id)).scalars())
    _sql(app, "DELETE FROM audit_events WHERE id = :id", id=ids[1])
    report = _verify(app)
    assert report.broken_id == ids[2] and "prev_hash" in report.problem


def test_a_rehashed_row_still_breaks_the_chain(app):
    """Recomputing the tampered row's own hash is not enough: the next row points at
    the old hash."""
    _record(app, 3)
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = list(db.session.execute(db.select(AuditEvent).order_by(AuditEvent.id)).scalars())
        first = rows[0]
        first.details = {"n": 99}
        first.hash = first.compute_hash(first.prev_hash)
        db.session.commit()
        broken = rows[1].id
    assert _verify(app).broken_id == broken


def _statements(app):
    """Count the SQL statements executed while the context is open."""
    from sqlalchemy import event

    from idp.extensions import db

    seen: list[str] = []

    def listen(_conn, _cursor, statement, *_args):
        seen.append(statement.split()[0].upper())

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", listen)
    return seen, lambda: event.remove(engine, "before_cursor_execute", listen)


def test_writing_an_event_is_one_insert_and_the_sealer_chains_it(app):
    from idp import audit
    from idp.extensions import db
    from idp.models import AuditEvent

    seen, stop = _statements(app)
    try:
        with app.test_request_context("/"):
            audit.record("test.event", n=1)
            db.session.commit()
    finally:
        stop()
    assert seen == ["INSERT"]  # no lock, no read of the last hash on the write path
    with app.app_context():
        row = db.session.execute(db.select(AuditEvent)).scalar_one()
        assert (row.chain_seq, row.prev_hash, row.hash) == (None, None, None)
        assert audit.unsealed_count() == 1
        assert audit.seal() == 1 and audit.seal() == 0
        db.session.expire_all()
        assert row.chain_seq == 1 and row.prev_hash == GENESIS_HASH
        assert row.hash == row.compute_hash(GENESIS_HASH)
        assert audit.unsealed_count() == 0


def test_any_request_text_can_be_recorded(app):
    """NUL (refused by PostgreSQL text) and overlong values never make an audit write
    fail: NUL becomes U+FFFD and each column keeps what fits."""
    from idp import audit
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.test_request_context("/", headers={"User-Agent": "ua\x00" + "u" * 600}):
        audit.record("test.event", client_id="c\x00" + "x" * 100,
                     detail="a\x00b", nested={"k\x00": ["v\x00"]})  # fmt: skip
        db.session.commit()
        audit.seal()
    with app.app_context():
        row = db.session.execute(db.select(AuditEvent)).scalar_one()
        assert row.client_id == "c\ufffd" + "x" * 62
        assert row.user_agent.startswith("ua\ufffduuu") and len(row.user_agent) == 400
        assert row.details == {"detail": "a\ufffdb", "nested": {"k\ufffd": ["v\ufffd"]}}
    assert _verify(app).ok


def test_a_bounded_seal_leaves_the_rest_for_the_next(app, monkeypatch):
    from idp import audit
    from idp.extensions import db

    monkeypatch.setattr(audit, "SEAL_BATCH", 2)
    with app.test_request_context("/"):
        for n in range(5):
            audit.record("test.event", n=n)
        db.session.commit()
        assert audit.seal(batches=1) == 2
        assert audit.unsealed_count() == 3
        assert audit.seal() == 3
    report = _verify(app)
    assert report.ok and report.checked == 5


def test_a_rolled_back_event_is_never_sealed(app):
    from idp import audit
    from idp.extensions import db

    with app.test_request_context("/"):
        audit.record("test.event", n=1)
        db.session.rollback()
        assert audit.seal() == 0
    assert _verify(app).checked == 0


def test_the_server_seals_after_the_response(app):
    """A request that records an event gets it chained once its response is closed."""
    from idp import audit
    from idp.extensions import db
    from idp.models import AuditEvent

    resp = app.test_client().post("/token", data={"grant_type": "client_credentials"},
                                  auth=("no-such-client", "x"))  # fmt: skip
    assert resp.status_code == 401
    with app.app_context():
        assert audit.unsealed_count() == 1  # recorded, not yet chained: still sending
    resp.close()  # what the WSGI server does once the body is sent
    with app.app_context():
        rows = list(db.session.execute(db.select(AuditEvent)).scalars())
        assert rows and all(r.hash and r.chain_seq for r in rows)
        assert audit.unsealed_count() == 0


def test_an_event_committed_late_is_chained_after_those_sealed_before_it(app, backend):
    """Ids are taken at INSERT, commits land in any order: the chain follows the order
    of sealing (chain_seq), so a transaction that commits after a seal is appended."""
    if backend == "sqlite":
        pytest.skip("SQLite allows one writing transaction at a time")
    from sqlalchemy.orm import Session

    from idp import audit
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        late = Session(db.engine)
        late.add(AuditEvent(at=datetime.now(UTC), event="test.late", outcome="success",
                            details={}))  # fmt: skip
        late.flush()  # the id is taken now, the commit comes later
        _record(app, 2)
        late.commit()
        late.close()
        assert audit.seal() == 1
        rows = list(db.session.execute(db.select(AuditEvent).order_by(AuditEvent.id)).scalars())
    assert rows[0].event == "test.late" and rows[0].chain_seq == 3
    report = _verify(app)
    assert report.ok and report.checked == 3


def test_concurrent_writers_do_not_fork_the_chain(app, backend):
    if backend == "sqlite":
        pytest.skip("SQLite serializes writers itself; the advisory lock is PostgreSQL's")
    errors: list[BaseException] = []

    def writer() -> None:
        from idp import audit

        try:
            for _ in range(5):
                _record(app, 3)
                with app.app_context():
                    audit.seal(wait=False)  # several sealers race, as workers do
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    report = _verify(app)
    assert report.ok and report.checked == 90


# -- the command and the migration (a real subprocess and a temporary SQLite file) ------


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDP_")}
    env.update(IDP_DATABASE_URL=f"sqlite:///{root / 'idp.sqlite3'}",
               IDP_KEYS_DIRECTORY=str(root / "keys"), IDP_PASSWORD_MEMORY_COST="1024",
               IDP_PASSWORD_TIME_COST="1", IDP_DELIVERY_OUTBOX=str(root / "outbox.jsonl"))  # fmt: skip
    return env


def _idp(root: Path, *args: str, input: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([str(IDP), *args], env=_env(root), cwd=root, input=input,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_idp_audit_verify_reports_the_first_broken_link(tmp_path):
    assert _idp(tmp_path, "db", "upgrade").returncode == 0
    for n in range(3):
        made = _idp(tmp_path, "users", "create", "--email", f"u{n}@example.com",
                    input="a perfectly fine passphrase\n")  # fmt: skip
        assert made.returncode == 0, made.stderr
    assert _idp(tmp_path, "users", "grant-admin", "u1@example.com").returncode == 0
    ok = _idp(tmp_path, "audit", "verify")
    assert ok.returncode == 0 and ok.stdout.strip() == "ok: 4 events, chain intact"
    with sqlite3.connect(tmp_path / "idp.sqlite3") as conn:
        conn.execute('UPDATE audit_events SET details = \'{"actor": "nobody"}\' WHERE id = 3')
    bad = _idp(tmp_path, "audit", "verify")
    assert bad.returncode == 1
    assert "broken: event 3: hash does not match" in bad.stderr
    assert "2 events before it are intact" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_migration_chains_existing_events(tmp_path, keys_dir):
    """Events recorded before revision 0003 are chained by the migration itself."""
    from dataclasses import replace

    from flask_migrate import upgrade

    from idp.app import create_app
    from idp.store import MemoryStore
    from tests.conftest import make_settings

    s = make_settings(tmp_path, keys_dir)
    s = replace(s, database=replace(s.database, url=f"sqlite:///{tmp_path / 'old.sqlite3'}"))
    app = create_app(s, store=MemoryStore(), warn=False)
    with app.app_context():
        upgrade(revision="0002_factors")
    with sqlite3.connect(tmp_path / "old.sqlite3") as conn:
        for n in range(3):
            conn.execute(
                "INSERT INTO audit_events (at, event, outcome, details) VALUES (?, ?, ?, ?)",
                (f"2026-01-0{n + 1} 10:00:00.000000", "login.success", "success", f'{{"n": {n}}}'),
            )
    with app.app_context():
        upgrade()
    _record(app, 2)
    report = _verify(app)
    assert report.ok and report.checked == 5
