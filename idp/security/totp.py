"""TOTP (RFC 6238) as small pure functions: the "authenticator app" factor's crypto.

160-bit secrets, 6 digits, 30-second steps, one step of drift either way, and each
time step accepted at most once per factor (NIST SP 800-63B 5.1.4.2: an OTP is used
once). Callers persist the matched step and refuse any step not newer than it.
"""

from __future__ import annotations

import time
from urllib.parse import quote

import pyotp

from ..security.crypto import equal
from .text import is_ascii_digits

DIGITS = 6
PERIOD = 30
DRIFT_STEPS = 1
SECRET_BYTES = 20  # 160 bits (RFC 4226 section 4 recommends 160)


class InvalidTOTPError(Exception):
    """The code is malformed or matches no step in the accepted window."""


class ReplayedTOTPError(InvalidTOTPError):
    """The code matches a time step that was already used (or an older one)."""


def new_secret() -> str:
    """A fresh base32 secret (32 characters, 160 bits)."""
    return pyotp.random_base32(length=32)


def provisioning_uri(secret: str, *, account: str, issuer: str) -> str:
    """The ``otpauth://`` URI apps scan (Google Authenticator key URI format)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    return (
        f"otpauth://totp/{label}?secret={secret}&issuer={quote(issuer, safe='')}"
        f"&algorithm=SHA1&digits={DIGITS}&period={PERIOD}"
    )


def group_secret(secret: str, size: int = 4) -> str:
    """The secret in groups for manual entry: ``ABCD EFGH ...``."""
    return " ".join(secret[i : i + size] for i in range(0, len(secret), size))


def normalize_code(code: str) -> str:
    return "".join(ch for ch in code if not ch.isspace() and ch != "-")


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // PERIOD)


def verify(secret: str, code: str, *, last_step: int | None, now: float | None = None) -> int:
    """Return the matched time step, or raise.

    Every candidate step is compared in constant time, so timing does not reveal which
    step (or whether any) matched.
    """
    code = normalize_code(code)
    if len(code) != DIGITS or not is_ascii_digits(code):
        raise InvalidTOTPError("a code is 6 digits")
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    step = current_step(now)
    matched: int | None = None
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        expected = totp.generate_otp(candidate)
        if equal(expected, code) and matched is None:
            matched = candidate
    if matched is None:
        raise InvalidTOTPError("no match in the accepted window")
    if last_step is not None and matched <= last_step:
        raise ReplayedTOTPError("time step already used")
    return matched
