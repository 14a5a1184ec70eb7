"""The companion app (clients.verify) on its own: state file, enrollment links, offline
codes and the command line."""

from __future__ import annotations

import json
import os
import stat

import pytest
from joserfc import jwk

from clients.verify import api, cli, device, state, totp
from tests.integration.mfa_helpers import totp_code


def _account(**kw) -> state.Account:
    key = device.generate(kw.pop("alg", "ES256"))
    base = dict(
        issuer="https://id.example",
        device_id="dev1",
        alg=device.algorithm_of(key),
        private_key=device.to_pem(key),
        account="ada@example.com",
        service_name="Portal",
        label="Pixel",
        totp={"secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "digits": 6, "period": 30},
    )
    base.update(kw)
    return state.Account(**base)


def test_the_state_file_is_private_and_written_atomically(tmp_path):
    path = tmp_path / "cfg" / "accounts.json"
    state.save(path, [_account()])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [a.device_id for a in state.load(path)] == ["dev1"]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    assert "BEGIN PRIVATE KEY" in json.loads(path.read_text())["accounts"][0]["private_key"]


def test_a_state_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "accounts.json"
    state.save(path, [_account()])
    os.chmod(path, 0o644)
    with pytest.raises(state.StateError, match="chmod 600"):
        state.load(path)


def test_state_location_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IDP_VERIFY_STATE", str(tmp_path / "x.json"))
    assert state.default_path() == tmp_path / "x.json"
    monkeypatch.delenv("IDP_VERIFY_STATE")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert state.default_path() == tmp_path / "idp-verify" / "accounts.json"


@pytest.mark.parametrize(
    "uri",
    [
        "https://id.example/enroll?token=x",
        "idp-verify://other?issuer=https://id.example&token=x",
        "idp-verify://enroll?issuer=https://id.example",
        "idp-verify://enroll?token=x",
        "idp-verify://enroll?issuer=http://id.example&token=x",  # plain http off this machine
        "idp-verify://enroll?issuer=ftp://id.example&token=x",
    ],
)
def test_bad_enrollment_links_are_refused(uri):
    with pytest.raises(api.AppError):
        api.parse_enroll_uri(uri)


def test_enrollment_link_parsing():
    assert api.parse_enroll_uri(
        "idp-verify://enroll?issuer=https%3A%2F%2Fid.example%2F&token=abc"
    ) == ("https://id.example", "abc")
    assert api.parse_enroll_uri("idp-verify://enroll?issuer=http://127.0.0.1:5000&token=t")[0] == (
        "http://127.0.0.1:5000"
    )


def test_offline_codes_follow_rfc_6238():
    # RFC 6238 appendix B, SHA-1, T = 59 s: 94287082 (8 digits).
    secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
    assert totp.code(secret, now=59, digits=8) == "94287082"
    assert totp.code(secret, now=1111111109, digits=8) == "07081804"
    now = 1_700_000_000
    assert totp.code(secret, now=now) == totp_code(secret, step=now // 30)
    assert totp.seconds_left(now=now) == 30 - now % 30


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_keys_round_trip_through_pem(alg):
    key = device.generate(alg)
    again = device.from_pem(device.to_pem(key))
    assert device.public_jwk(again) == device.public_jwk(key)
    assert device.algorithm_of(again) == alg
    assert set(device.public_jwk(key)) == (
        {"kty", "crv", "x", "y"} if alg == "ES256" else {"kty", "crv", "x"}
    )


def test_only_p256_and_ed25519_private_keys_are_device_keys():
    others = [
        jwk.ECKey.generate_key("P-384"),
        jwk.OKPKey.generate_key("Ed448"),
        jwk.RSAKey.generate_key(2048),
    ]
    for key in others:
        with pytest.raises(ValueError):
            device.from_pem(key.as_pem(private=True).decode())
    with pytest.raises(ValueError):  # a public key is not a device key
        device.from_pem(device.generate("ES256").as_pem(private=False).decode())
    with pytest.raises(ValueError):
        device.from_pem("not a key")
    # Ed25519 keeps its wire name EdDSA (docs/PUSH.md): "Ed25519" is not an app algorithm.
    with pytest.raises(ValueError):
        device.generate("Ed25519")


def test_cli_accounts_codes_and_local_remove(tmp_path, capsys):
    path = tmp_path / "accounts.json"
    assert cli.main(["--state", str(path), "accounts"]) == 0
    assert "No accounts" in capsys.readouterr().out
    state.save(path, [_account(), _account(device_id="dev2", account="bob@example.com")])
    assert cli.main(["--state", str(path), "codes"]) == 1
    assert "several accounts" in capsys.readouterr().err
    assert cli.main(["--state", str(path), "codes", "--account", "2", "--plain"]) == 0
    assert capsys.readouterr().out.strip().isdigit()
    assert cli.main(["--state", str(path), "accounts", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [a["account"] for a in listed] == ["ada@example.com", "bob@example.com"]
    assert "private_key" not in listed[0]
    assert (
        cli.main(["--state", str(path), "remove", "--account", "bob@example.com", "--local-only"])
        == 0
    )
    assert [a.device_id for a in state.load(path)] == ["dev1"]
    assert cli.main(["--state", str(path), "codes", "--account", "nobody"]) == 1


def test_cli_reports_an_unreachable_provider(tmp_path, capsys):
    path = tmp_path / "accounts.json"
    state.save(path, [_account(issuer="http://127.0.0.1:9")])
    assert cli.main(["--state", str(path), "approve", "42", "--wait", "0"]) == 1
    assert "cannot reach" in capsys.readouterr().err
