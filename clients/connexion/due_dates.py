"""Form C due dates: U.S. federal holidays and business-day arithmetic.

The Form C semi-annual report tells the Supplier Directory what a contract supplier
plans to offer in the six-month period starting January 1 or July 1. The CBIC states
the deadline as "no later than 10 business days after each of the following dates:
June 30 and December 31", that is after the last day of the previous period: the first
day of the period counts as business day 1 when it is one (July 1 often is; January 1
never is). A business day is a weekday that is not a federal holiday.

Federal holidays are the eleven of 5 U.S.C. 6103(a). When one falls on a Saturday it
is observed on the Friday before, and on a Sunday the Monday after (5 U.S.C. 6103(b),
Executive Order 11582, as OPM applies them). One consequence: when January 1 is a
Saturday, New Year's Day is observed on Friday, December 31 of the year before, so
:func:`us_federal_holidays` for that earlier year lists it. Inauguration Day (a holiday
only in the Washington, D.C. area, every four years) is not included.

Everything here is a pure function of dates, with no clock and no I/O::

    >>> form_c_due_date(date(2026, 7, 1))  # July 3 is Independence Day (observed)
    datetime.date(2026, 7, 15)
"""

from __future__ import annotations

import calendar
from datetime import date, timedelta
from functools import lru_cache

from flask_babel import gettext as _

__all__ = [
    "PERIOD_STARTS",
    "add_business_days",
    "form_c_due_date",
    "is_business_day",
    "next_form_c_due",
    "next_form_c_period",
    "period_code",
    "period_label",
    "period_start_from_code",
    "period_starts_around",
    "us_federal_holidays",
]

# (month, day) of the start of each semi-annual reporting period.
PERIOD_STARTS = ((1, 1), (7, 1))
FORM_C_BUSINESS_DAYS = 10

MON, THU, SAT, SUN = 0, 3, 5, 6


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The *n*-th *weekday* (0 = Monday) of the month."""
    first = date(year, month, 1)
    offset = (weekday - first.weekday()) % 7
    return first + timedelta(days=offset + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = date(year, month, calendar.monthrange(year, month)[1])
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Saturday -> the Friday before, Sunday -> the Monday after (5 U.S.C. 6103(b))."""
    if day.weekday() == SAT:
        return day - timedelta(days=1)
    if day.weekday() == SUN:
        return day + timedelta(days=1)
    return day


def _holidays_of(year: int) -> list[tuple[date, str]]:
    """The eleven legal public holidays of *year*, on their actual dates."""
    return [
        (date(year, 1, 1), "New Year's Day"),
        (_nth_weekday(year, 1, MON, 3), "Birthday of Martin Luther King, Jr."),
        (_nth_weekday(year, 2, MON, 3), "Washington's Birthday"),
        (_last_weekday(year, 5, MON), "Memorial Day"),
        (date(year, 6, 19), "Juneteenth National Independence Day"),
        (date(year, 7, 4), "Independence Day"),
        (_nth_weekday(year, 9, MON, 1), "Labor Day"),
        (_nth_weekday(year, 10, MON, 2), "Columbus Day"),
        (date(year, 11, 11), "Veterans Day"),
        (_nth_weekday(year, 11, THU, 4), "Thanksgiving Day"),
        (date(year, 12, 25), "Christmas Day"),
    ]


def us_federal_holidays(year: int) -> dict[date, str]:
    """Federal holidays falling in *year*: actual dates and, where they differ, the
    days off in lieu (named "... (observed)").

    Includes New Year's Day of the next year when it is observed on December 31.
    """
    out: dict[date, str] = {}
    for y in (year, year + 1):
        for day, name in _holidays_of(y):
            if day.year == year:
                out[day] = name
            observed = _observed(day)
            if observed != day and observed.year == year:
                out[observed] = f"{name} (observed)"
    return dict(sorted(out.items()))


@lru_cache(maxsize=32)
def _days_off(year: int) -> frozenset[date]:
    return frozenset(us_federal_holidays(year))


def is_business_day(day: date) -> bool:
    """A weekday that is not a federal holiday (nor a day one is observed on)."""
    return day.weekday() < SAT and day not in _days_off(day.year)


def add_business_days(start: date, n: int) -> date:
    """The *n*-th business day after *start* (*start* itself is not counted).

    ``add_business_days(d, 0)`` is *d*, whatever day it is.
    """
    if n < 0:
        raise ValueError("n must be zero or positive")
    day = start
    while n:
        day += timedelta(days=1)
        if is_business_day(day):
            n -= 1
    return day


def form_c_due_date(period_start: date) -> date:
    """The Form C due date for the period starting *period_start* (January 1 or July 1):
    ten business days after the day before it (December 31 or June 30)."""
    if (period_start.month, period_start.day) not in PERIOD_STARTS:
        raise ValueError(f"{period_start} does not start a semi-annual period")
    return add_business_days(period_start - timedelta(days=1), FORM_C_BUSINESS_DAYS)


def period_label(period_start: date) -> str:
    """``"January–June 2026"`` or ``"July–December 2026"``."""
    if period_start.month == 1:
        return _("January–June %(year)s", year=period_start.year)
    return _("July–December %(year)s", year=period_start.year)


def period_code(period_start: date) -> str:
    """``"2026-H1"`` or ``"2026-H2"``: the value stored and sent to the API."""
    return f"{period_start.year}-H{1 if period_start.month == 1 else 2}"


def period_start_from_code(code: str) -> date:
    """Inverse of :func:`period_code`; ``ValueError`` for anything else."""
    year, sep, half = code.partition("-H")
    if not (sep and len(year) == 4 and year.isdigit() and half in ("1", "2")):
        raise ValueError(f"not a reporting period: {code!r}")
    return date(int(year), 1 if half == "1" else 7, 1)


def period_starts_around(today: date) -> list[date]:
    """Period starts from the year before *today* to the year after, in order."""
    return [date(y, m, d) for y in range(today.year - 1, today.year + 2) for m, d in PERIOD_STARTS]


def next_form_c_period(today: date) -> date:
    """The start of the period whose Form C is due next (a report due *today* counts)."""
    for start in period_starts_around(today):
        if form_c_due_date(start) >= today:
            return start
    raise AssertionError("unreachable: a period starts every six months")  # pragma: no cover


def next_form_c_due(today: date) -> tuple[str, date]:
    """``(period label, due date)`` of the Form C due next (see :func:`next_form_c_period`)."""
    start = next_form_c_period(today)
    return period_label(start), form_c_due_date(start)
