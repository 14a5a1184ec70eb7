"""SMS and voice through the Twilio REST shape, against a local recording gateway."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from idp.delivery import DeliveryError, TextMessage, VoiceMessage
from idp.delivery.twilio import (
    TwilioClient,
    TwilioSmsSender,
    TwilioVoiceSender,
    say_code_twiml,
)
from tests.support.gateway import FROM, SID, TOKEN, Gateway
from tests.support.smtp import free_port


@pytest.fixture
def gateway():
    with Gateway() as gw:
        yield gw


def client(url: str, **kw) -> TwilioClient:
    kw.setdefault("timeout", 2)
    kw.setdefault("retries", 2)
    return TwilioClient(base_url=url, account_sid=SID, auth_token=TOKEN, sender=FROM,
                        backoff=0.01, **kw)  # fmt: skip


def test_sms_posts_the_messages_resource(gateway):
    TwilioSmsSender(client(gateway.url + "/")).send(
        TextMessage(to="+12025550143", text="Code 123456\n\n@id.example #123456", purpose="t")
    )
    [call] = gateway.calls
    assert call.method == "POST"
    assert call.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert call.form == {"To": "+12025550143", "From": FROM,
                         "Body": "Code 123456\n\n@id.example #123456"}  # fmt: skip
    assert (call.user, call.password) == (SID, TOKEN)


def test_voice_posts_the_calls_resource_with_twiml(gateway):
    twiml = say_code_twiml("This is Portal & Co. Your code is", "407913", "Goodbye.")
    TwilioVoiceSender(client(gateway.url)).send(
        VoiceMessage(to="+12025550143", text="...", twiml=twiml, purpose="t")
    )
    [call] = gateway.calls
    assert call.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert set(call.form) == {"To", "From", "Twiml"}
    assert call.form["To"] == "+12025550143" and call.form["From"] == FROM
    root = ET.fromstring(call.form["Twiml"])
    assert root.tag == "Response"
    says = [e.text for e in root if e.tag == "Say"]
    # The code, digit by digit, twice; the service name XML-escaped and read out.
    assert sum(s.count("4, 0, 7, 9, 1, 3") for s in says) == 2
    assert says[0].startswith("This is Portal & Co.")
    assert "&amp;" in call.form["Twiml"]


def test_4xx_is_final_and_never_retried(gateway):
    gateway.answer(400)
    with pytest.raises(DeliveryError) as err:
        TwilioSmsSender(client(gateway.url)).send(TextMessage("+12025550143", "x", "t"))
    assert err.value.reason == "refused"
    assert "21211" in str(err.value)
    assert len(gateway.calls) == 1


def test_wrong_credentials_are_a_4xx(gateway):
    c = TwilioClient(base_url=gateway.url, account_sid=SID, auth_token="nope", sender=FROM)
    with pytest.raises(DeliveryError) as err:
        TwilioSmsSender(c).send(TextMessage("+12025550143", "x", "t"))
    assert err.value.reason == "refused"
    assert "nope" not in str(err.value) and "nope" not in repr(c)
    assert len(gateway.calls) == 1


def test_5xx_is_retried_then_succeeds(gateway):
    gateway.answer(503, 500)
    TwilioSmsSender(client(gateway.url, retries=2)).send(TextMessage("+12025550143", "x", "t"))
    assert len(gateway.calls) == 3


def test_5xx_retries_are_bounded(gateway):
    gateway.answer(503, 503, 503, 503)
    with pytest.raises(DeliveryError) as err:
        TwilioSmsSender(client(gateway.url, retries=1)).send(TextMessage("+12025550143", "x", "t"))
    assert err.value.reason == "unavailable"
    assert len(gateway.calls) == 2


def test_a_hanging_gateway_times_out_without_a_retry(gateway):
    gateway.answer("timeout")
    start = time.monotonic()
    with pytest.raises(DeliveryError) as err:
        TwilioSmsSender(client(gateway.url, timeout=1)).send(TextMessage("+12025550143", "x", "t"))
    assert err.value.reason == "timeout"
    assert time.monotonic() - start < 2.5
    # The gateway may already have sent it: a retry could deliver a second code.
    assert len(gateway.calls) == 1


def test_connection_errors_are_retried_and_bounded():
    c = client(f"http://127.0.0.1:{free_port()}", retries=2)
    calls = []
    original = c.session.post

    def counting(*a, **kw):
        calls.append(a[0])
        return original(*a, **kw)

    c.session.post = counting
    with pytest.raises(DeliveryError) as err:
        TwilioSmsSender(c).send(TextMessage("+12025550143", "x", "t"))
    assert err.value.reason == "unavailable"
    assert len(calls) == 3
