"""``idp clients create|update`` options for back-channel logout, CORS origins, keys by
URL (``jwks_uri``) and PAR, run as a real subprocess against a temporary SQLite
database (the ``CLI`` runner of test_cli)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from jwcrypto import jwk as jwc_jwk

from tests.unit.test_cli import CLI

KEYS_URL = "https://rp.example.gov/jwks.json"
LOGOUT_URL = "https://rp.example.gov/backchannel-logout"


@pytest.fixture(scope="module")
def db_cli(tmp_path_factory) -> CLI:
    cli = CLI(tmp_path_factory.mktemp("cli-protocol"))
    assert "database at head" in cli.ok("db", "upgrade")
    return cli


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory) -> Path:
    key = jwc_jwk.JWK.generate(kty="EC", crv="P-256", kid="k1", alg="ES256", use="sig")
    path = tmp_path_factory.mktemp("jwks") / "jwks.json"
    path.write_text(json.dumps({"keys": [key.export_public(as_dict=True)]}))
    return path


def create(cli: CLI, *args: str) -> dict:
    name = f"rp-{secrets.token_hex(3)}"
    return json.loads(cli.ok("clients", "create", "--name", name, "--json", *args))


def show(cli: CLI, client_id: str) -> dict:
    return json.loads(cli.ok("clients", "show", client_id, "--json"))


def kids(cli: CLI, client_id: str) -> list[str] | None:
    """The kids of the keys registered in the client's ``jwks`` column (None: no keys)."""
    ((raw,),) = cli.sql("SELECT jwks FROM oauth_clients WHERE client_id = ?", client_id)
    jwks = json.loads(raw) if raw is not None else None  # SQL NULL or JSON null
    return None if jwks is None else [k["kid"] for k in jwks["keys"]]


def test_create_with_every_option(db_cli):
    data = create(db_cli, "--redirect-uri", "https://rp.example.gov/cb",
                  "--backchannel-logout-uri", LOGOUT_URL,
                  "--backchannel-logout-session-required",
                  "--allowed-origin", "https://app.example.gov",
                  "--allowed-origin", "HTTPS://Other.Example.gov:443",
                  "--require-par")  # fmt: skip
    assert data["backchannel_logout_uri"] == LOGOUT_URL
    assert data["backchannel_logout_session_required"] is True
    # Origins are kept as browsers send them (RFC 6454 serialisation).
    assert data["allowed_origins"] == ["https://app.example.gov", "https://other.example.gov"]
    assert data["require_par"] is True
    data.pop("client_secret")  # printed once, at creation
    assert show(db_cli, data["client_id"]) == data


def test_create_without_the_options_leaves_them_off(db_cli):
    data = create(db_cli, "--redirect-uri", "https://rp.example.gov/cb")
    assert data["backchannel_logout_uri"] is None
    assert data["allowed_origins"] == []
    assert data["require_par"] is False
    assert data["jwks_uri"] is None


def test_private_key_jwt_with_keys_from_a_file_or_a_url(db_cli, jwks_file):
    by_file = create(db_cli, "--auth-method", "private_key_jwt", "--grant-type",
                     "client_credentials", "--jwks", str(jwks_file))  # fmt: skip
    assert by_file["jwks_uri"] is None
    assert kids(db_cli, by_file["client_id"]) == ["k1"]
    by_url = create(db_cli, "--auth-method", "private_key_jwt", "--grant-type",
                    "client_credentials", "--jwks-uri", KEYS_URL)  # fmt: skip
    assert by_url["jwks_uri"] == KEYS_URL
    assert kids(db_cli, by_url["client_id"]) is None
    # Both at once: which keys count would be a guess.
    assert "jwks" in db_cli.usage("clients", "create", "--name", "both", "--auth-method",
                                  "private_key_jwt", "--grant-type", "client_credentials",
                                  "--jwks", str(jwks_file), "--jwks-uri", KEYS_URL)  # fmt: skip


def test_update_sets_replaces_and_clears(db_cli, jwks_file):
    cid = create(db_cli, "--redirect-uri", "https://rp.example.gov/cb",
                 "--allowed-origin", "https://app.example.gov")["client_id"]  # fmt: skip
    data = json.loads(db_cli.ok("clients", "update", cid, "--json",
                                "--backchannel-logout-uri", LOGOUT_URL,
                                "--allowed-origin", "https://new.example.gov",
                                "--require-par"))  # fmt: skip
    assert data["backchannel_logout_uri"] == LOGOUT_URL
    assert data["allowed_origins"] == ["https://new.example.gov"]  # replaced
    assert data["require_par"] is True
    # Options not given keep their values.
    data = json.loads(db_cli.ok("clients", "update", cid, "--first-party", "--json"))
    assert data["backchannel_logout_uri"] == LOGOUT_URL
    assert data["allowed_origins"] == ["https://new.example.gov"]
    assert data["require_par"] is True
    data = json.loads(db_cli.ok("clients", "update", cid, "--json",
                                "--backchannel-logout-uri", "", "--clear-allowed-origins",
                                "--no-require-par"))  # fmt: skip
    assert data["backchannel_logout_uri"] is None
    assert data["allowed_origins"] == []
    assert data["require_par"] is False
    assert "exclude each other" in db_cli.usage(
        "clients", "update", cid, "--clear-allowed-origins", "--allowed-origin",
        "https://app.example.gov",
    )  # fmt: skip


def test_update_switches_between_keys_and_a_jwks_uri(db_cli, jwks_file):
    cid = create(db_cli, "--auth-method", "private_key_jwt", "--grant-type",
                 "client_credentials", "--jwks", str(jwks_file))["client_id"]  # fmt: skip
    data = json.loads(db_cli.ok("clients", "update", cid, "--jwks-uri", KEYS_URL, "--json"))
    assert data["jwks_uri"] == KEYS_URL
    assert kids(db_cli, cid) is None  # the URL replaces the registered keys
    data = json.loads(db_cli.ok("clients", "update", cid, "--jwks", str(jwks_file), "--json"))
    assert data["jwks_uri"] is None
    assert kids(db_cli, cid) == ["k1"]


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (("--backchannel-logout-uri", "http://rp.example.gov/logout"), "https"),
        (("--backchannel-logout-uri", "https://rp.example.gov/logout#frag"), "fragment"),
        (("--allowed-origin", "https://app.example.gov/path"), "origin"),
        (("--allowed-origin", "*"), "origin"),
    ],
)
def test_bad_values_are_refused_without_a_traceback(db_cli, args, why):
    stderr = db_cli.usage("clients", "create", "--name", "bad", "--redirect-uri",
                          "https://rp.example.gov/cb", *args)  # fmt: skip
    assert stderr.strip(), why
    clients = json.loads(db_cli.ok("clients", "list", "--json"))
    assert "bad" not in {c["name"] for c in clients}
