"""How strongly the user signed in: ``acr``, ``amr`` and ``auth_time`` in plain words,
and the step-up rule Form C applies.

The provider states the level in the ID token (and the access token) as an ``acr``
(Authentication Context Class Reference, OpenID Connect Core 2) and the methods as
``amr`` values (RFC 8176). Levels are ordered; a token at a higher level satisfies a
lower requirement. A relying party only compares levels it knows: an unknown ``acr``
satisfies nothing but an identical requirement.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

ACR_AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"
ACR_AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
ACR_PHISHING_RESISTANT = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"

# Lowest first.
ACR_LEVELS: tuple[str, ...] = (ACR_AAL1, ACR_MFA, ACR_AAL2, ACR_PHISHING_RESISTANT)

ACR_WORDS: dict[str, str] = {
    ACR_AAL1: "Password only",
    ACR_MFA: "Password and a second step (MFA)",
    ACR_AAL2: "Password and a strong second step (NIST AAL2)",
    ACR_PHISHING_RESISTANT: "Phishing-resistant security key or passkey",
}

AMR_WORDS: dict[str, str] = {
    "pwd": "password",
    "otp": "authenticator app code",
    "hwk": "security key",
    "swk": "passkey",
    "lookup": "recovery code",
    "user": "presence check",
    "mfa": "more than one factor",
}


def acr_words(acr: str | None) -> str:
    if not acr:
        return "Not stated by the provider"
    return ACR_WORDS.get(acr, f"Unrecognized level ({acr})")


def amr_words(amr: Iterable[str] | None) -> list[str]:
    """Each amr value in words, in the order given (unknown values as they are)."""
    if not amr or isinstance(amr, str):
        return []
    return [AMR_WORDS.get(value, str(value)) for value in amr]


def satisfies(acr: str | None, required: str) -> bool:
    """Whether a token at level *acr* meets *required* (an equal or higher level)."""
    if not acr:
        return False
    if acr == required:
        return True
    if acr in ACR_LEVELS and required in ACR_LEVELS:
        return ACR_LEVELS.index(acr) >= ACR_LEVELS.index(required)
    return False


def auth_age(claims: Mapping[str, Any], now: float | None = None) -> float | None:
    """Seconds since ``auth_time``, or ``None`` when it is missing or malformed."""
    auth_time = claims.get("auth_time")
    if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
        return None
    return (time.time() if now is None else now) - auth_time


def shortfall(
    claims: Mapping[str, Any], required_acr: str, max_age: int, now: float | None = None
) -> str | None:
    """Why *claims* (of an ID or access token) are too weak for the step-up rule, in
    words for ``error_description`` and pages; ``None`` when they are strong enough."""
    if not satisfies(claims.get("acr"), required_acr):
        return "This needs a sign-in with a second step (multi-factor authentication)."
    age = auth_age(claims, now)
    if age is None:
        return "The sign-in time is unknown; sign in again."
    if age > max_age:
        return f"Your sign-in is older than {max_age // 60} minutes; confirm it is you again."
    return None


def utc_time(timestamp: float | None) -> str:
    """``"2026-07-01 14:03 UTC"``."""
    if timestamp is None:
        return "unknown"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(seconds: float | None) -> str:
    """``"less than a minute ago"``, ``"1 minute ago"``, ``"25 minutes ago"``, ..."""
    if seconds is None:
        return "at an unknown time"
    minutes = int(max(seconds, 0) // 60)
    if minutes == 0:
        return "less than a minute ago"
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} hours ago"
    return f"{hours // 24} days ago"
