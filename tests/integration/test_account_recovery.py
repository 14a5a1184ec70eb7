"""Account recovery after losing every factor: recovery codes first; else the help desk
resets the factors, the user proves the email address again and enrolls anew. Every
step is audited and the user is emailed."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import (
    add_recovery_codes,
    add_totp,
    events,
    link_in,
    outbox,
    text,
    user_row,
)
from tests.integration.mfa_helpers import (
    CB,
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


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(
        tmp_path,
        keys_dir,
        mfa={"required": True, "enforce_from": ""},
        ui={"help_phone": "1-800-555-0100", "help_hours": "weekdays 8am-8pm ET"},
    )


@pytest.fixture
def ada(app, make_user):
    uid, _ = make_user(email=EMAIL)
    return uid


@pytest.fixture
def rp_factory(app, make_client):
    client_id, secret = make_client(first_party=True)
    return browsers(app, client_id, secret, CB)


def help_desk_reset(app, uid: int, reason: str = "lost phone and codes") -> int:
    from idp.extensions import db
    from idp.models import User

    with app.test_request_context():
        user = db.session.get(User, uid)
        return app.extensions["idp.mfa"].reset(user, reason=reason, actor="helpdesk:bob")


def test_the_recovery_page_explains_the_ways_back(client):
    page = text(client.get("/recover"))
    assert "I lost access to all my sign-in methods" in page
    codes, desk, after = (page.index(s) for s in ("recovery code", "help desk", "What happens"))
    assert codes < desk < after  # recovery codes first
    assert "1-800-555-0100" in page and "weekdays 8am-8pm ET" in page
    assert "confirm the address" in page and "set up a new sign-in method" in page
    assert 'href="/forgot"' in page


def test_recovery_codes_come_first_at_the_challenge(app, ada, rp_factory):
    add_totp(app, EMAIL)
    codes = add_recovery_codes(app, EMAIL)
    rp = rp_factory()
    page = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/challenge"
    page = get(rp, link(page, "kind=recovery"))
    resp = submit(rp, page, {"code": codes[0]})
    assert resp.status == 302
    assert events(app, "mfa.success")[-1][2]["factor"] == "recovery"
    assert [m for m in outbox(app) if m["purpose"] == "notify.recovery_code_used"]


def test_help_desk_reset_then_email_then_new_factor(app, ada, rp_factory):
    add_totp(app, EMAIL)
    add_recovery_codes(app, EMAIL)
    assert help_desk_reset(app, ada) == 2
    assert user_row(app, EMAIL)[1] is False  # the address must be proven again
    [(_, uid, details)] = events(app, "mfa.reset")
    assert uid == ada and details["actor"] == "helpdesk:bob" and details["removed"] == 2
    [notice] = outbox(app, "notify.mfa_reset")
    assert "lost phone and codes" in notice["text"] and "confirm your address" in notice["text"]

    # Sign-in with the right password: "verify your email first", and a link.
    rp = rp_factory()
    start = rp.start()
    while 300 <= start.status < 400:
        start = rp.follow(start)
    resp = submit(rp, start, {"email": EMAIL, "password": PASSWORD})
    assert resp.status == 403 and "Verify your email address first" in resp.text
    assert events(app, "login.failure")[-1][2]["reason"] == "email_unverified"
    [mail] = outbox(app, "account.verify_email")
    assert mail["to"] == EMAIL
    assert events(app, "email.verification_sent")[-1][1] == ada

    # The link from the inbox shows a page; confirming it with the password signs in
    # again and takes the same sign-in on.
    page = get(rp, link_in(mail, "/verify/"))
    assert "Confirm your email address" in page.text
    assert user_row(app, EMAIL)[1] is False  # opening it changed nothing
    resp = submit(rp, page, {"password": PASSWORD})
    assert user_row(app, EMAIL)[1] is True
    assert events(app, "email.verified")[-1][1] == ada

    # The set-up prompt follows, and cannot be postponed.
    page = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/setup"
    assert "Remind me later" not in page.text
    setup = get(rp, link(page, "/mfa/setup/totp"))
    secret = setup_secret(setup)
    resp = submit(rp, setup, {"code": totp_code(secret), "label": "New phone"})
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    if resp.status == 200 and path_of(resp) == "/mfa/recommend":
        resp = walk(rp, submit(rp, resp, button=("choice", "skip")), email=EMAIL,
                    password=PASSWORD)  # fmt: skip
    assert resp.status == 302 and resp.location.startswith(CB)
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    claims = rp.verify_id_token(rp.exchange_code(result).id_token, nonce=result.nonce)
    assert "otp" in claims["amr"]
    assert events(app, "mfa.factor_added")[-1][1] == ada
    assert [m for m in outbox(app) if m["purpose"] == "notify.factor_added"]


def test_reset_ends_sessions_so_the_old_browser_cannot_continue(app, ada, rp_factory):
    secret = add_totp(app, EMAIL)
    rp = rp_factory()
    page = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/challenge"
    help_desk_reset(app, ada)
    resp = submit(rp, page, {"code": totp_code(secret)})
    assert resp.status == 302 and "/signin" in resp.location


def test_a_wrong_password_after_the_reset_sends_nothing(app, ada, rp_factory):
    help_desk_reset(app, ada)
    rp = rp_factory()
    start = rp.start()
    while 300 <= start.status < 400:
        start = rp.follow(start)
    resp = submit(rp, start, {"email": EMAIL, "password": "a guess that is wrong"})
    assert resp.status == 200 and "The email or password is not right" in resp.text
    assert not outbox(app, "account.verify_email")


def test_reset_password_challenge_links_to_the_recovery_page(app, client, ada):
    from tests.integration.account_helpers import post

    add_totp(app, EMAIL)
    post(client, "/forgot", {"email": EMAIL}).close()  # the email goes out on close
    reset = link_in(outbox(app, "account.password_reset")[-1], "/reset/")
    assert 'href="/recover"' in text(client.get(reset, follow_redirects=True))
