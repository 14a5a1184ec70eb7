"""TOTP and recovery-code primitives, checked against independent implementations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import struct
import subprocess

import pytest

from idp.mfa.recovery import codes as recovery
from idp.security import totp

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = 1_800_000_015.0  # a fixed clock


def rfc6238(secret: str, step: int) -> str:
    """A plain RFC 4226/6238 implementation, independent of pyotp."""
    key = base64.b32decode(secret)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**6:06d}"


def test_rfc6238_reference_vector_matches_plain_implementation():
    # RFC 6238 Appendix B, SHA-1, T = 59 s -> 94287082 (8 digits); 6-digit tail 287082.
    secret = base64.b32encode(b"12345678901234567890").decode()
    assert rfc6238(secret, 59 // 30) == "287082"


def test_verify_accepts_current_and_adjacent_steps_and_returns_the_step():
    step = int(NOW // 30)
    for delta in (-1, 0, 1):
        code = rfc6238(SECRET, step + delta)
        assert totp.verify(SECRET, code, last_step=None, now=NOW) == step + delta


def test_verify_refuses_codes_outside_the_window():
    step = int(NOW // 30)
    for delta in (-3, -2, 2, 3):
        with pytest.raises(totp.InvalidTOTPError):
            totp.verify(SECRET, rfc6238(SECRET, step + delta), last_step=None, now=NOW)


def test_verify_refuses_a_used_or_older_step():
    step = int(NOW // 30)
    code = rfc6238(SECRET, step)
    with pytest.raises(totp.ReplayedTOTPError):
        totp.verify(SECRET, code, last_step=step, now=NOW)
    with pytest.raises(totp.ReplayedTOTPError):
        totp.verify(SECRET, rfc6238(SECRET, step - 1), last_step=step, now=NOW)


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "１２３４５６"])
def test_verify_refuses_malformed_codes(code):
    with pytest.raises(totp.InvalidTOTPError):
        totp.verify(SECRET, code, last_step=None, now=NOW)


def test_spaces_in_a_typed_code_are_forgiven():
    step = int(NOW // 30)
    code = rfc6238(SECRET, step)
    assert totp.verify(SECRET, f"{code[:3]} {code[3:]}", last_step=None, now=NOW) == step


@pytest.mark.skipif(shutil.which("oathtool") is None, reason="oathtool not installed")
def test_matches_oathtool():
    secret = totp.new_secret()
    out = subprocess.run(
        ["oathtool", "--totp", "-b", secret], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert totp.verify(secret, out, last_step=None) >= totp.current_step() - 1


def test_secret_is_160_bits_and_uri_names_issuer_and_account():
    secret = totp.new_secret()
    assert len(base64.b32decode(secret)) == 20
    uri = totp.provisioning_uri(secret, account="ada@example.com", issuer="Connexion ID")
    assert uri.startswith("otpauth://totp/Connexion%20ID:ada@example.com?")
    assert f"secret={secret}" in uri and "issuer=Connexion%20ID" in uri and "digits=6" in uri
    assert totp.group_secret("ABCDEFGH") == "ABCD EFGH"


def test_recovery_codes_format_and_entropy():
    codes = recovery.generate()
    assert len(codes) == 10 and len(set(codes)) == 10
    for code in codes:
        groups = code.split("-")
        assert [len(g) for g in groups] == [4, 4, 4]
        assert set("".join(groups)) <= set(recovery.ALPHABET)


def test_recovery_normalize_forgives_case_spaces_and_confusables():
    assert recovery.normalize("abcd efgh jkmn") == "ABCDEFGHJKMN"
    assert recovery.normalize("ABCD-EFGH-IL0O") == "ABCDEFGH1100"
    assert recovery.normalize("ABCD-EFGH-JKM") is None
    assert recovery.normalize("ABCD-EFGH-JKMU") is None  # U is not in Crockford's alphabet


def test_recovery_hash_is_keyed():
    a = recovery.code_hash("secret-one", "ABCDEFGHJKMN")
    assert a == recovery.code_hash("secret-one", "ABCDEFGHJKMN")
    assert a != recovery.code_hash("secret-two", "ABCDEFGHJKMN")
    assert a != hashlib.sha256(b"ABCDEFGHJKMN").hexdigest()
