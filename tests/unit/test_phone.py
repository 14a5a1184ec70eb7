"""Phone numbers: parsed to E.164, refused when unusable, shown masked."""

from __future__ import annotations

import pytest

from idp.mfa.codes.numbers import PhoneNumberError, mask_phone, parse_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("202-555-0143", "+12025550143"),
        ("(202) 555 0143", "+12025550143"),
        ("+1 202 555 0143", "+12025550143"),
        ("  2025550143 ", "+12025550143"),
        ("+44 7400 123456", "+447400123456"),  # UK mobile
    ],
)
def test_valid_numbers_become_e164(raw, expected):
    assert parse_phone(raw, region="US", channel="sms") == expected


def test_region_applies_to_numbers_without_a_country_code():
    assert parse_phone("07400 123456", region="GB", channel="sms") == "+447400123456"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "Enter a phone number"),
        ("not a number", "does not look like a phone number"),
        ("12", "not valid"),
        ("+1 202 555 01", "not valid"),
        ("+999 1234 5678", "does not look like a phone number"),
        ("1" * 41, "too long"),
        ("+1 900 234 5678", "premium-rate"),
        ("+44 870 123 4567", "premium-rate"),
        ("+34 901 123 456", "shared-cost"),
        ("+44 300 123 4567", "company switchboard"),
        ("+44 70 1234 5678", "call-forwarding"),
    ],
)
def test_unusable_numbers_are_refused_for_every_channel(raw, message):
    for channel in ("sms", "voice"):
        with pytest.raises(PhoneNumberError, match=message):
            parse_phone(raw, region="US", channel=channel)


@pytest.mark.parametrize(("raw", "kind"), [("+1 800 234 5678", "toll-free"),
                                           ("+44 20 7946 0123", "landline")])  # fmt: skip
def test_numbers_that_cannot_receive_texts_are_refused_for_sms_only(raw, kind):
    with pytest.raises(PhoneNumberError, match=f"{kind} number, which cannot receive text"):
        parse_phone(raw, region="US", channel="sms")
    assert parse_phone(raw, region="US", channel="voice").startswith("+")


def test_mask_shows_the_last_four_digits_only():
    assert mask_phone("+12025550143") == "***-***-0143"
    assert mask_phone("+447400123456") == "***-***-3456"
