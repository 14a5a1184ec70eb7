"""CSRF tokens, secret encryption at rest, and password hashing."""

from __future__ import annotations

import base64
import os

import pytest

from idp.security.crypto import (
    DecryptionError,
    SecretBox,
    hash_token,
    random_token,
    token_matches,
)
from idp.security.csrf import CSRFError, CSRFProtect
from idp.security.passwords import PasswordHasher, validate_new_password

NOW = 1_700_000_000
BROWSER = "b" * 32


# -- CSRF ---------------------------------------------------------------------------------


@pytest.fixture
def csrf() -> CSRFProtect:
    return CSRFProtect("test-secret", max_age=7200)


def test_csrf_round_trip(csrf):
    token = csrf.generate(BROWSER, now=NOW)
    csrf.validate(token, BROWSER, now=NOW)
    csrf.validate(token, BROWSER, now=NOW + 7200)


def test_csrf_bound_to_the_browser(csrf):
    token = csrf.generate(BROWSER, now=NOW)
    with pytest.raises(CSRFError):
        csrf.validate(token, "c" * 32, now=NOW)


def test_csrf_bound_to_the_secret(csrf):
    token = CSRFProtect("another-secret").generate(BROWSER, now=NOW)
    with pytest.raises(CSRFError):
        csrf.validate(token, BROWSER, now=NOW)


def test_csrf_expiry(csrf):
    token = csrf.generate(BROWSER, now=NOW)
    with pytest.raises(CSRFError, match="expired"):
        csrf.validate(token, BROWSER, now=NOW + 7201)
    # Issued "in the future": a little clock skew is fine, more is not.
    csrf.validate(token, BROWSER, now=NOW - 60)
    with pytest.raises(CSRFError, match="expired"):
        csrf.validate(token, BROWSER, now=NOW - 61)


def _flip(s: str, i: int) -> str:
    return s[:i] + ("0" if s[i] != "0" else "1") + s[i + 1 :]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: _flip(t, len(t) - 1),  # MAC
        lambda t: _flip(t, 0),  # timestamp
        lambda t: t.split(".")[0],  # no MAC
        lambda t: "." + t.split(".")[1],  # no timestamp
        lambda t: t + "0",
        lambda t: t.upper(),
        lambda t: "-" + t,
        lambda t: t.replace(".", ".é"),  # non-ASCII MAC
        lambda t: "١٧٠٠٠٠٠٠٠٠." + t.split(".")[1],  # non-ASCII digits
        lambda t: "",
    ],
)
def test_csrf_tampering(csrf, mutate):
    token = mutate(csrf.generate(BROWSER, now=NOW))
    with pytest.raises(CSRFError):
        csrf.validate(token, BROWSER, now=NOW)


@pytest.mark.parametrize(("token", "browser"), [(None, BROWSER), ("x", None), ("x", "")])
def test_csrf_missing(csrf, token, browser):
    with pytest.raises(CSRFError, match="missing"):
        csrf.validate(token, browser, now=NOW)


# -- SecretBox --------------------------------------------------------------------------


def _key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


@pytest.fixture
def keys() -> dict[str, str]:
    return {"k1": _key(), "k2": _key()}


def test_secretbox_round_trip(keys):
    box = SecretBox(keys, "k1")
    token = box.encrypt("JBSWY3DPEHPK3PXP", context="totp:42")
    assert token.startswith("k1.")
    assert "JBSWY3DPEHPK3PXP" not in token
    assert box.decrypt(token, context="totp:42") == "JBSWY3DPEHPK3PXP"
    # A fresh nonce every time.
    assert box.encrypt("JBSWY3DPEHPK3PXP", context="totp:42") != token
    assert box.decrypt(box.encrypt("", context="c"), context="c") == ""
    assert box.decrypt(box.encrypt("ünïcödé ✓", context="c"), context="c") == "ünïcödé ✓"


def test_secretbox_wrong_context(keys):
    box = SecretBox(keys, "k1")
    token = box.encrypt("secret", context="totp:42")
    with pytest.raises(DecryptionError):
        box.decrypt(token, context="totp:43")


def test_secretbox_unknown_kid(keys):
    token = SecretBox(keys, "k1").encrypt("secret", context="c")
    with pytest.raises(DecryptionError, match="unknown"):
        SecretBox({"k2": keys["k2"]}, "k2").decrypt(token, context="c")
    with pytest.raises(DecryptionError):
        SecretBox(keys, "k1").decrypt("k3." + token.split(".", 1)[1], context="c")


def test_secretbox_same_kid_other_key(keys):
    token = SecretBox(keys, "k1").encrypt("secret", context="c")
    with pytest.raises(DecryptionError):
        SecretBox({"k1": _key()}, "k1").decrypt(token, context="c")


def _tamper_body(token: str, index: int) -> str:
    kid, body = token.split(".", 1)
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[index] ^= 0x01
    return f"{kid}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: _tamper_body(t, 0),  # nonce
        lambda t: _tamper_body(t, 14),  # ciphertext
        lambda t: _tamper_body(t, -1),  # tag
        lambda t: t[:-8],  # truncated
        lambda t: t.split(".")[0] + ".",  # empty body
        lambda t: t.split(".")[0],  # no body
        lambda t: t.split(".")[0] + ".!!!not-base64!!!",
        lambda t: t.split(".")[0] + ".QUJD",  # too short for nonce and tag
        lambda t: "",
    ],
)
def test_secretbox_tampering(keys, mutate):
    box = SecretBox(keys, "k1")
    with pytest.raises(DecryptionError):
        box.decrypt(mutate(box.encrypt("secret", context="c")), context="c")


def test_secretbox_rotation(keys):
    old = SecretBox({"k1": keys["k1"]}, "k1").encrypt("secret", context="c")
    box = SecretBox(keys, "k2")
    assert box.decrypt(old, context="c") == "secret"
    assert box.needs_reencrypt(old) is True
    assert box.needs_reencrypt(box.encrypt("secret", context="c")) is False


def test_secretbox_active_key_must_exist(keys):
    with pytest.raises(ValueError, match="k9"):
        SecretBox(keys, "k9")


# -- token hashing --------------------------------------------------------------------


def test_token_hashing():
    token = random_token()
    assert len(token) >= 43 and random_token() != token
    assert token_matches(token, hash_token(token))
    assert not token_matches(token + "x", hash_token(token))
    assert not token_matches(token, None)
    assert not token_matches(token, "")


# -- passwords --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher(memory_cost=1024, time_cost=1)


def test_password_verify(hasher):
    h = hasher.hash("correct horse battery staple")
    assert h.startswith("$argon2id$")
    assert h != hasher.hash("correct horse battery staple")  # salted
    assert hasher.verify(h, "correct horse battery staple") is True
    assert hasher.verify(h, "correct horse battery stapl") is False
    assert hasher.verify(h, "") is False


@pytest.mark.parametrize("stored", [None, "", "not-a-hash", "$argon2id$v=19$m=1024,t=1,p=1$xx$yy"])
def test_password_verify_without_a_usable_hash(hasher, stored):
    assert hasher.verify(stored, "anything") is False


def test_dummy_hash_never_matches(hasher):
    """The dummy hash equalises timing for unknown accounts; even its own password must
    not sign anyone in."""
    assert hasher.verify(None, "timing-equaliser-not-a-password") is False


def test_needs_rehash(hasher):
    h = hasher.hash("pw")
    assert hasher.needs_rehash(h) is False
    assert PasswordHasher(memory_cost=1024, time_cost=2).needs_rehash(h) is True
    assert PasswordHasher(memory_cost=2048, time_cost=1).needs_rehash(h) is True
    assert hasher.needs_rehash("not-a-hash") is True
    # A stronger hasher still verifies old hashes (then rehashes them).
    assert PasswordHasher(memory_cost=2048, time_cost=2).verify(h, "pw") is True


@pytest.mark.parametrize(
    ("password", "ok"),
    [("a" * 11, False), ("a" * 12, True), ("a" * 128, True), ("a" * 129, False), (" " * 12, False)],
)
def test_validate_new_password(password, ok):
    error = validate_new_password(password, min_length=12, max_length=128)
    assert (error is None) is ok
