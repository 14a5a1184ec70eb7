"""The embedded default: codes go to the console outbox (where a browser test reads
them), and the development-only outbox page."""

from __future__ import annotations

import re

import pytest

from idp.delivery import read_outbox
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import browsers, get, link, path_of, submit, walk

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"required": True, "enforce_from": ""},
                         otp={"resend_cooldown": 0})  # fmt: skip


@pytest.fixture
def rp(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True)
    return browsers(app, client_id, secret, CB)()


def outbox(app) -> list[dict]:
    from idp.services import services

    with app.app_context():
        return read_outbox(services().settings.delivery.outbox)


@pytest.mark.parametrize(("kind", "channel"), [("sms", "sms"), ("voice", "voice")])
def test_console_phone_codes_land_in_the_outbox_with_their_text(app, rp, kind, channel):
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    page = get(rp, link(resp, f"/mfa/setup/{kind}"))
    resp = submit(rp, page, {"destination": "202-555-0143"})
    assert resp.status == 302
    [record] = [r for r in outbox(app) if r["channel"] == channel]
    assert record["to"] == "+12025550143"
    assert record["purpose"] == f"otp.{kind}"
    code = re.search(r"\(code (\d{6})\)|code is (\d{6})", record["text"])
    assert code, record["text"]
    resp = get(rp, resp.location)
    resp = submit(rp, resp, {"code": code.group(1) or code.group(2)})
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"


def test_outbox_page_is_absent_outside_development(app, client):
    assert client.get("/dev/outbox").status_code == 404


class TestDevelopment:
    @pytest.fixture
    def settings(self, tmp_path, keys_dir):
        from dataclasses import replace

        return replace(make_settings(tmp_path, keys_dir), env="development")

    def test_outbox_page_lists_the_messages_newest_first(self, app, client):
        from idp.delivery import TextMessage
        from idp.services import services

        with app.app_context():
            services().sms.send(TextMessage("+12025550143", "first 111111", "otp.sms"))
            services().sms.send(TextMessage("+12025550143", "second 222222", "otp.sms"))
        resp = client.get("/dev/outbox")
        assert resp.status_code == 200
        text = resp.get_data(as_text=True)
        assert text.index("second 222222") < text.index("first 111111")
        assert resp.headers["Cache-Control"] == "no-store"
