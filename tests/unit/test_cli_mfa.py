"""``idp users factors / reset-mfa / unlock``: the help desk's MFA commands, run as the
real ``idp`` command in a subprocess against a temporary SQLite database."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import REDIS_URL, need, redis_available

IDP = Path(sys.executable).with_name("idp")
ADA, BOB, CAROL = "ada@example.com", "bob@example.com", "carol@example.com"


class Idp:
    """Runs ``idp`` with its own database, key directory and outbox; builds the same app
    in-process to seed data."""

    def __init__(self, root: Path, **extra_env: str):
        self.root = root
        self.db = root / "idp.sqlite3"
        self.outbox = root / "outbox.jsonl"
        # Settings come only from what the test sets, never from the calling shell.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("IDP_") or k == "IDP_TEST_REQUIRE"
        }
        env.pop("WEB_CONCURRENCY", None)
        env.update(
            IDP_DATABASE_URL=f"sqlite:///{self.db}",
            IDP_KEYS_DIRECTORY=str(root / "keys"),
            IDP_PASSWORD_MEMORY_COST="1024",
            IDP_PASSWORD_TIME_COST="1",
            IDP_DELIVERY_OUTBOX=str(self.outbox),
            **extra_env,
        )
        self.env = env

    def __call__(self, *args: str, input: str = "") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(IDP), *args],
            input=input,
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, **kw) -> str:
        result = self(*args, **kw)
        assert result.returncode == 0, f"idp {' '.join(args)}: {result.stderr}"
        assert "Traceback" not in result.stderr
        return result.stdout

    def app(self):
        from idp.app import create_app
        from idp.config import load_settings

        return create_app(load_settings(environ=self.env), require_keys=False, warn=False)

    def sql(self, query: str, *params) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(query, params).fetchall()

    def mails(self) -> list[dict]:
        if not self.outbox.exists():
            return []
        return [json.loads(line) for line in self.outbox.read_text().splitlines() if line]

    def factors(self, email: str) -> list[tuple[str, str]]:
        return self.sql(
            "SELECT f.type, f.label FROM factors f JOIN users u ON u.id = f.user_id "
            "WHERE u.email = ? ORDER BY f.id",
            email,
        )

    def codes(self, email: str) -> int:
        [(n,)] = self.sql(
            "SELECT count(*) FROM recovery_codes c JOIN users u ON u.id = c.user_id "
            "WHERE u.email = ?",
            email,
        )
        return n

    def audit(self, event: str) -> list[tuple[int | None, dict]]:
        rows = self.sql(
            "SELECT user_id, details FROM audit_events WHERE event = ? ORDER BY id", event
        )
        return [(uid, json.loads(details) if details else {}) for uid, details in rows]


def seed(idp: Idp) -> dict:
    """Ada: an authenticator app, recovery codes and a refresh token; Bob: an app and a
    refresh token; Carol: nothing. Written through the app's own services."""
    from idp.extensions import db
    from idp.models import Factor, RefreshToken, User
    from idp.models.base import utcnow
    from idp.oidc.clients import create_client
    from idp.security import totp

    app = idp.app()
    out: dict = {"secrets": {}, "secret_enc": {}, "codes": []}
    with app.app_context():
        svc = app.extensions["idp"]
        client, _ = create_client(name="RP", redirect_uris=["https://rp.example/cb"])
        for email in (ADA, BOB, CAROL):
            user = User(email=email, name=email.split("@")[0].title(), email_verified=True,
                        password_hash=svc.passwords.hash("a perfectly fine passphrase"))  # fmt: skip
            db.session.add(user)
            db.session.flush()
            if email == CAROL:
                continue
            secret = totp.new_secret()
            enc = svc.secrets.encrypt(secret, context=f"totp:{user.id}")
            label = "Phone" if email == ADA else "Bob's phone"
            db.session.add(Factor(user_id=user.id, type="totp", label=label, status="active",
                                  secret_enc=enc, activated_at=utcnow()))  # fmt: skip
            db.session.add(
                RefreshToken(
                    token_hash=uuid.uuid4().hex * 2,
                    family_id=uuid.uuid4().hex,
                    client_id=client.client_id,
                    user_id=user.id,
                    expires_at=utcnow() + timedelta(days=1),
                )  # fmt: skip
            )
            out["secrets"][email], out["secret_enc"][email] = secret, enc
        ada = db.session.execute(db.select(User).filter_by(email=ADA)).scalar_one()
        _, out["codes"] = app.extensions["idp.mfa"].registry["recovery"].generate(ada)
        db.session.commit()
        db.engine.dispose()
    return out


@pytest.fixture
def idp(tmp_path) -> Idp:
    tool = Idp(tmp_path)
    assert "database at head" in tool.ok("db", "upgrade")
    return tool


def test_factors_lists_a_users_factors_without_secrets(idp):
    seeded = seed(idp)
    out = idp.ok("users", "factors", ADA)
    lines = out.splitlines()
    assert len(lines) == 2
    today = datetime.now(UTC).date().isoformat()
    totp_line, recovery_line = lines
    assert totp_line.split()[1:4] == ["totp", "active", "Phone"]
    assert f"added {today}" in totp_line and "last used never" in totp_line
    assert recovery_line.split()[1:3] == ["recovery", "active"]
    assert "Recovery codes" in recovery_line
    assert "Bob's phone" not in out
    assert "locked" not in out

    rows = json.loads(idp.ok("users", "factors", ADA, "--json"))
    assert [(r["type"], r["label"], r["status"]) for r in rows] == [
        ("totp", "Phone", "active"),
        ("recovery", "Recovery codes", "active"),
    ]
    assert set(rows[0]) == {"id", "type", "label", "status", "default", "added", "last_used"}
    assert rows[0]["added"].startswith(today) and rows[0]["last_used"] is None

    # Never the key, its encrypted form or a recovery code, in either format.
    secret, enc = seeded["secrets"][ADA], seeded["secret_enc"][ADA]
    for text in (out, json.dumps(rows)):
        assert secret not in text and enc not in text
        assert not any(code in text for code in seeded["codes"])

    assert idp.ok("users", "factors", CAROL).strip() == f"{CAROL}: no factors"
    assert json.loads(idp.ok("users", "factors", CAROL, "--json")) == []
    missing = idp("users", "factors", "ghost@example.com")
    assert missing.returncode == 2 and "no user" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_reset_mfa_needs_a_reason_and_confirmation(idp):
    seed(idp)
    before = idp.factors(ADA)
    assert len(before) == 2 and idp.codes(ADA) == 10

    usage = idp("users", "reset-mfa", ADA, "--yes")
    assert usage.returncode == 2 and "--reason" in usage.stderr
    short = idp("users", "reset-mfa", ADA, "--reason", " no ", "--yes")
    assert short.returncode == 2 and short.stderr.startswith("error: ")
    assert "at least 4" in short.stderr
    declined = idp("users", "reset-mfa", ADA, "--reason", "lost phone", input="n\n")
    assert declined.returncode != 0
    assert f"Remove every sign-in method of {ADA}?" in declined.stdout
    unknown = idp("users", "reset-mfa", "ghost@example.com", "--reason", "lost phone", "--yes")
    assert unknown.returncode == 2 and "no user" in unknown.stderr

    assert idp.factors(ADA) == before and idp.codes(ADA) == 10
    assert idp.audit("mfa.reset") == []
    assert idp.mails() == []


def test_reset_mfa_removes_factors_and_codes_audits_and_emails(idp):
    seed(idp)
    [(ada_id,)] = idp.sql("SELECT id FROM users WHERE email = ?", ADA)
    idp.sql("UPDATE users SET mfa_failures = 4 WHERE id = ?", ada_id)

    out = idp.ok("users", "reset-mfa", ADA, "--reason", "lost phone", "--yes")
    assert out.strip() == f"{ADA}: removed 2 factor(s); sessions and refresh tokens revoked"

    assert idp.factors(ADA) == [] and idp.codes(ADA) == 0
    assert idp.factors(BOB) == [("totp", "Bob's phone")]
    assert idp.sql("SELECT mfa_failures, mfa_locked_until FROM users WHERE id = ?", ada_id) == [
        (0, None)
    ]
    revoked = dict(
        idp.sql(
            "SELECT u.email, t.revoked_at IS NOT NULL FROM refresh_tokens t "
            "JOIN users u ON u.id = t.user_id"
        )
    )
    assert revoked == {ADA: 1, BOB: 0}

    [(uid, details)] = idp.audit("mfa.reset")
    assert uid == ada_id
    assert details == {"actor": "cli", "reason": "lost phone", "removed": 2}

    [mail] = idp.mails()
    assert mail["to"] == ADA and mail["purpose"] == "notify.mfa_reset"
    assert "reset" in mail["subject"]
    assert "reason: lost phone" in mail["text"]

    assert idp.ok("users", "factors", ADA).strip() == f"{ADA}: no factors"
    # A second reset finds nothing to remove but is still recorded.
    assert "removed 0 factor(s)" in idp.ok("users", "reset-mfa", ADA, "--reason", "again", "--yes")
    assert len(idp.audit("mfa.reset")) == 2


@pytest.mark.redis
def test_reset_mfa_ends_the_users_sessions(tmp_path):
    need("redis", redis_available(), "nothing listens on 127.0.0.1:6379")
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    idp = Idp(tmp_path, IDP_STORE_BACKEND="redis", IDP_STORE_REDIS_URL=REDIS_URL,
              IDP_STORE_PREFIX=prefix)  # fmt: skip
    idp.ok("db", "upgrade")
    seed(idp)
    app = idp.app()
    with app.app_context():
        sessions = app.extensions["idp"].sessions
        ids = dict(idp.sql("SELECT email, id FROM users"))
        ada_cookie, _ = sessions.establish(ids[ADA], "pwd")
        bob_cookie, _ = sessions.establish(ids[BOB], "pwd")
        assert sessions.load(ada_cookie) is not None
    try:
        idp.ok("users", "reset-mfa", ADA, "--reason", "stolen laptop", "--yes")
        assert sessions.load(ada_cookie) is None
        assert sessions.load(bob_cookie) is not None
    finally:
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(match=f"{prefix}*"):
            r.delete(key)
        r.close()


def test_unlock_clears_both_lockouts(idp):
    seed(idp)
    later = (datetime.now(UTC) + timedelta(minutes=30)).replace(tzinfo=None).isoformat(sep=" ")
    for email in (ADA, BOB):
        idp.sql(
            "UPDATE users SET locked_until = ?, mfa_locked_until = ?, failed_logins = 3, "
            "mfa_failures = 2 WHERE email = ?",
            later,
            later,
            email,
        )
    assert "second-factor step locked until" in idp.ok("users", "factors", ADA)

    assert idp.ok("users", "unlock", ADA).strip() == f"{ADA}: unlocked"
    state = "SELECT locked_until, mfa_locked_until, failed_logins, mfa_failures FROM users "
    assert idp.sql(state + "WHERE email = ?", ADA) == [(None, None, 0, 0)]
    assert idp.sql(state + "WHERE email = ?", BOB)[0][:2] == (later, later)  # only Ada
    assert "locked" not in idp.ok("users", "factors", ADA)
    [(uid, details)] = idp.audit("user.unlocked")
    assert idp.sql("SELECT email FROM users WHERE id = ?", uid) == [(ADA,)]
    assert details["actor"] == "cli"
    assert idp.factors(ADA)[0] == ("totp", "Phone")  # factors are untouched

    missing = idp("users", "unlock", "ghost@example.com")
    assert missing.returncode == 2 and "no user" in missing.stderr
