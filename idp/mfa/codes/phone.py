"""Codes by text message (SMS) or voice call: AAL2, but "restricted" authenticators.

NIST SP 800-63B 5.1.3.3: the public telephone network is a restricted out-of-band
channel (SIM swap, number porting, interception), so the account page flags these
factors and suggests a stronger one. Numbers are stored in E.164, encrypted at rest.
amr values are RFC 8176's ``sms`` and ``tel``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ...delivery import TextMessage, VoiceMessage
from ...delivery.twilio import say_code_twiml
from ...models import User
from ..base import EnrollmentError
from .factor import CodeFactor
from .numbers import PhoneNumberError, mask_phone, parse_phone
from .otp import Sent


class PhoneFactor(CodeFactor):
    destination_label = "Phone number"

    def _context(self, user: User) -> str:
        return f"phone:{user.id}"

    def parse_destination(self, raw: str) -> str:
        try:
            return parse_phone(raw, region=self.svc.settings.otp.phone_region, channel=self.type)
        except PhoneNumberError as exc:
            raise EnrollmentError(str(exc)) from None

    def mask(self, destination: str) -> str:
        return mask_phone(destination)


class SmsFactor(PhoneFactor):
    type = "sms"
    display_name = "Text message (SMS)"
    description = "Get a 6-digit code by text message on your mobile phone."
    amr = ("sms",)
    channel_noun = "a text message"

    def message(self, sent: Sent) -> str:
        """The text: names the service, says never to share the code, and ends with the
        WebOTP line ``@host #code`` (WICG WebOTP, "SMS format") for one-tap autofill."""
        service = self.svc.settings.ui.service_name
        host = urlsplit(self.svc.settings.issuer).hostname or "localhost"
        return (
            f"{service}: your verification code is {sent.code}. It expires in "
            f"{self.minutes(sent)} minutes. Never share it with anyone; we will never ask "
            f"for it.\n\n@{host} #{sent.code}"
        )

    def deliver(self, user: User, destination: str, sent: Sent) -> None:
        self.svc.sms.send(TextMessage(to=destination, text=self.message(sent), purpose="otp.sms"))


class VoiceFactor(PhoneFactor):
    type = "voice"
    display_name = "Voice call"
    description = "Get a phone call that reads a 6-digit code aloud. Works with landlines."
    amr = ("tel",)
    channel_noun = "a phone call"

    def deliver(self, user: User, destination: str, sent: Sent) -> None:
        service = self.svc.settings.ui.service_name
        intro = f"Hello. This is {service}. Your verification code is"
        outro = "Never share this code with anyone. Goodbye."
        spoken = ", ".join(sent.code)
        text = f"{intro} {spoken}. Again, your code is {spoken}. {outro} (code {sent.code})"
        self.svc.voice.send(
            VoiceMessage(
                to=destination,
                text=text,
                twiml=say_code_twiml(intro, sent.code, outro),
                purpose="otp.voice",
            )  # fmt: skip
        )
