"""[delivery] and [otp] settings: backends, validation, secrets never shown, senders built."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from idp.config import ConfigError, Settings, load_settings
from idp.delivery import ConsoleEmailSender, ConsoleSmsSender, ConsoleVoiceSender
from idp.delivery.build import build_email_sender, build_sms_sender, build_voice_sender
from idp.delivery.smtp import SmtpEmailSender
from idp.delivery.twilio import TwilioSmsSender, TwilioVoiceSender

TWILIO = {
    "IDP_DELIVERY_SMS_BACKEND": "twilio",
    "IDP_DELIVERY_VOICE_BACKEND": "twilio",
    "IDP_DELIVERY_TWILIO_ACCOUNT_SID": "AC123",
    "IDP_DELIVERY_TWILIO_AUTH_TOKEN": "very-secret-token",
    "IDP_DELIVERY_TWILIO_FROM": "+12025550100",
}
SMTP = {
    "IDP_DELIVERY_EMAIL_BACKEND": "smtp",
    "IDP_DELIVERY_SMTP_HOST": "smtp.example.gov",
    "IDP_DELIVERY_SMTP_PORT": "465",
    "IDP_DELIVERY_SMTP_SECURITY": "tls",
    "IDP_DELIVERY_SMTP_USERNAME": "relay",
    "IDP_DELIVERY_SMTP_PASSWORD": "very-secret-password",
}


def refused(**environ: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    return str(info.value)


def test_defaults_are_console_everywhere():
    d = Settings().delivery
    assert (d.email_backend, d.sms_backend, d.voice_backend) == ("console", "console", "console")
    assert Settings().otp.code_ttl == 600


def test_smtp_and_twilio_from_the_environment_build_real_senders():
    s = load_settings(environ={**SMTP, **TWILIO})
    email = build_email_sender(s)
    assert isinstance(email, SmtpEmailSender)
    assert (email.host, email.port, email.security, email.username) == (
        "smtp.example.gov", 465, "tls", "relay",
    )  # fmt: skip
    sms, voice = build_sms_sender(s), build_voice_sender(s)
    assert isinstance(sms, TwilioSmsSender) and isinstance(voice, TwilioVoiceSender)
    assert sms.client.base_url == "https://api.twilio.com"
    assert sms.client.timeout == 10 and sms.client.retries == 2


def test_secrets_are_masked_and_never_in_reprs():
    s = load_settings(environ={**SMTP, **TWILIO})
    shown = s.as_dict()["delivery"]
    assert shown["smtp_password"] == "***" and shown["twilio_auth_token"] == "***"
    everything = repr(s) + repr(s.as_dict()) + repr(build_email_sender(s))
    everything += repr(build_sms_sender(s).client)
    assert "very-secret" not in everything


def test_console_builds_console_senders(tmp_path):
    s = replace(Settings(), delivery=replace(Settings().delivery, outbox=str(tmp_path / "o")))
    assert isinstance(build_email_sender(s), ConsoleEmailSender)
    assert isinstance(build_sms_sender(s), ConsoleSmsSender)
    assert isinstance(build_voice_sender(s), ConsoleVoiceSender)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"IDP_DELIVERY_EMAIL_BACKEND": "sendmail"}, "[delivery] email_backend (from IDP_DELIVERY_EMAIL_BACKEND) must be one of 'console', 'smtp'"),
        ({"IDP_DELIVERY_SMTP_SECURITY": "ssl"}, "smtp_security (from IDP_DELIVERY_SMTP_SECURITY) must be one of 'starttls', 'tls', 'none'"),
        ({"IDP_DELIVERY_SMTP_PORT": "0"}, "smtp_port (from IDP_DELIVERY_SMTP_PORT) must be between 1 and 65535"),
        ({"IDP_DELIVERY_SMS_BACKEND": "nexmo"}, "sms_backend (from IDP_DELIVERY_SMS_BACKEND) must be one of 'console', 'twilio'"),
        ({"IDP_DELIVERY_VOICE_BACKEND": "twilio"}, "twilio_account_sid must not be empty"),
        ({**TWILIO, "IDP_DELIVERY_TWILIO_AUTH_TOKEN": ""}, "twilio_auth_token (from IDP_DELIVERY_TWILIO_AUTH_TOKEN) must not be empty"),
        ({**TWILIO, "IDP_DELIVERY_TWILIO_BASE_URL": "api.twilio.com"}, "twilio_base_url (from IDP_DELIVERY_TWILIO_BASE_URL) must be an http(s) URL"),
        ({"IDP_DELIVERY_RETRIES": "9"}, "retries (from IDP_DELIVERY_RETRIES) must be between 0 and 5"),
        ({"IDP_DELIVERY_TIMEOUT": "0"}, "[delivery] timeout (from IDP_DELIVERY_TIMEOUT) must be between 1 and 60"),
        ({**SMTP, "IDP_DELIVERY_SMTP_HOST": " "}, "smtp_host (from IDP_DELIVERY_SMTP_HOST) must not be empty"),
        ({**SMTP, "IDP_DELIVERY_SMTP_USERNAME": ""}, "smtp_password (from IDP_DELIVERY_SMTP_PASSWORD) is set but"),
        ({"IDP_OTP_CODE_TTL": "900"}, "code_ttl (from IDP_OTP_CODE_TTL) must be between 60 and 600 seconds (NIST SP 800-63B"),
        ({"IDP_OTP_MAX_ATTEMPTS_PER_CODE": "0"}, "max_attempts_per_code (from IDP_OTP_MAX_ATTEMPTS_PER_CODE) must be between 1 and 10"),
        ({"IDP_OTP_PHONE_REGION": "usa"}, "phone_region (from IDP_OTP_PHONE_REGION) must be a two-letter region code"),
    ],
)  # fmt: skip
def test_bad_delivery_settings_are_refused_with_the_key_named(environ, message):
    assert message in refused(**environ)


def test_a_secret_in_a_bad_env_value_is_not_echoed():
    message = refused(IDP_DELIVERY_SMTP_PORT="secret-port-value")
    assert "smtp_port" in message and "secret-port-value" in message  # not a secret field
    message = refused(**{**TWILIO, "IDP_DELIVERY_TWILIO_BASE_URL": "ftp://x"})
    assert "very-secret-token" not in message


def test_production_warns_about_console_backends(caplog):
    s = replace(Settings(), env="production")
    with caplog.at_level(logging.WARNING, logger="idp.delivery"):
        build_sms_sender(s)
    assert "sms_backend is 'console' in production" in caplog.text
