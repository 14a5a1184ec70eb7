"""The console backends: everything goes to the JSON-lines outbox, codes included."""

from __future__ import annotations

import json
import os
import stat

import pytest

from idp.delivery import (
    ConsoleEmailSender,
    ConsoleSmsSender,
    ConsoleVoiceSender,
    DeliveryError,
    EmailMessage,
    TextMessage,
    VoiceMessage,
    read_outbox,
)


def test_every_channel_writes_to_one_outbox(tmp_path):
    outbox = tmp_path / "outbox.jsonl"
    ConsoleEmailSender(outbox).send(
        EmailMessage(to="a@example.com", subject="S", text="T 111111", purpose="p", html="<p>H</p>")
    )
    ConsoleSmsSender(outbox).send(
        TextMessage(to="+12025550143", text="code 222222", purpose="otp.sms")
    )
    ConsoleVoiceSender(outbox).send(
        VoiceMessage(
            to="+12025550143", text="code 333333", twiml="<Response/>", purpose="otp.voice"
        )
    )
    records = read_outbox(outbox)
    assert [(r["channel"], r["to"]) for r in records] == [
        ("email", "a@example.com"), ("sms", "+12025550143"), ("voice", "+12025550143"),
    ]  # fmt: skip
    assert records[0]["html"] == "<p>H</p>" and records[0]["subject"] == "S"
    assert records[1]["text"] == "code 222222" and records[1]["purpose"] == "otp.sms"
    assert records[2]["twiml"] == "<Response/>"
    assert all(isinstance(r["at"], int) for r in records)
    assert stat.S_IMODE(os.stat(outbox).st_mode) == 0o600
    assert json.loads(outbox.read_text().splitlines()[1])["text"] == "code 222222"


def test_an_unwritable_outbox_is_a_delivery_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(DeliveryError) as err:
        ConsoleSmsSender(blocker / "outbox.jsonl").send(TextMessage("+12025550143", "x", "p"))
    assert err.value.reason == "outbox"


def test_reading_a_missing_outbox(tmp_path):
    assert read_outbox(tmp_path / "none.jsonl") == []
