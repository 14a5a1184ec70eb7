"""Build the senders ``[delivery]`` asks for."""

from __future__ import annotations

import logging

from ..config import Settings
from .base import EmailSender, SmsSender, VoiceSender
from .console import ConsoleEmailSender, ConsoleSmsSender, ConsoleVoiceSender

log = logging.getLogger("idp.delivery")


def build_email_sender(settings: Settings) -> EmailSender:
    d = settings.delivery
    if d.email_backend == "smtp":
        from .smtp import SmtpEmailSender

        return SmtpEmailSender(
            host=d.smtp_host,
            port=d.smtp_port,
            security=d.smtp_security,
            sender=d.email_from,
            reply_to=d.email_reply_to,
            username=d.smtp_username,
            password=d.smtp_password,
            timeout=d.smtp_timeout,
        )
    _warn_console(settings, "email_backend")
    return ConsoleEmailSender(d.outbox)


def _twilio(settings: Settings):
    from .twilio import TwilioClient

    d = settings.delivery
    return TwilioClient(
        base_url=d.twilio_base_url,
        account_sid=d.twilio_account_sid,
        auth_token=d.twilio_auth_token,
        sender=d.twilio_from,
        timeout=d.timeout,
        retries=d.retries,
    )


def build_sms_sender(settings: Settings) -> SmsSender:
    if settings.delivery.sms_backend == "twilio":
        from .twilio import TwilioSmsSender

        return TwilioSmsSender(_twilio(settings))
    _warn_console(settings, "sms_backend")
    return ConsoleSmsSender(settings.delivery.outbox)


def build_voice_sender(settings: Settings) -> VoiceSender:
    if settings.delivery.voice_backend == "twilio":
        from .twilio import TwilioVoiceSender

        return TwilioVoiceSender(_twilio(settings))
    _warn_console(settings, "voice_backend")
    return ConsoleVoiceSender(settings.delivery.outbox)


def _warn_console(settings: Settings, key: str) -> None:
    # Allowed (a closed deployment may read the outbox on purpose) but almost always a
    # mistake: codes and messages land in a local file instead of reaching users.
    if settings.is_production:
        log.warning(
            "[delivery] %s is 'console' in production: messages (and sign-in codes) go to "
            "%s, not to users",
            key,
            settings.delivery.outbox,
        )
