"""The ``idp`` command, run as a real subprocess against a temporary SQLite database."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from idp.auth.assurance import ACR_AAL1

IDP = Path(sys.executable).with_name("idp")
PASSWORD = "a perfectly fine passphrase"


class CLI:
    """Runs ``idp`` with its own database and key directory."""

    def __init__(self, root: Path):
        self.root = root
        self.db = root / "x.sqlite3"
        self.keys = root / "keys"
        # Settings come only from what each test sets, never from the calling shell.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("IDP_") or k == "IDP_TEST_REQUIRE"
        }
        env.pop("WEB_CONCURRENCY", None)
        env.update(
            IDP_DATABASE_URL=f"sqlite:///{self.db}",
            IDP_KEYS_DIRECTORY=str(self.keys),
            IDP_PASSWORD_MEMORY_COST="1024",
            IDP_PASSWORD_TIME_COST="1",
        )
        self.env = env

    def __call__(
        self, *args: str, input: str | None = None, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(IDP), *args],
            input=input if input is not None else "",
            env={**self.env, **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def ok(self, *args: str, **kw) -> str:
        result = self(*args, **kw)
        assert result.returncode == 0, f"idp {' '.join(args)}: {result.stderr}"
        return result.stdout

    def refused(self, *args: str, code: int = 1, **kw) -> str:
        """Exit code *code* (1: refused, 2: usage) with an ``error:`` line and no
        traceback; returns stderr."""
        result = self(*args, **kw)
        assert result.returncode == code, f"idp {' '.join(args)}: {result}"
        assert result.stderr.startswith("error: "), result.stderr
        assert "Traceback" not in result.stderr
        return result.stderr

    def usage(self, *args: str, **kw) -> str:
        """A usage error: exit code 2."""
        return self.refused(*args, code=2, **kw)

    def sql(self, query: str, *params) -> list[tuple]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture
def cli(tmp_path) -> CLI:
    return CLI(tmp_path)


@pytest.fixture(scope="module")
def db_cli(tmp_path_factory) -> CLI:
    """One migrated database shared by the module's client, user and audit tests."""
    cli = CLI(tmp_path_factory.mktemp("cli"))
    assert "database at head" in cli.ok("db", "upgrade")
    return cli


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _create_client(cli: CLI, *args: str) -> dict:
    name = f"rp-{secrets.token_hex(3)}"
    return json.loads(cli.ok("clients", "create", "--name", name, *args, "--json"))


def _show(cli: CLI, client_id: str) -> dict:
    return json.loads(cli.ok("clients", "show", client_id, "--json"))


# -- database ---------------------------------------------------------------------


def test_commands_before_migration_say_to_migrate(cli):
    message = cli.refused("users", "list")
    assert "idp db upgrade" in message


def test_db_upgrade_creates_the_schema(cli):
    assert not cli.db.exists()
    assert "database at head" in cli.ok("db", "upgrade")
    tables = {name for (name,) in cli.sql("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"users", "oauth_clients", "authorization_codes", "refresh_tokens"} <= tables
    assert {"consents", "audit_events", "alembic_version"} <= tables
    assert cli.sql("SELECT count(*) FROM alembic_version") == [(1,)]
    cli.ok("db", "upgrade")  # idempotent


# -- keys -------------------------------------------------------------------------


def _key_table(cli: CLI) -> dict[str, tuple[str, str]]:
    """kid -> (status, alg) from `idp keys list`."""
    rows = {}
    for line in cli.ok("keys", "list").splitlines():
        status, alg, kid, *_ = line.split()
        rows[kid] = (status, alg)
    return rows


def _kid(output: str) -> str:
    return output.split()[2]


def test_keys_generate_list_rotate(cli):
    assert cli.ok("keys", "list") == ""
    first = cli.ok("keys", "generate")
    assert first.startswith("active RS256 ")
    active = _kid(first)
    assert _key_table(cli) == {active: ("active", "RS256")}

    second = cli.ok("keys", "generate")
    assert second.startswith("next RS256 ")
    nxt = _kid(second)
    assert _key_table(cli) == {active: ("active", "RS256"), nxt: ("next", "RS256")}
    # A third key before rotating has no slot.
    assert "rotate" in cli.refused("keys", "generate")

    out = cli.ok("keys", "rotate")
    assert f"retired {active}" in out
    lines = dict(line.split(None, 1) for line in out.splitlines() if line.startswith(("a", "n")))
    assert lines["active"].strip() == nxt
    newest = lines["next"].strip()
    assert newest not in (active, nxt)
    table = _key_table(cli)
    assert table == {
        nxt: ("active", "RS256"),
        newest: ("next", "RS256"),
        active: ("retired", "RS256"),
    }

    files = sorted(cli.keys.glob("*.json"))
    assert {f.stem for f in files} == {active, nxt, newest}
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
        assert "d" in json.loads(f.read_text())  # the private key is in the file
    assert stat.S_IMODE(cli.keys.stat().st_mode) & 0o077 == 0


def test_keys_generate_es256(cli):
    out = cli.ok("keys", "generate", "--alg", "ES256")
    assert out.startswith("active ES256 ")
    kid = _kid(out)
    assert _key_table(cli) == {kid: ("active", "ES256")}
    jwk = json.loads((cli.keys / f"{kid}.json").read_text())
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert stat.S_IMODE((cli.keys / f"{kid}.json").stat().st_mode) == 0o600
    # Rotation may switch algorithms for the new next key.
    assert cli.ok("keys", "generate", "--alg", "RS256").startswith("next RS256 ")
    assert cli("keys", "generate", "--alg", "HS256").returncode == 2  # click usage error


# -- users ------------------------------------------------------------------------


def test_users_create_reads_the_password_from_stdin(db_cli):
    out = db_cli.ok("users", "create", "--email", "A@Example.com", "--name", "A", input=PASSWORD)
    assert out.startswith("created a@example.com (sub ")
    [(stored, name, verified)] = db_cli.sql(
        "SELECT password_hash, name, email_verified FROM users WHERE email = ?", "a@example.com"
    )
    assert name == "A" and verified
    assert PASSWORD not in stored
    assert PasswordHasher().verify(stored, PASSWORD)  # exactly the stdin line, newline dropped
    assert "a@example.com" in db_cli.ok("users", "list")

    # There is no way to pass a password as an argument (it would show up in ps).
    usage = db_cli("users", "create", "--email", "b@example.com", "--password", PASSWORD)
    assert usage.returncode == 2 and "No such option" in usage.stderr


def test_users_create_refuses_short_passwords_and_duplicates(db_cli):
    message = db_cli.refused("users", "create", "--email", "short@example.com", input="short\n")
    assert "password not accepted" in message and "12" in message
    assert db_cli.sql("SELECT id FROM users WHERE email = 'short@example.com'") == []

    db_cli.ok("users", "create", "--email", "dup@example.com", input=PASSWORD + "\n")
    message = db_cli.refused("users", "create", "--email", " DUP@example.com", input=PASSWORD)
    assert "already exists" in message and "dup@example.com" in message
    assert db_cli.sql("SELECT count(*) FROM users WHERE email = 'dup@example.com'") == [(1,)]

    assert "not an email" in db_cli.usage("users", "create", "--email", "nobody", input=PASSWORD)


def test_users_list_disable_enable_unlock(db_cli):
    email = "toggle@example.com"
    db_cli.ok("users", "create", "--email", email, input=PASSWORD)
    db_cli.sql("UPDATE users SET failed_logins = 7 WHERE email = ?", email)

    def status() -> str:
        line = next(ln for ln in db_cli.ok("users", "list").splitlines() if ln.startswith(email))
        return line.split()[1]

    assert status() == "active"
    assert db_cli.ok("users", "disable", email).strip() == f"{email}: disabled"
    assert status() == "disabled"
    assert db_cli.ok("users", "enable", email).strip() == f"{email}: active"
    assert status() == "active"
    assert "unlocked" in db_cli.ok("users", "unlock", email)
    assert db_cli.sql("SELECT failed_logins, locked_until FROM users WHERE email = ?", email) == [
        (0, None)
    ]
    assert "no user" in db_cli.usage("users", "disable", "ghost@example.com")


# -- clients ----------------------------------------------------------------------


def test_clients_create_prints_the_secret_once_and_stores_its_hash(db_cli):
    created = _create_client(db_cli, "--redirect-uri", "https://rp.example/cb")
    client_id, secret = created["client_id"], created["client_secret"]
    assert created["token_endpoint_auth_method"] == "client_secret_basic"
    assert created["redirect_uris"] == ["https://rp.example/cb"]
    assert len(secret) >= 32

    [row] = db_cli.sql("SELECT * FROM oauth_clients WHERE client_id = ?", client_id)
    [(stored,)] = db_cli.sql(
        "SELECT client_secret_hash FROM oauth_clients WHERE client_id = ?", client_id
    )
    assert stored != secret and stored == _sha256(secret)
    assert all(secret not in str(value) for value in row)  # nowhere in clear

    shown = db_cli.ok("clients", "show", client_id)
    assert client_id in shown and secret not in shown
    assert not any(line.split()[0] == "client_secret" for line in shown.splitlines())
    as_json = _show(db_cli, client_id)
    assert "client_secret" not in as_json and as_json["client_id"] == client_id
    listed = db_cli.ok("clients", "list")
    assert client_id in listed and secret not in listed

    # The plain-text form prints it too, with a warning that it is shown once.
    text = db_cli.ok(
        "clients", "create", "--name", "Texty", "--redirect-uri", "https://rp.example/t"
    )
    line = next(ln for ln in text.splitlines() if ln.startswith("client_secret"))
    new_id = next(ln for ln in text.splitlines() if ln.startswith("client_id")).split()[1]
    assert (
        _sha256(line.split()[1])
        == db_cli.sql("SELECT client_secret_hash FROM oauth_clients WHERE client_id = ?", new_id)[
            0
        ][0]
    )
    assert "shown once" in text


def test_clients_create_public_with_loopback_redirects(db_cli):
    created = _create_client(
        db_cli,
        "--public",
        "--redirect-uri",
        "http://localhost:8080/cb",
        "--redirect-uri",
        "http://127.0.0.1/cb",
    )
    assert created["token_endpoint_auth_method"] == "none"
    assert "client_secret" not in created
    assert created["redirect_uris"] == ["http://localhost:8080/cb", "http://127.0.0.1/cb"]
    assert db_cli.sql(
        "SELECT client_secret_hash FROM oauth_clients WHERE client_id = ?", created["client_id"]
    ) == [(None,)]
    message = db_cli.refused("clients", "rotate-secret", created["client_id"])
    assert "does not authenticate with a secret" in message
    assert "--public" in db_cli.usage(
        "clients",
        "create",
        "--name",
        "Mixed",
        "--public",
        "--auth-method",
        "client_secret_post",
        "--redirect-uri",
        "https://rp.example/cb",
    )


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://example.com/cb", "https"),
        ("http://localhost.evil.example/cb", "https"),
        ("https://rp.example/cb#section", "fragment"),
        ("https://*.rp.example/cb", "wildcard"),
        ("https://rp.example/*", "wildcard"),
        ("/cb", "starts with https://"),
    ],
)
def test_clients_create_refuses_bad_redirect_uris(db_cli, uri, why):
    name = f"bad-{secrets.token_hex(3)}"
    message = db_cli.usage("clients", "create", "--name", name, "--redirect-uri", uri)
    assert uri in message and why in message
    assert db_cli.sql("SELECT id FROM oauth_clients WHERE name = ?", name) == []


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--client-id", "x" * 65), "64"),
        (("--client-id", "has space"), "client ID is 1 to 64"),
        (("--default-acr", "urn:typo"), "default assurance level"),
        (("--scope", "openid admin"), "scope"),
    ],
)
def test_clients_create_refuses_bad_metadata(db_cli, args, why):
    name = f"bad-{secrets.token_hex(3)}"
    message = db_cli.usage(
        "clients", "create", "--name", name, "--redirect-uri", "https://rp.example/cb", *args
    )
    assert why in message
    assert db_cli.sql("SELECT id FROM oauth_clients WHERE name = ?", name) == []


def test_clients_update(db_cli):
    created = _create_client(db_cli, "--redirect-uri", "https://rp.example/old")
    cid = created["client_id"]
    data = json.loads(
        db_cli.ok(
            "clients",
            "update",
            cid,
            "--redirect-uri",
            "https://rp.example/new",
            "--redirect-uri",
            "http://127.0.0.1:9000/cb",
            "--first-party",
            "--require-mfa",
            "--disable",
            "--default-acr",
            ACR_AAL1,
            "--json",
        )
    )
    assert data["redirect_uris"] == ["https://rp.example/new", "http://127.0.0.1:9000/cb"]
    assert data["first_party"] and data["require_mfa"] and data["disabled"]
    assert data["default_acr"] == ACR_AAL1
    assert _show(db_cli, cid) == data  # persisted

    # Options not given keep their values; the flags switch back.
    data = json.loads(
        db_cli.ok(
            "clients", "update", cid, "--no-first-party", "--no-require-mfa", "--enable", "--json"
        )
    )
    assert not (data["first_party"] or data["require_mfa"] or data["disabled"])
    assert data["redirect_uris"] == ["https://rp.example/new", "http://127.0.0.1:9000/cb"]
    assert data["default_acr"] == ACR_AAL1
    data = json.loads(db_cli.ok("clients", "update", cid, "--default-acr", "", "--json"))
    assert data["default_acr"] is None

    # Invalid values are refused and nothing changes.
    before = _show(db_cli, cid)
    assert "http://example.com/x" in db_cli.usage(
        "clients", "update", cid, "--redirect-uri", "http://example.com/x", "--disable"
    )
    assert "default assurance level" in db_cli.usage(
        "clients", "update", cid, "--default-acr", "nope"
    )
    assert _show(db_cli, cid) == before
    assert "no client" in db_cli.usage("clients", "update", "no-such-client", "--disable")


def test_clients_rotate_secret(db_cli):
    created = _create_client(db_cli, "--redirect-uri", "https://rp.example/cb")
    cid, old = created["client_id"], created["client_secret"]
    rotated = json.loads(db_cli.ok("clients", "rotate-secret", cid, "--json"))
    new = rotated["client_secret"]
    assert rotated["client_id"] == cid and new != old
    [(stored,)] = db_cli.sql(
        "SELECT client_secret_hash FROM oauth_clients WHERE client_id = ?", cid
    )
    assert stored == _sha256(new) and stored != _sha256(old)
    assert new not in db_cli.ok("clients", "show", cid)


def test_clients_delete_and_list(db_cli):
    keep = _create_client(db_cli, "--redirect-uri", "https://rp.example/keep")
    gone = _create_client(db_cli, "--redirect-uri", "https://rp.example/gone")
    listed = json.loads(db_cli.ok("clients", "list", "--json"))
    ids = [c["client_id"] for c in listed]
    assert keep["client_id"] in ids and gone["client_id"] in ids
    assert all("client_secret" not in c for c in listed)

    # Without --yes it asks; answering no keeps the client.
    asked = db_cli("clients", "delete", gone["client_id"], input="n\n")
    assert asked.returncode != 0 and "Delete client" in asked.stdout
    assert gone["client_id"] in db_cli.ok("clients", "list")

    assert db_cli.ok("clients", "delete", gone["client_id"], "--yes").strip() == (
        f"deleted {gone['client_id']}"
    )
    assert db_cli.sql("SELECT id FROM oauth_clients WHERE client_id = ?", gone["client_id"]) == []
    assert "no client" in db_cli.usage("clients", "show", gone["client_id"])
    text = db_cli.ok("clients", "list")
    assert gone["client_id"] not in text and keep["client_id"] in text


# -- audit ------------------------------------------------------------------------


def test_audit_tail(cli):
    cli.ok("db", "upgrade")
    created = _create_client(cli, "--redirect-uri", "https://rp.example/cb")
    cli.ok("users", "create", "--email", "audited@example.com", input=PASSWORD)

    lines = cli.ok("audit", "tail", "-n", "5").splitlines()
    assert len(lines) == 2
    assert "client.created" in lines[0] and created["client_id"] in lines[0]
    assert "user.created" in lines[1]
    assert all(created["client_secret"] not in line for line in lines)
    assert PASSWORD not in cli.ok("audit", "tail")

    events = [json.loads(line) for line in cli.ok("audit", "tail", "--json").splitlines()]
    assert [e["event"] for e in events] == ["client.created", "user.created"]
    assert events[0]["client_id"] == created["client_id"]
    assert events[0]["details"]["actor"] == "cli" and events[0]["outcome"] == "success"
    assert isinstance(events[1]["user_id"], int)

    assert len(cli.ok("audit", "tail", "-n", "1").splitlines()) == 1
    assert "user.created" in cli.ok("audit", "tail", "-n", "1")


# -- config -----------------------------------------------------------------------


def test_config_check_reports_a_malformed_file(cli, tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text('issuer = "https://idp.example\n[server\n')
    message = cli.refused("config", "check", env={"IDP_CONFIG": str(bad)})
    assert str(bad) in message and "TOML" in message
    assert len(message.strip().splitlines()) == 1

    typo = tmp_path / "typo.toml"
    typo.write_text("[server]\nworkerz = 2\n")
    message = cli.refused("config", "check", env={"IDP_CONFIG": str(typo)})
    assert "[server] workerz" in message and "workers" in message

    missing = tmp_path / "missing.toml"
    assert str(missing) in cli.refused("config", "check", env={"IDP_CONFIG": str(missing)})

    good = tmp_path / "good.toml"
    good.write_text('issuer = "https://idp.example"\n')
    assert "ok: env=development issuer=https://idp.example" in cli.ok(
        "config", "check", env={"IDP_CONFIG": str(good)}
    )


def test_config_show_masks_secrets(cli):
    secret_key = secrets.token_urlsafe(48)
    enc = base64.urlsafe_b64encode(os.urandom(32)).decode()
    out = cli.ok(
        "config",
        "show",
        env={
            "IDP_SECRET_KEY": secret_key,
            "IDP_DATABASE_URL": "postgresql+psycopg://idp:db-pass-word@db.internal/idp",
            "IDP_STORE_REDIS_URL": "redis://:redis-pass-word@cache.internal:6379/0",
            "IDP_SECURITY_ENCRYPTION_KEYS": f"k1:{enc}",
            "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "k1",
        },
    )
    for secret in (secret_key, "db-pass-word", "redis-pass-word", enc):
        assert secret not in out
    shown = json.loads(out)
    assert shown["secret_key"] == "***"
    assert shown["security"]["encryption_keys"] == {"k1": "***"}
    assert shown["database"]["url"] == "postgresql+psycopg://idp:***@db.internal/idp"
    assert "db.internal" in shown["database"]["url"] and "cache.internal" in out


# -- demo -------------------------------------------------------------------------


def test_demo_is_idempotent(cli):
    from idp.cli import (
        CONNEXION_API_CLIENT_ID,
        CONNEXION_API_CLIENT_SECRET,
        CONNEXION_CLIENT_ID,
        CONNEXION_CLIENT_SECRET,
        DEMO_CLIENT_ID,
        DEMO_CLIENT_SECRET,
        DEMO_EMAIL,
    )

    cli.ok("db", "upgrade")
    first = cli.ok("demo")
    assert DEMO_EMAIL in first and DEMO_CLIENT_ID in first
    second = cli.ok("demo")
    assert second == first
    assert cli.sql("SELECT count(*) FROM users WHERE email = ?", DEMO_EMAIL) == [(1,)]
    assert cli.sql(
        "SELECT client_id, client_secret_hash, first_party FROM oauth_clients ORDER BY client_id"
    ) == [
        (CONNEXION_CLIENT_ID, _sha256(CONNEXION_CLIENT_SECRET), 1),
        (CONNEXION_API_CLIENT_ID, _sha256(CONNEXION_API_CLIENT_SECRET), 0),
        (DEMO_CLIENT_ID, _sha256(DEMO_CLIENT_SECRET), 0),
    ]
    # Connexion's Form C API is a registered resource, and Connexion may call it.
    api = json.loads(cli.ok("resources", "show", "http://localhost:5001/api", "--json"))
    assert api["client_id"] == CONNEXION_API_CLIENT_ID and api["clients"] == [CONNEXION_CLIENT_ID]
    assert [s["name"] for s in api["scopes"]] == ["form-c:file"]
    assert "form-c:file" in _show(cli, CONNEXION_CLIENT_ID)["scope"].split()
    # Another Connexion address moves the API with it.
    cli.ok("demo", "--connexion-url", "http://127.0.0.1:6001")
    assert [r["uri"] for r in json.loads(cli.ok("resources", "list", "--json"))] == [
        "http://127.0.0.1:6001/api"
    ]
    assert cli.ok("users", "list").count(DEMO_EMAIL) == 1
    # One line per client, the id first ("connexion" is also a prefix of "connexion-api").
    ids = [line.split()[0] for line in cli.ok("clients", "list").splitlines() if line.strip()]
    assert sorted(ids) == sorted([CONNEXION_CLIENT_ID, CONNEXION_API_CLIENT_ID, DEMO_CLIENT_ID])


def test_demo_is_refused_in_production(cli):
    from idp.cli import DEMO_EMAIL

    cli.ok("db", "upgrade")
    production = {
        "IDP_ENV": "production",
        "IDP_SECRET_KEY": secrets.token_urlsafe(36),
        "IDP_ISSUER": "https://idp.example",
        "IDP_SECURITY_ENCRYPTION_KEYS": "k1:" + base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "k1",
        "IDP_OPS_METRICS_TOKEN": secrets.token_urlsafe(24),
        # Real delivery backends (console ones only warn in production, on stderr).
        "IDP_DELIVERY_EMAIL_BACKEND": "smtp",
        "IDP_DELIVERY_SMTP_HOST": "smtp.example.gov",
        "IDP_DELIVERY_SMS_BACKEND": "twilio",
        "IDP_DELIVERY_VOICE_BACKEND": "twilio",
        "IDP_DELIVERY_TWILIO_ACCOUNT_SID": "AC123",
        "IDP_DELIVERY_TWILIO_AUTH_TOKEN": secrets.token_urlsafe(16),
        "IDP_DELIVERY_TWILIO_FROM": "+12025550100",
    }
    assert len(production["IDP_SECRET_KEY"]) == 48
    # Start-up accepts it, and so does `config check` once the store and database are fit.
    fit = {**production, "IDP_STORE_BACKEND": "redis",
           "IDP_DATABASE_URL": "postgresql+psycopg://idp@db.internal/idp"}  # fmt: skip
    assert "env=production" in cli.ok("config", "check", env=fit)
    message = cli.refused("demo", env=production)
    assert "production" in message
    assert cli.sql("SELECT count(*) FROM users WHERE email = ?", DEMO_EMAIL) == [(0,)]
    assert cli.sql("SELECT count(*) FROM oauth_clients") == [(0,)]


# -- the command line itself --------------------------------------------------------


def test_version_help_and_exit_codes(cli):
    from importlib.metadata import version

    assert cli.ok("--version").strip() == f"idp {version('idp')}"
    for flag in ("-h", "--help"):
        assert "Usage: idp" in cli.ok(flag) and "Exit status" in cli.ok(flag)
        assert "--dry-run" in cli.ok("users", "import", flag)
    unknown = cli("users", "lisst")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr  # usage
    assert cli("users", "list", "--limit", "0").returncode == 2  # a bad option value
    assert cli("db", "upgrade").returncode == 0
    assert "no user" in cli.usage("users", "factors", "ghost@example.com")  # names nothing
    cli.ok("users", "create", "--email", "once@example.com", input=PASSWORD)
    assert "already exists" in cli.refused(  # refused: the state does not allow it
        "users", "create", "--email", "once@example.com", input=PASSWORD
    )


def test_json_on_list_show_create_and_errors_as_json(cli):
    cli.ok("db", "upgrade")
    cli.ok("keys", "generate")
    [key] = json.loads(cli.ok("keys", "list", "--json"))
    assert key["status"] == "active" and key["alg"] == "RS256"
    created = json.loads(cli.ok("users", "create", "--email", "j@example.com", "--json",
                                input=PASSWORD))  # fmt: skip
    assert created["email"] == "j@example.com" and created["status"] == "active"
    listed = json.loads(cli.ok("users", "list", "--json"))
    assert listed["total"] == 1 and listed["users"][0]["sub"] == created["sub"]
    client = _create_client(cli, "--redirect-uri", "https://rp.example/cb")
    assert _show(cli, client["client_id"])["client_id"] == client["client_id"]
    assert json.loads(cli.ok("clients", "list", "--json"))[0]["client_id"] == client["client_id"]
    assert json.loads(cli.ok("config", "show", "--json"))["env"] == "development"

    # Errors: one JSON object on stderr, with the exit status, for refusals and usage.
    dup = cli("users", "create", "--email", "j@example.com", "--json", input=PASSWORD)
    assert dup.returncode == 1 and dup.stdout == ""
    assert json.loads(dup.stderr) == {"error": "a user with email 'j@example.com' already exists",
                                      "exit_code": 1}  # fmt: skip
    missing = cli("clients", "show", "nope", "--json")
    assert missing.returncode == 2 and json.loads(missing.stderr)["exit_code"] == 2
    bad_option = cli("users", "list", "--json", "--limit", "zero")
    assert bad_option.returncode == 2 and "limit" in json.loads(bad_option.stderr)["error"]


def test_users_list_search_and_paging(db_cli):
    for i in range(5):
        db_cli.ok("users", "create", "--email", f"pager{i}@example.com", "--name", f"Page {i}",
                  input=PASSWORD)  # fmt: skip
    page = json.loads(db_cli.ok("users", "list", "--search", "PAGER", "--limit", "2",
                                "--offset", "1", "--json"))  # fmt: skip
    assert page["total"] == 5 and [u["email"] for u in page["users"]] == [
        "pager1@example.com", "pager2@example.com"]  # fmt: skip
    by_name = json.loads(db_cli.ok("users", "list", "--search", "page 4", "--json"))
    assert [u["email"] for u in by_name["users"]] == ["pager4@example.com"]
    text = db_cli("users", "list", "--search", "pager", "--limit", "2")
    assert text.stdout.count("pager") == 2 and "--offset 2" in text.stderr


def test_users_import_export_delete_commands(cli, tmp_path):
    cli.ok("db", "upgrade")
    bcrypt_hash = "$2b$05$4DLIpFANdZBNw82/WJYhK.0/n0uTh309A.yHYoenn2DTbJFn5y.eq"
    source = tmp_path / "users.csv"
    source.write_text(
        "email,email_verified,name,password_hash,totp_secret\n"
        f"imp1@example.com,true,Imp One,{bcrypt_hash},JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n"
        "imp2@example.com,false,Imp Two,,\n"
        "broken,true,,,\n"
    )
    dry = json.loads(cli.ok("users", "import", str(source), "--dry-run", "--json"))
    assert (dry["taken"], dry["refused"], dry["dry_run"]) == (2, 1, True)
    assert cli.sql("SELECT count(*) FROM users") == [(0,)]
    done = cli("users", "import", str(source))
    assert done.returncode == 0 and "took 2 of 3 rows, refused 1" in done.stdout
    assert "row 4 (broken): email is not a valid address" in done.stdout
    assert "rows read" in done.stderr  # progress
    unknown = tmp_path / "bad.csv"
    unknown.write_text("email,password\nx@example.com,secret\n")
    assert "unknown CSV column" in cli.refused("users", "import", str(unknown))

    public = cli.ok("users", "export")
    assert "imp1@example.com" in public and bcrypt_hash not in public
    out = tmp_path / "all.csv"
    cli.ok("users", "export", "--with-secrets", "-o", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert bcrypt_hash in out.read_text() and "JBSWY3DP" in out.read_text()

    assert "deleted imp1@example.com" in cli.ok("users", "delete", "imp1@example.com", "--yes")
    assert cli.sql("SELECT count(*) FROM users WHERE email = 'imp1@example.com'") == [(0,)]
    assert "ok:" in cli.ok("audit", "verify")
    assert "no user" in cli.usage("users", "delete", "imp1@example.com", "--yes")


# -- config check ---------------------------------------------------------------------


def _check(env: dict[str, str | None]):
    """`idp config check --json` in-process (fast), with only *env*'s IDP_* variables."""
    from click.testing import CliRunner

    from idp.cli import main

    clean = {k: None for k in os.environ if k.startswith("IDP_") or k == "WEB_CONCURRENCY"}
    result = CliRunner().invoke(main, ["config", "check", "--json"], env={**clean, **env})
    return result


PRODUCTION = {
    "IDP_ENV": "production",
    "IDP_ISSUER": "https://idp.example",
    "IDP_SECRET_KEY": "s" * 48,
    "IDP_SECURITY_ENCRYPTION_KEYS": "k1:" + base64.urlsafe_b64encode(b"k" * 32).decode(),
    "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": "k1",
    "IDP_OPS_METRICS_TOKEN": "m" * 24,
    "IDP_DATABASE_URL": "postgresql+psycopg://idp@db.internal/idp",
    "IDP_STORE_BACKEND": "redis",
    "IDP_DELIVERY_EMAIL_BACKEND": "smtp",
    "IDP_DELIVERY_SMTP_HOST": "smtp.example.gov",
    "IDP_DELIVERY_SMS_BACKEND": "twilio",
    "IDP_DELIVERY_VOICE_BACKEND": "twilio",
    "IDP_DELIVERY_TWILIO_ACCOUNT_SID": "AC123",
    "IDP_DELIVERY_TWILIO_AUTH_TOKEN": "t" * 16,
    "IDP_DELIVERY_TWILIO_FROM": "+12025550100",
}


def test_config_check_accepts_a_production_configuration():
    result = _check(PRODUCTION)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and report["env"] == "production" and report["problems"] == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"IDP_DATABASE_URL": "sqlite:///instance/idp.sqlite3"}, "SQLite"),
        ({"IDP_STORE_BACKEND": "memory"}, "'memory'"),
        ({"IDP_DELIVERY_EMAIL_BACKEND": "console"}, "email_backend is 'console'"),
        ({"IDP_DELIVERY_SMS_BACKEND": "console"}, "sms_backend is 'console'"),
        ({"IDP_DELIVERY_VOICE_BACKEND": "console"}, "voice_backend is 'console'"),
        ({"IDP_SECRET_KEY": None}, "secret_key"),  # the built-in development key
        (
            {"IDP_SECURITY_ENCRYPTION_KEYS": None, "IDP_SECURITY_ACTIVE_ENCRYPTION_KEY": None},
            "development key",
        ),
        ({"IDP_ISSUER": "http://idp.example"}, "https"),
        ({"IDP_DATABASE_URL": "mysql://idp@db.internal/idp"}, "'mysql' is not supported"),
        ({"IDP_SURPRISE": "1"}, "unknown environment variable IDP_SURPRISE"),
    ],
)
def test_config_check_refuses_what_production_cannot_use(change, why):
    result = _check({**PRODUCTION, **change})
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    if result.stdout.strip():
        report = json.loads(result.stdout)
        assert not report["ok"] and any(why in p for p in report["problems"]), report
    else:
        error = json.loads(result.stderr)
        assert why in error["error"] and error["exit_code"] == 1


def test_config_check_allows_console_delivery_for_factors_that_are_not_offered():
    sms_off = {**PRODUCTION, "IDP_DELIVERY_SMS_BACKEND": "console",
               "IDP_MFA_ALLOWED_FACTORS": "totp,webauthn,recovery,email"}  # fmt: skip
    assert _check(sms_off).exit_code == 0


def test_config_check_reads_postgres_urls_as_psycopg():
    for scheme in ("postgres", "postgresql"):
        result = _check({**PRODUCTION, "IDP_DATABASE_URL": f"{scheme}://idp@db.internal/idp"})
        assert result.exit_code == 0, result.output
        assert "postgresql+psycopg://" in json.loads(result.stdout)["notes"][0]
