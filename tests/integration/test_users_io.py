"""Bringing existing users in (``idp users import``), out (``export``) and deleting them,
on SQLite with the memory store and on PostgreSQL with Redis."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pyotp
import pytest

from idp import audit
from idp.auth.service import authenticate_password
from idp.extensions import db
from idp.models import AuditEvent, Factor, User
from idp.services import services
from idp.users_io import delete_user, export_records, import_users, read_records, write_records

PASSWORD = "correct horse battery staple"
# Made by Django 5.2 (see tests/unit/test_password_formats.py).
DJANGO_PBKDF2 = "pbkdf2_sha256$1200$seasalt2024$HCnO9DJgu2pg2a3bh5rZMEJjrcH3eDsFaq55EKPqvCI="
DJANGO_BCRYPT = "bcrypt$$2b$05$4DLIpFANdZBNw82/WJYhK.0/n0uTh309A.yHYoenn2DTbJFn5y.eq"
BCRYPT = DJANGO_BCRYPT.removeprefix("bcrypt$")
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


def _keycloak_user(email: str) -> dict:
    salt = os.urandom(16)
    value = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, 27500, 64)
    return {
        "id": "8d1e4e8c-3f2a-4c8e-9a55-7d1c2b3a4f5e", "username": email.split("@")[0],
        "email": email, "emailVerified": True, "firstName": "Kay", "lastName": "Cloak",
        "enabled": True,
        "credentials": [{
            "type": "password",
            "secretData": json.dumps({"value": base64.b64encode(value).decode(),
                                      "salt": base64.b64encode(salt).decode()}),
            "credentialData": json.dumps({"hashIterations": 27500,
                                          "algorithm": "pbkdf2-sha256"}),
        }],
    }  # fmt: skip


def _records() -> list[dict]:
    return [
        {"email": "Bcrypt@Example.com", "email_verified": True, "name": "B Crypt",
         "password_hash": BCRYPT, "totp_secret": TOTP_SECRET},
        {"email": "django@example.com", "email_verified": "true", "password_hash": DJANGO_PBKDF2,
         "phone_number": "(202) 555-0143", "phone_number_verified": "yes", "mfa_phone": "sms",
         "sub": "legacy-subject-0001"},
        {"email": "nopassword@example.com", "status": "disabled"},
    ]  # fmt: skip


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _import(app, path: Path, **kw):
    with app.app_context():
        return import_users(services(), read_records(path), source=path.name, **kw)


def _sign_in(app, email: str, password: str = PASSWORD) -> User:
    with app.test_request_context("/signin", method="POST"):
        return authenticate_password(services(), email, password, "203.0.113.9")


def test_import_creates_users_factors_and_hashes_that_upgrade_at_sign_in(app, tmp_path):
    report = _import(app, _write_jsonl(tmp_path / "users.jsonl",
                                       [*_records(), _keycloak_user("kay@example.com")]))  # fmt: skip
    assert (report.rows, report.taken, report.refused) == (4, 4, [])
    with app.app_context():
        svc = services()
        users = {u.email: u for u in db.session.execute(db.select(User)).scalars()}
        assert set(users) == {"bcrypt@example.com", "django@example.com",
                              "nopassword@example.com", "kay@example.com"}  # fmt: skip
        bcrypt_user, django_user = users["bcrypt@example.com"], users["django@example.com"]
        assert bcrypt_user.password_hash == BCRYPT  # stored as given
        assert django_user.sub == "legacy-subject-0001"  # relying parties keep their link
        assert users["kay@example.com"].sub == "8d1e4e8c-3f2a-4c8e-9a55-7d1c2b3a4f5e"
        assert django_user.phone_number == "+12025550143" and django_user.phone_number_verified
        assert users["nopassword@example.com"].status == "disabled"

        # The TOTP secret is an active factor, encrypted as the set-up page stores it.
        [totp] = db.session.execute(db.select(Factor).filter_by(user_id=bcrypt_user.id)).scalars()
        assert (
            totp.type == "totp"
            and totp.status == "active"
            and TOTP_SECRET not in (totp.secret_enc or "")
        )
        from idp.mfa.totp import TOTPFactor

        verified = TOTPFactor(svc).verify(
            bcrypt_user, [totp], {"code": pyotp.TOTP(TOTP_SECRET).now()}, binding="t"
        )
        assert verified.factor.id == totp.id
        # The phone is an active text-message factor, encrypted like idp.mfa.codes does.
        [sms] = db.session.execute(db.select(Factor).filter_by(user_id=django_user.id)).scalars()
        from idp.mfa.codes.phone import SmsFactor

        assert sms.type == "sms" and "+12025550143" not in (sms.secret_enc or "")
        assert SmsFactor(svc).destination(django_user, sms) == "+12025550143"
        assert sms.data["masked"] == "***-***-0143"
        db.session.commit()

    # Signing in with an imported hash replaces it with today's argon2id.
    for email in ("bcrypt@example.com", "django@example.com", "kay@example.com"):
        user = _sign_in(app, email)
        assert user.password_hash.startswith("$argon2id$"), email
        with app.app_context():
            svc = services()
            stored = db.session.get(User, user.id).password_hash
            assert stored.startswith("$argon2id$") and not svc.passwords.needs_rehash(stored)
            assert svc.passwords.verify(stored, PASSWORD)
    from idp.auth.service import LoginFailed

    with pytest.raises(LoginFailed):
        _sign_in(app, "nopassword@example.com")


def test_dry_run_writes_nothing_and_bad_rows_are_reported(app, tmp_path):
    bad = [
        {"email": "not-an-address"},
        {"email": "md5@example.com", "password_hash": "$1$saltsalt$qjXMvbEw8oaL.CzflDugX/"},
        {"email": "phone@example.com", "phone_number": "123"},
        {"email": "mfa@example.com", "mfa_phone": "sms"},
        {"email": "short@example.com", "totp_secret": "JBSWY3DP"},
        {"email": "bcrypt@example.com", "password_hash": BCRYPT},  # same as row 1
        {"email": "extra@example.com", "favourite_colour": "blue"},
        {"name": "no email"},
    ]
    path = tmp_path / "mixed.jsonl"
    _write_jsonl(path, [_records()[0], *bad])
    with path.open("a") as fp:
        fp.write("{not json\n")

    dry = _import(app, path, dry_run=True)
    assert dry.dry_run and dry.rows == 10 and dry.taken == 1
    reasons = {r.row: r.reason for r in dry.refused}
    assert len(reasons) == 9
    assert "valid address" in reasons[2]
    assert "known format" in reasons[3]
    assert reasons[4].startswith("phone_number:")
    assert "needs phone_number" in reasons[5]
    assert "128 bits" in reasons[6]
    assert "same email as row 1" in reasons[7]
    assert "favourite_colour" in reasons[8]
    assert "email is missing" in reasons[9]
    assert "not JSON" in reasons[10]
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(User.id))).scalar_one() == 0
        assert db.session.execute(db.select(db.func.count(Factor.id))).scalar_one() == 0
        assert db.session.execute(db.select(db.func.count(AuditEvent.id))).scalar_one() == 0

    real = _import(app, path)
    assert real.taken == 1 and [r.row for r in real.refused] == [r.row for r in dry.refused]
    # A second run refuses what the first took (an interrupted import can be re-run).
    again = _import(app, path)
    assert again.taken == 0 and any("exists" in r.reason for r in again.refused)


def test_export_import_round_trip(app, tmp_path):
    _import(app, _write_jsonl(tmp_path / "in.jsonl", _records()))
    with app.app_context():
        svc = services()
        exported = list(export_records(svc, with_secrets=True))
        public = list(export_records(svc))
    by_email = {r["email"]: r for r in exported}
    assert by_email["bcrypt@example.com"]["password_hash"] == BCRYPT
    assert by_email["bcrypt@example.com"]["totp_secret"] == TOTP_SECRET
    assert by_email["django@example.com"]["mfa_phone"] == "sms"
    assert by_email["django@example.com"]["phone_number"] == "+12025550143"
    assert all("password_hash" not in r and "totp_secret" not in r for r in public)
    assert all(r["mfa_phone"] is None for r in public)  # the factor's number is encrypted

    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"export.{fmt}"
        with out.open("w", newline="") as fp:
            assert write_records(exported, fp, fmt, with_secrets=True) == 3
        with app.app_context():
            svc = services()
            for user in list(db.session.execute(db.select(User)).scalars()):
                delete_user(svc, user, actor="test")
        report = _import(app, out)
        assert (report.taken, report.refused) == (3, []), report.refused
        with app.app_context():
            again = {r["email"]: r for r in export_records(services(), with_secrets=True)}
        assert again == by_email, fmt  # same users, subjects, hashes, factors


def test_delete_removes_everything_and_keeps_the_audit_chain_verifiable(app, tmp_path):
    _import(app, _write_jsonl(tmp_path / "in.jsonl", _records()))
    _sign_in(app, "bcrypt@example.com")
    with pytest.raises(Exception):  # noqa: B017, PT011 - a failure, audited
        _sign_in(app, "bcrypt@example.com", "wrong password")
    _sign_in(app, "django@example.com")
    with app.app_context():
        svc = services()
        user = db.session.execute(
            db.select(User).filter_by(email="bcrypt@example.com")
        ).scalar_one()
        user_id = user.id
        audit.record("help.note", user_id=user_id, actor="cli", reason="Called from 202-555-0143",
                     label="Ada's phone")  # fmt: skip
        db.session.commit()
        assert audit.verify_chain().ok
        before = db.session.execute(
            db.select(db.func.count(AuditEvent.id)).filter_by(user_id=user_id)
        ).scalar_one()
        assert before >= 3

        counts = delete_user(svc, user, actor="cli")
        assert counts["factors"] == 1 and counts["audit_events_pseudonymised"] == before
        assert db.session.get(User, user_id) is None
        assert db.session.execute(db.select(Factor).filter_by(user_id=user_id)).first() is None

        report = audit.verify_chain()
        assert report.ok, report
        events = list(db.session.execute(
            db.select(AuditEvent).order_by(AuditEvent.id)).scalars())  # fmt: skip
        redacted = [e for e in events if (e.details or {}).get("redacted_by")]
        assert len(redacted) == before
        [marker] = [e for e in events if e.event == "user.deleted"]
        ref = marker.details["user_ref"]
        for e in redacted:
            assert e.user_id is None and e.ip is None and e.user_agent is None
            assert e.details["user_ref"] == ref and e.details["redacted_by"] == marker.id
            text = json.dumps(e.details)
            assert "202-555-0143" not in text and "Ada" not in text
        note = next(e for e in redacted if e.event == "help.note")
        assert "reason" not in note.details and "label" not in note.details
        kept = next(e for e in redacted if e.event == "login.failure")
        assert kept.details["reason"] == "bad_password"  # a reason code is kept
        others = [e for e in events if e.user_id is not None]
        assert others, "the other user's events are untouched"

        # Tampering is still found: a redacted event changed afterwards...
        tampered, original = redacted[0], dict(redacted[0].details)
        tampered.details = {**original, "method": "forged"}
        db.session.commit()
        broken = audit.verify_chain()
        assert not broken.ok and broken.broken_id == marker.id
        tampered.details = original
        db.session.commit()
        assert audit.verify_chain().ok
        # ...and an event marked redacted without a user.deleted that vouches for it.
        victim = others[0]
        victim.details = {**(victim.details or {}), "redacted_by": marker.id}
        db.session.commit()
        assert not audit.verify_chain().ok
