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
from datetime import UTC, date, datetime
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

ACR_AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"
ACR_AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
ACR_PHISHING_RESISTANT = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"

# Lowest first.
ACR_LEVELS: tuple[str, ...] = (ACR_AAL1, ACR_MFA, ACR_AAL2, ACR_PHISHING_RESISTANT)

ACR_WORDS: dict[str, str] = {
    ACR_AAL1: _l("Password only"),
    ACR_MFA: _l("Password and a second step (MFA)"),
    ACR_AAL2: _l("Password and a strong second step (NIST AAL2)"),
    ACR_PHISHING_RESISTANT: _l("Phishing-resistant security key or passkey"),
}

AMR_WORDS: dict[str, str] = {
    "pwd": _l("password"),
    "otp": _l("authenticator app code"),
    "hwk": _l("security key"),
    "swk": _l("passkey"),
    "lookup": _l("recovery code"),
    "sms": _l("text message code"),
    "tel": _l("voice call code"),
    "email": _l("email code"),
    "user": _l("fingerprint, face or screen lock check"),
    "mfa": _l("more than one sign-in step"),
}
# A key kept in software without a user-presence test ("swk" without "user") is the
# companion app's device key: a push approval, not a passkey (the provider's docs/PUSH.md).
PUSH_WORDS = _l("approval in the companion app")


def acr_words(acr: str | None) -> str:
    if not acr:
        return _("Not stated by the provider")
    if acr in ACR_WORDS:
        return str(ACR_WORDS[acr])
    return _("Unrecognized level (%(acr)s)", acr=acr)


def amr_words(amr: Iterable[str] | None) -> list[str]:
    """Each amr value in words, in the order given (unknown values as they are)."""
    if not amr or isinstance(amr, str):
        return []
    values = list(amr)
    push = "swk" in values and "user" not in values
    return [str(PUSH_WORDS if push and v == "swk" else AMR_WORDS.get(v, v)) for v in values]


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
        return _("This needs a sign-in with a second step (multi-factor authentication).")
    age = auth_age(claims, now)
    if age is None:
        return _("The sign-in time is unknown; sign in again.")
    if age > max_age:
        return ngettext(
            "Your sign-in is older than %(num)d minute; confirm it is you again.",
            "Your sign-in is older than %(num)d minutes; confirm it is you again.",
            max_age // 60,
        )
    return None


def utc_time(timestamp: float | None) -> str:
    """``"July 1, 2026, 2:03 p.m. UTC"``: dates in words, never 2026-07-01."""
    if timestamp is None:
        return _("unknown")
    t = datetime.fromtimestamp(timestamp, UTC)
    lang = _page_locale()
    if lang != "en":
        from babel.dates import format_date, format_time

        from .i18n import FORMAT_LOCALES

        cldr = FORMAT_LOCALES.get(lang, lang)
        return (
            f"{format_date(t.date(), 'long', locale=cldr)}, "
            f"{format_time(t, 'short', tzinfo=UTC, locale=cldr)} UTC"
        )
    hour = t.hour % 12 or 12
    return (
        f"{t:%B} {t.day}, {t.year}, {hour}:{t.minute:02d} {'a.m.' if t.hour < 12 else 'p.m.'} UTC"
    )


def long_date(day: date | None) -> str:
    """``"January 3, 2027"``."""
    from .i18n import long_date as in_words

    return in_words(day)


def _page_locale() -> str:
    from .i18n import page_locale

    return page_locale()


def ago(seconds: float | None) -> str:
    """``"less than a minute ago"``, ``"1 minute ago"``, ``"25 minutes ago"``, ..."""
    if seconds is None:
        return _("at an unknown time")
    minutes = int(max(seconds, 0) // 60)
    if minutes == 0:
        return _("less than a minute ago")
    if minutes < 120:
        return ngettext("%(num)d minute ago", "%(num)d minutes ago", minutes)
    hours = minutes // 60
    if hours < 48:
        return ngettext("%(num)d hour ago", "%(num)d hours ago", hours)
    return ngettext("%(num)d day ago", "%(num)d days ago", hours // 24)
