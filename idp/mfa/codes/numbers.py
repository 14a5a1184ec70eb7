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
from flask_babel import lazy_gettext as _l
from phonenumbers import NumberParseException, PhoneNumberType

from ...security.text import is_ascii_digits

# Types that are never a user's own phone, or that bill the caller (toll fraud).
# (Each name completes "That looks like a ... number" in the page's language.)
REFUSED_TYPES = {
    PhoneNumberType.PREMIUM_RATE: _l("premium-rate"),
    PhoneNumberType.SHARED_COST: _l("shared-cost"),
    PhoneNumberType.UAN: _l("company switchboard"),
    PhoneNumberType.VOICEMAIL: _l("voicemail"),
    PhoneNumberType.PAGER: _l("pager"),
    PhoneNumberType.PERSONAL_NUMBER: _l("call-forwarding"),
}
# Types that cannot receive a text message.
NO_SMS_TYPES = {
    PhoneNumberType.TOLL_FREE: _l("toll-free"),
    PhoneNumberType.FIXED_LINE: _l("landline"),
}

MAX_INPUT = 40


class PhoneNumberError(ValueError):
    """The number cannot be used; the message (``args[0]``, lazy: in the page's
    language) is safe to show to the user."""


def parse_phone(raw: str, *, region: str = "US", channel: str = "sms") -> str:
    """The E.164 form of *raw* for *channel* (``"sms"`` or ``"voice"``), or raise
    :class:`PhoneNumberError` with a message for the user."""
    text = (raw or "").strip()
    if not text:
        raise PhoneNumberError(_l("Enter a phone number."))
    if len(text) > MAX_INPUT:
        raise PhoneNumberError(_l("That phone number is too long."))
    try:
        number = phonenumbers.parse(text, region)
    except NumberParseException:
        raise PhoneNumberError(
            _l(
                "That does not look like a phone number. Enter it with the area code, "
                "for example 202-555-0143, or with + and the country code."
            )
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise PhoneNumberError(
            _l("That phone number is not valid. Check the digits and the country code.")
        )
    kind = phonenumbers.number_type(number)
    if kind in REFUSED_TYPES:
        raise PhoneNumberError(
            _l(
                "That looks like a %(kind)s number, which cannot be used. Enter your own "
                "mobile or home phone number.",
                kind=REFUSED_TYPES[kind],
            )
        )
    if channel == "sms" and kind in NO_SMS_TYPES:
        raise PhoneNumberError(
            _l(
                "That looks like a %(kind)s number, which cannot receive text messages. "
                "Enter a mobile number, or choose a voice call instead.",
                kind=NO_SMS_TYPES[kind],
            )
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """``***-***-1234``: enough for the user to recognize the number, no more."""
    digits = "".join(ch for ch in e164 if is_ascii_digits(ch))
    return f"***-***-{digits[-4:]}"
