"""Second factors end to end through the sign-in transaction."""

from __future__ import annotations

import pytest

from clients.mockrp import MockRP
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import (
    browsers,
    get,
    link,
    path_of,
    setup_secret,
    submit,
    totp_code,
    walk,
)

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"
AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
MFA = "urn:idp:acr:mfa"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"required": True, "enforce_from": ""})


@pytest.fixture
def rp_factory(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True)

    return browsers(app, client_id, secret, CB)


def finish(rp: MockRP, resp):
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


def enroll_totp(rp: MockRP, resp):
    assert path_of(resp) == "/mfa/setup", resp.url
    page = get(rp, link(resp, "/mfa/setup/totp"))
    secret = setup_secret(page)
    resp = submit(rp, page, {"code": totp_code(secret), "label": "Phone"})
    return secret, resp


def test_forced_totp_enrollment_then_tokens_say_mfa(rp_factory):
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    secret, resp = enroll_totp(rp, resp)
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"
    resp = submit(rp, resp, button=("choice", "skip"))
    claims = finish(rp, resp)
    assert claims["acr"] == AAL2
    assert claims["amr"] == ["mfa", "otp", "pwd"]


@pytest.mark.parametrize("days", [10])
def test_silent_sign_in_before_the_date_skips_the_optional_set_up(app, rp_factory, days):
    """prompt=none cannot show the "remind me later" page; before the enforcement date
    it is skipped (interaction is required only when set-up is)."""
    import datetime as dt
    from dataclasses import replace

    from idp.services import services

    with app.app_context():
        svc = services()
        future = (dt.date.today() + dt.timedelta(days=days)).isoformat()
        svc.settings = replace(svc.settings, mfa=replace(svc.settings.mfa, enforce_from=future))
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup" and "Remind me later" in resp.text
    resp = submit(rp, resp)  # the page's only form: "Remind me later"
    claims = finish(rp, resp)
    assert claims["acr"] == AAL1
    silent = rp.sign_in(EMAIL, PASSWORD, prompt="none")
    assert silent.error is None and silent.code


def test_silent_sign_in_after_the_date_needs_interaction(app, rp_factory):
    rp = rp_factory()
    walk(rp, rp.start(), email=EMAIL, password=PASSWORD)  # a session, no factor yet
    silent = rp.sign_in(EMAIL, PASSWORD, prompt="none")
    assert silent.error == "interaction_required"


def test_help_line_is_shown_where_users_get_stuck(app, rp_factory):
    """[ui] help_phone and help_hours appear on the set-up and challenge pages."""
    from dataclasses import replace

    from idp.services import services

    with app.app_context():
        svc = services()
        svc.settings = replace(
            svc.settings,
            ui=replace(svc.settings.ui, help_phone="877-577-5331", help_hours="9 to 5 Eastern"),
        )
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup"
    assert "877-577-5331" in resp.text and "9 to 5 Eastern" in resp.text
    _secret, resp = enroll_totp(rp, resp)
    other = rp_factory()
    page = walk(other, other.start(), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/challenge"
    assert "877-577-5331" in page.text
