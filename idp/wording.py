"""Words for people: dates, lengths of time, numbers and the help line's tel: link, as
the pages, emails and messages write them, in English or in another language of
:mod:`idp.i18n` (pure functions of their arguments, no request needed).

English keeps the style of U.S. government writing ("December 4, 2026, 3:05 p.m. UTC");
other languages follow the CLDR conventions of that language as written in the United
States (Babel's ``es_US``: "4 de diciembre de 2026, 3:05 p.m. UTC", "12,345")."""

from __future__ import annotations

from typing import Any

from .security.text import is_ascii_digits

#: The CLDR locale whose conventions a language's dates and numbers follow.
FORMAT_LOCALES = {"en": "en_US", "es": "es_US"}


def _cldr(locale: str) -> str:
    return FORMAT_LOCALES.get(locale, locale)


def long_date(value: Any, *, with_time: bool = False, locale: str = "en") -> str:
    """A date in words for people: "December 4, 2026" (and ", 3:05 p.m. UTC"), from a
    date, a datetime (UTC) or an ISO date string, in *locale*'s language ("4 de
    diciembre de 2026"). Never 2026-12-04 on a page or in an email."""
    import datetime as dt

    if value in (None, ""):
        return ""
    if isinstance(value, int | float):  # a Unix time
        value = dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        value = (
            dt.date.fromisoformat(value[:10]) if not with_time else dt.datetime.fromisoformat(value)
        )
    day = value.date() if isinstance(value, dt.datetime) else value
    if locale != "en":
        from babel.dates import format_date, format_time

        text = format_date(day, "long", locale=_cldr(locale))
        if with_time and isinstance(value, dt.datetime):
            t = value.astimezone(dt.UTC) if value.tzinfo else value.replace(tzinfo=dt.UTC)
            text += f", {format_time(t, 'short', tzinfo=dt.UTC, locale=_cldr(locale))} UTC"
        return text
    text = f"{day:%B} {day.day}, {day.year}"
    if with_time and isinstance(value, dt.datetime):
        t = value.astimezone(dt.UTC) if value.tzinfo else value
        hour = t.hour % 12 or 12
        text += f", {hour}:{t.minute:02d} {'a.m.' if t.hour < 12 else 'p.m.'} UTC"
    return text


def duration_words(seconds: int | float, *, locale: str = "en") -> str:
    """A length of time as people say it, rounded up: "45 minutes", "2 hours", "3 days"
    (days when it is days: never "4320 minutes"), in *locale*'s language ("45 minutos")."""
    seconds = max(1, int(seconds))
    minutes = -(-seconds // 60)
    hours = -(-minutes // 60)
    days = -(-hours // 24)
    amount, unit = (
        (minutes, "minute") if minutes < 90 else (hours, "hour") if hours < 48 else (days, "day")
    )
    if locale == "en":
        return f"{amount} {unit}{'' if amount == 1 else 's'}"
    from babel.units import format_unit

    return format_unit(amount, f"duration-{unit}", length="long", locale=_cldr(locale))


def number(value: int | float, *, locale: str = "en") -> str:
    """A number as *locale* writes it ("12,345" in English and in U.S. Spanish)."""
    from babel.numbers import format_decimal

    return format_decimal(value, locale=_cldr(locale))


def tel_uri(phone: str) -> str:
    """A ``tel:`` URI (RFC 3966) for a help line as written ("877-577-5331"), or ''."""
    digits = "".join(ch for ch in phone if ch == "+" or is_ascii_digits(ch))
    if not digits:
        return ""
    if not digits.startswith("+") and len(digits) == 10:
        digits = "+1" + digits  # a North American number written without the country code
    elif not digits.startswith("+") and len(digits) == 11 and digits.startswith("1"):
        digits = "+" + digits  # "1-877-...": the North American country code, written
    return f"tel:{digits}"
