"""Codes by text message (SMS) or voice call: AAL2, but "restricted" authenticators.

NIST SP 800-63B 5.1.3.3: the public telephone network is a restricted out-of-band
channel (SIM swap, number porting, interception), so the account page flags these
factors and suggests a stronger one. Numbers are stored in E.164, encrypted at rest.
amr values are RFC 8176's ``sms`` and ``tel``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from ...delivery import TextMessage, VoiceMessage
from ...delivery.twilio import say_code_twiml
from ...i18n import page_locale
from ...models import User
from ..base import EnrollmentError
from .factor import CodeFactor
from .numbers import PhoneNumberError, mask_phone, parse_phone
from .otp import Sent

#: The voice that reads a code, by the language of the page that asked for it (BCP 47,
#: as Twilio's ``<Say language>`` takes it).
VOICE_LANGUAGES = {"en": "en-US", "es": "es-US"}


class PhoneFactor(CodeFactor):
    destination_label = _l("Phone number")
    already_set_up = _l("That phone number is already set up.")

    def _context(self, user: User) -> str:
        return f"phone:{user.id}"

    def parse_destination(self, raw: str) -> str:
        try:
            return parse_phone(raw, region=self.svc.settings.otp.phone_region, channel=self.type)
        except PhoneNumberError as exc:
            raise EnrollmentError(exc.args[0]) from None

    def mask(self, destination: str) -> str:
        return mask_phone(destination)


class SmsFactor(PhoneFactor):
    type = "sms"
    display_name = _l("Text message")
    description = _l("Get a 6-digit code by text message on your mobile phone.")
    amr = ("sms",)
    channel_noun = _l("a text message")

    def message(self, sent: Sent) -> str:
        """The text, in the language of the page that asked for it: names the service,
        says never to share the code, and ends with the WebOTP line ``@host #code`` (WICG
        WebOTP, "SMS format") for one-tap autofill."""
        service = self.svc.settings.ui.service_name
        host = urlsplit(self.svc.settings.issuer).hostname or "localhost"
        text = ngettext(
            "%(service)s: your verification code is %(code)s. It expires in %(num)d minute. "
            "Never share it with anyone; we will never ask for it.",
            "%(service)s: your verification code is %(code)s. It expires in %(num)d minutes. "
            "Never share it with anyone; we will never ask for it.",
            self.minutes(sent),
            service=service,
            code=sent.code,
        )
        return f"{text}\n\n@{host} #{sent.code}"

    def deliver(self, user: User, destination: str, sent: Sent) -> None:
        self.svc.sms.send(TextMessage(to=destination, text=self.message(sent), purpose="otp.sms"))


class VoiceFactor(PhoneFactor):
    type = "voice"
    display_name = _l("Voice call")
    description = _l("Get a phone call that reads a 6-digit code aloud. Works with landlines.")
    amr = ("tel",)
    channel_noun = _l("a phone call")

    def send_notice(self, masked: str) -> str:
        return _("We will call you at %(destination)s and read a 6-digit code aloud.",
                 destination=masked)  # fmt: skip

    def sent_notice(self, masked: str, minutes: int) -> str:
        return ngettext(
            "We are calling you at %(destination)s. Answer the call and listen for the "
            "6-digit code. The code expires %(num)d minute after the call.",
            "We are calling you at %(destination)s. Answer the call and listen for the "
            "6-digit code. The code expires %(num)d minutes after the call.",
            minutes,
            destination=masked,
        )

    def deliver(self, user: User, destination: str, sent: Sent) -> None:
        """The call, in the language of the page that asked for it (its words and the
        voice that reads them)."""
        service = self.svc.settings.ui.service_name
        intro = _("Hello. This is %(service)s. Your verification code is", service=service)
        again = _("Again, your code is")
        outro = _("Never share this code with anyone. Goodbye.")
        spoken = ", ".join(sent.code)
        text = f"{intro} {spoken}. {again} {spoken}. {outro} (code {sent.code})"
        self.svc.voice.send(
            VoiceMessage(
                to=destination,
                text=text,
                twiml=say_code_twiml(
                    intro,
                    sent.code,
                    outro,
                    again=again,
                    language=VOICE_LANGUAGES.get(page_locale()),
                ),
                purpose="otp.voice",
            )  # fmt: skip
        )
