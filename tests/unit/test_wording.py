"""Dates, durations and phone numbers in words (idp/wording.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from idp.wording import duration_words, long_date, tel_uri


@pytest.mark.parametrize(
    ("written", "uri"),
    [
        ("877-577-5331", "tel:+18775775331"),
        ("1-877-577-5331", "tel:+18775775331"),
        ("(877) 577-5331", "tel:+18775775331"),
        ("+44 20 7946 0958", "tel:+442079460958"),
        ("+1 877 577 5331", "tel:+18775775331"),
        ("577-5331", "tel:5775331"),  # a local number stays local (RFC 3966 local-number)
        ("", ""),
        ("call us", ""),
    ],
)
def test_tel_uri_is_global_for_north_american_numbers(written: str, uri: str) -> None:
    assert tel_uri(written) == uri


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 minute"),
        (45, "1 minute"),
        (600, "10 minutes"),
        (89 * 60, "89 minutes"),
        (90 * 60, "2 hours"),
        (47 * 3600, "47 hours"),
        (3 * 86400, "3 days"),
    ],
)
def test_durations_are_said_in_the_largest_unit_people_use(seconds: int, words: str) -> None:
    assert duration_words(seconds) == words


def test_dates_are_written_in_words_from_datetimes_and_unix_times() -> None:
    moment = dt.datetime(2026, 12, 4, 15, 7, tzinfo=dt.UTC)
    assert long_date(moment) == "December 4, 2026"
    assert long_date(int(moment.timestamp())) == "December 4, 2026"
    assert long_date(moment, locale="es") == "4 de diciembre de 2026"
