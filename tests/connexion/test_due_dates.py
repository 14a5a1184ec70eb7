"""Federal holidays, business days and Form C due dates, against dates worked out by hand
from a calendar (5 U.S.C. 6103; Saturday holidays observed on Friday, Sunday ones on
Monday)."""

from __future__ import annotations

from datetime import date

import pytest

from clients.connexion.due_dates import (
    add_business_days,
    form_c_due_date,
    is_business_day,
    next_form_c_due,
    period_code,
    period_label,
    period_start_from_code,
    us_federal_holidays,
)

D = date

HOLIDAYS_2026 = {
    D(2026, 1, 1): "New Year's Day",  # Thursday
    D(2026, 1, 19): "Birthday of Martin Luther King, Jr.",  # 3rd Monday
    D(2026, 2, 16): "Washington's Birthday",  # 3rd Monday
    D(2026, 5, 25): "Memorial Day",  # last Monday (May 31 is a Sunday)
    D(2026, 6, 19): "Juneteenth National Independence Day",  # Friday
    D(2026, 7, 3): "Independence Day (observed)",  # July 4 is a Saturday
    D(2026, 7, 4): "Independence Day",
    D(2026, 9, 7): "Labor Day",  # 1st Monday (September 1 is a Tuesday)
    D(2026, 10, 12): "Columbus Day",  # 2nd Monday
    D(2026, 11, 11): "Veterans Day",  # Wednesday
    D(2026, 11, 26): "Thanksgiving Day",  # 4th Thursday
    D(2026, 12, 25): "Christmas Day",  # Friday
}

HOLIDAYS_2027 = {
    D(2027, 1, 1): "New Year's Day",  # Friday
    D(2027, 1, 18): "Birthday of Martin Luther King, Jr.",
    D(2027, 2, 15): "Washington's Birthday",
    D(2027, 5, 31): "Memorial Day",  # May 31 is itself the last Monday
    D(2027, 6, 18): "Juneteenth National Independence Day (observed)",  # 19th: Saturday
    D(2027, 6, 19): "Juneteenth National Independence Day",
    D(2027, 7, 4): "Independence Day",  # Sunday
    D(2027, 7, 5): "Independence Day (observed)",
    D(2027, 9, 6): "Labor Day",
    D(2027, 10, 11): "Columbus Day",
    D(2027, 11, 11): "Veterans Day",  # Thursday
    D(2027, 11, 25): "Thanksgiving Day",
    D(2027, 12, 24): "Christmas Day (observed)",  # 25th: Saturday
    D(2027, 12, 25): "Christmas Day",
    D(2027, 12, 31): "New Year's Day (observed)",  # January 1, 2028 is a Saturday
}


def test_holidays_2026():
    assert us_federal_holidays(2026) == HOLIDAYS_2026


def test_holidays_2027():
    assert us_federal_holidays(2027) == HOLIDAYS_2027


def test_holidays_named_in_the_brief():
    assert us_federal_holidays(2026)[D(2026, 7, 3)] == "Independence Day (observed)"
    assert us_federal_holidays(2027)[D(2027, 7, 5)] == "Independence Day (observed)"
    assert us_federal_holidays(2027)[D(2027, 12, 24)] == "Christmas Day (observed)"
    assert us_federal_holidays(2026)[D(2026, 11, 26)] == "Thanksgiving Day"


def test_new_years_day_on_saturday_is_observed_the_year_before():
    assert D(2027, 12, 31) in us_federal_holidays(2027)
    h2028 = us_federal_holidays(2028)
    assert D(2027, 12, 31) not in h2028
    assert h2028[D(2028, 1, 1)] == "New Year's Day"  # a Saturday: no weekday off in 2028
    assert not is_business_day(D(2027, 12, 31))


def test_eleven_holidays_every_year():
    for year in range(2020, 2040):
        names = {name.removesuffix(" (observed)") for name in us_federal_holidays(year).values()}
        # A year whose New Year's Day is observed on Dec 31 of the year before still
        # lists its January 1.
        assert len(names) == 11, (year, names)
        for day, name in us_federal_holidays(year).items():
            assert day.year == year
            if name.endswith("(observed)"):
                assert day.weekday() in (0, 4)  # Monday or Friday


def test_business_days():
    assert is_business_day(D(2026, 7, 2))  # Thursday
    assert not is_business_day(D(2026, 7, 3))  # observed holiday
    assert not is_business_day(D(2026, 7, 4))  # Saturday
    assert not is_business_day(D(2026, 11, 26))  # Thanksgiving
    assert is_business_day(D(2026, 11, 27))  # the Friday after is a working day


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        (D(2026, 3, 2), 0, D(2026, 3, 2)),  # zero days: the start itself
        (D(2026, 3, 2), 1, D(2026, 3, 3)),  # Monday -> Tuesday
        (D(2026, 3, 6), 1, D(2026, 3, 9)),  # Friday -> Monday, over the weekend
        (D(2026, 3, 7), 1, D(2026, 3, 9)),  # from a Saturday
        (D(2026, 3, 2), 5, D(2026, 3, 9)),  # a whole week
        (D(2026, 7, 2), 1, D(2026, 7, 6)),  # Thu -> Mon, over Fri Jul 3 (observed) + weekend
        (D(2026, 11, 25), 1, D(2026, 11, 27)),  # over Thanksgiving
        (D(2026, 12, 24), 1, D(2026, 12, 28)),  # over Christmas (Fri) and the weekend
        (D(2027, 12, 23), 1, D(2027, 12, 27)),  # over Christmas observed on Fri Dec 24
        (D(2027, 12, 30), 1, D(2028, 1, 3)),  # over New Year's observed on Fri Dec 31
        (D(2027, 7, 1), 2, D(2027, 7, 6)),  # Fri Jul 2, then Tue Jul 6 (Mon observed)
        (D(2026, 1, 16), 1, D(2026, 1, 20)),  # over the weekend and MLK Day
    ],
)
def test_add_business_days(start, n, expected):
    assert add_business_days(start, n) == expected


def test_add_business_days_refuses_negative():
    with pytest.raises(ValueError):
        add_business_days(D(2026, 3, 2), -1)


# Worked by hand: count 10 business days after June 30 / December 31 (the CBIC wording).
#   2026-01: Jan 1 holiday; 2,5,6,7,8,9,12,13,14,15 -> Jan 15
#   2026-07: Jul 1,2, (3 observed, 4-5 weekend), 6,7,8,9,10,13,14,15 -> Jul 15
#   2027-01: Jan 1 holiday; 4,5,6,7,8,11,12,13,14,15 -> Jan 15
#   2027-07: Jul 1,2, (3-4 weekend, 5 observed), 6,7,8,9,12,13,14,15 -> Jul 15
#   2028-01: Jan 1 Saturday; 3,4,5,6,7,10,11,12,13,14 -> Jan 14
#   2021-01: the CBIC's own example, "due no later than Friday, January 15, 2021"
@pytest.mark.parametrize(
    ("period_start", "due"),
    [
        (D(2026, 1, 1), D(2026, 1, 15)),
        (D(2026, 7, 1), D(2026, 7, 15)),
        (D(2027, 1, 1), D(2027, 1, 15)),
        (D(2027, 7, 1), D(2027, 7, 15)),
        (D(2028, 1, 1), D(2028, 1, 14)),
        (D(2021, 1, 1), D(2021, 1, 15)),
    ],
)
def test_form_c_due_date(period_start, due):
    assert form_c_due_date(period_start) == due


def test_form_c_due_date_counts_the_july_holiday():
    # Without the observed Independence Day, July 2026 would be due on the 14th.
    assert form_c_due_date(D(2026, 7, 1)) != D(2026, 7, 14)
    assert add_business_days(D(2026, 6, 30), 10) == D(2026, 7, 15)


def test_form_c_due_date_only_for_period_starts():
    with pytest.raises(ValueError):
        form_c_due_date(D(2026, 7, 2))


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (D(2026, 3, 1), ("July–December 2026", D(2026, 7, 15))),
        (D(2026, 7, 15), ("July–December 2026", D(2026, 7, 15))),  # due today: still next
        (D(2026, 7, 16), ("January–June 2027", D(2027, 1, 15))),
        (D(2025, 12, 31), ("January–June 2026", D(2026, 1, 15))),
        (D(2026, 1, 15), ("January–June 2026", D(2026, 1, 15))),
        (D(2026, 1, 16), ("July–December 2026", D(2026, 7, 15))),
        (D(2027, 11, 28), ("January–June 2028", D(2028, 1, 14))),
    ],
)
def test_next_form_c_due(today, expected):
    assert next_form_c_due(today) == expected


def test_period_codes_round_trip():
    for start in (D(2026, 1, 1), D(2026, 7, 1)):
        assert period_start_from_code(period_code(start)) == start
    assert period_code(D(2026, 7, 1)) == "2026-H2"
    assert period_label(D(2026, 1, 1)) == "January–June 2026"
    for bad in ("2026-H3", "2026H1", "26-H1", "", "abcd-H1"):
        with pytest.raises(ValueError):
            period_start_from_code(bad)
