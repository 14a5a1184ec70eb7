"""Phone numbers for text-message and voice-call codes: parse, normalize, refuse, mask.

Numbers are parsed with ``phonenumbers`` (Google's libphonenumber metadata) and kept in
E.164 form (ITU-T E.164, ``+12025550143``). Refused: anything that does not parse or
is not a valid number for its region; numbers whose type says they cost the caller
or are not a person's phone (premium rate, shared cost, UAN, voicemail, pager,
personal-number forwarding: the classic toll-fraud and interception vectors); and,
for text messages, toll-free and fixed-line numbers, which cannot receive SMS.
"""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from ...security.text import is_ascii_digits

# Types that are never a user's own phone, or that bill the caller (toll fraud).
REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: "premium-rate",
    PhoneNumberType.SHARED_COST: "shared-cost",
    PhoneNumberType.UAN: "company switchboard",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.PERSONAL_NUMBER: "call-forwarding",
}
# Types that cannot receive a text message.
NO_SMS_TYPES = {
    PhoneNumberType.TOLL_FREE: "toll-free",
    PhoneNumberType.FIXED_LINE: "landline",
}

MAX_INPUT = 40


class PhoneNumberError(ValueError):
    """The number cannot be used; the message is safe to show to the user."""


def parse_phone(raw: str, *, region: str = "US", channel: str = "sms") -> str:
    """The E.164 form of *raw* for *channel* (``"sms"`` or ``"voice"``), or raise
    :class:`PhoneNumberError` with a message for the user."""
    text = (raw or "").strip()
    if not text:
        raise PhoneNumberError("Enter a phone number.")
    if len(text) > MAX_INPUT:
        raise PhoneNumberError("That phone number is too long.")
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        raise PhoneNumberError(
            "That does not look like a phone number. Enter it with the area code, "
            "for example 202-555-0143, or with + and the country code."
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneNumberError(
            "That phone number is not valid. Check the digits and the country code."
        )
    kind = phonenumbers.number_type(number)
    if kind in REFUSED_TYPES:
        raise PhoneNumberError(
            f"That looks like a {REFUSED_TYPES[kind]} number, which cannot be used. "
            "Enter your own mobile or home phone number."
        )
    if channel == "sms" and kind in NO_SMS_TYPES:
        raise PhoneNumberError(
            f"That looks like a {NO_SMS_TYPES[kind]} number, which cannot receive text "
            "messages. Enter a mobile number, or choose a voice call instead."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """``***-***-1234``: enough for the user to recognize the number, no more."""
    digits = "".join(ch for ch in e164 if is_ascii_digits(ch))
    return f"***-***-{digits[-4:]}"
