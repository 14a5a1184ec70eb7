"""New-password policy (NIST SP 800-63B 3.1.1.2): length only, every character allowed,
no composition rules; common, breached-style, repetitive, sequential and
context-specific passwords refused, offline."""

from __future__ import annotations

import pytest

from idp.config import load_settings
from idp.security.password_policy import check_for, check_new_password

CONTEXT = ["ada@example.com", "Ada Lovelace"]


def check(password: str, **kw) -> str | None:
    return check_new_password(password, user_inputs=CONTEXT, **kw)


@pytest.mark.parametrize(
    "password",
    [
        "correct horse battery staple",
        "a perfectly fine passphrase",
        "Tr0ub4dor&3xyz",
        "ilovemydogsam12",
        "emoji 😀 and ünïcödé wörds stay fine",
        "         spaces inside   are fine too",
        "x7#Kp!2qZ@9w",  # no rule about symbols or digits, either way
        "tHiS pAsSwOrD hAs nO rUlEs At aLL",
    ],
)
def test_good_passwords_are_accepted(password):
    assert check(password) is None


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("short", "at least 12"),
        ("elevenchars", "at least 12"),
        ("x" * 129, "at most 128"),
        (" " * 20, "only spaces"),
    ],
)
def test_length_limits(password, expected):
    assert expected in check(password)


def test_exactly_the_limits_are_allowed():
    assert check_new_password("q8#vZ!m2Lr@x", min_score=0) is None  # 12
    long = ("unrelated words make strong passphrases " * 4)[:128]
    assert len(long) == 128 and check(long) is None


def test_limits_follow_settings():
    assert "at least 30" in check("correct horse battery staple", min_length=30)
    assert "at most 70" in check("correct horse battery staple " * 3, max_length=70)


@pytest.mark.parametrize(
    "password",
    ["password12345", "password1234!", "iloveyou1234567", "Password123456", "letmein123456"],
)
def test_common_passwords_are_refused(password):
    message = check(password)
    assert message and ("common" in message or "easy to guess" in message), message


@pytest.mark.parametrize(
    "password", ["aaaaaaaaaaaaaaaa", "abababababab", "xyzxyzxyzxyz", "111111111111"]
)
def test_repetitions_are_refused(password):
    assert "repeated" in check(password).lower()


@pytest.mark.parametrize(
    "password", ["abcdefghijklmnop", "1234567890123", "qwertyuiopasdf", "zyxwvutsrqponm"]
)
def test_sequences_are_refused(password):
    assert "sequence" in check(password).lower()


@pytest.mark.parametrize(
    "password", ["adalovelace1815", "ada@example.com!!", "lovelace.example", "Lovelace Ada 2024"]
)
def test_context_specific_passwords_are_refused(password):
    message = check(password)
    assert message and "name or email" in message, message


def test_the_context_words_matter():
    # The same password is fine for someone else.
    assert check_new_password("adalovelace1815 & co", user_inputs=["bob@other.org"]) is None
    assert check_new_password("adalovelace1815 & co", user_inputs=CONTEXT) is not None


def test_score_threshold_is_configurable():
    weak_but_long = "Summer2024Summer"
    assert check_new_password(weak_but_long, min_score=4) is not None
    assert check_new_password("password12345", min_score=0) is None


def test_check_for_uses_the_settings_and_the_service_name():
    settings = load_settings(environ={})
    assert "at least 12" in check_for(settings, "tooshort")
    name = settings.ui.service_name.lower().replace(" ", "")
    assert check_for(settings, name + "2025!") is not None
    assert check_for(settings, "correct horse battery staple", ["ada@example.com"]) is None
