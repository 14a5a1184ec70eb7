"""The ways out and the context of a sign-in: every page of an incomplete sign-in
offers "Cancel and go back" (the application gets ``access_denied``, RFC 6749 4.1.2.1)
and "Sign out"; the account page leads back to the application the session came
from; a step-up says which application asks and why; the step indicator finishes on
the recommendation after the first method."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.mockrp.forms import parse_forms
from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import add_recovery_codes, add_totp, events, next_totp
from tests.integration.mfa_helpers import (
    browsers,
    get,
    link,
    path_of,
    setup_secret,
    shift_session,
    submit,
    totp_code,
    walk,
)

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(
        tmp_path, keys_dir, mfa={"required": True, "enforce_from": "", "max_failures": 4}
    )


@pytest.fixture
def rp_factory(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(
        name="Connexion", first_party=True, client_uri="https://rp.example.com/home"
    )
    return browsers(app, client_id, secret, CB)


def cancel_form(resp):
    return next(
        f for f in parse_forms(resp.text, resp.url) if f.action.endswith("/authorize/cancel")
    )


def test_the_required_set_up_can_be_left_with_access_denied(app, rp_factory):
    rp = rp_factory()
    resp = walk(rp, rp.start(state="xyz"), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup"
    assert "Cancel and go back to Connexion" in resp.text and ">Sign out<" in resp.text
    txn = parse_qs(urlsplit(resp.url).query)["txn"][0]

    back = rp.submit_form(cancel_form(resp))
    assert back.status == 302 and back.location.startswith(CB)
    query = parse_qs(urlsplit(back.location).query)
    assert query["error"] == ["access_denied"] and query["state"] == [rp.last_request["state"]]
    assert query["iss"] == ["http://localhost"]  # RFC 9207
    assert [o for o, _uid, _d in events(app, "authorization.cancelled")] == ["success"]
    # The sign-in is over: its pages answer "expired", nothing can resume it.
    again = get(rp, f"/authorize/resume?txn={txn}")
    assert again.status == 400 and "expired" in again.text


def test_a_cancel_needs_the_pages_csrf_token_and_this_browsers_sign_in(app, rp_factory):
    rp, other = rp_factory(), rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    form = cancel_form(resp)
    # Another browser cannot end this sign-in (the transaction is bound to its browser).
    stranger = other.transport.request(
        "POST", "http://localhost/authorize/cancel", data={**form.fields}
    )
    assert stranger.status == 400
    no_csrf = rp.transport.request(
        "POST", "http://localhost/authorize/cancel", data={"txn": form.fields["txn"]}
    )
    assert no_csrf.status == 400
    assert events(app, "authorization.cancelled") == []
    assert rp.submit_form(form).status == 302


def test_sign_out_from_the_required_set_up(app, rp_factory):
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    sign_out = next(f for f in parse_forms(resp.text, resp.url) if f.action.endswith("/logout"))
    assert get(rp, "/account/security").status == 200  # signed in (password only)
    done = rp.submit_form(sign_out)
    assert done.status == 200 and "signed out" in done.text.lower()
    after = get(rp, "/account/security")
    assert after.status in (302, 303) and "/signin" in after.location


def test_the_account_page_leads_back_to_the_application(app, rp_factory):
    secret = add_totp(app, EMAIL)
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge"
    resp = walk(rp, submit(rp, resp, {"code": next_totp(secret)}), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"  # one method only: a second one is suggested
    result = rp.resume(submit(rp, resp, button=("choice", "skip")), email=EMAIL, password=PASSWORD)
    assert result.code
    page = get(rp, "/account/security")
    assert page.status == 200
    assert 'href="https://rp.example.com/home">Back to Connexion<' in page.text
    assert any(f.action.endswith("/logout") for f in parse_forms(page.text, page.url))


def test_a_step_up_names_the_application_and_why(app, rp_factory):
    secret = add_totp(app, EMAIL)
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    resp = walk(rp, submit(rp, resp, {"code": next_totp(secret)}), email=EMAIL, password=PASSWORD)
    resp = submit(rp, resp, button=("choice", "skip"))
    assert rp.resume(resp, email=EMAIL, password=PASSWORD).code
    shift_session(app, rp, 3600, keep=("pwd",))
    resp = walk(rp, rp.start(max_age="600"), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge"
    text = re.sub(r"\s+", " ", resp.text)
    assert "Connexion asks you to confirm it's you" in text.replace("&#39;", "'")
    assert "in the last 10 minutes before a sensitive action" in text
    assert "Cancel and go back to Connexion" in text


def test_a_sign_in_asked_again_for_max_age_says_why_and_a_first_one_does_not(app, rp_factory):
    secret = add_totp(app, EMAIL)
    rp = rp_factory()
    # A first sign-in that carries max_age is a sign-in, not the application asking again.
    resp = walk(rp, rp.start(max_age="600"), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge"
    assert "before a sensitive action" not in resp.text
    resp = walk(rp, submit(rp, resp, {"code": next_totp(secret)}), email=EMAIL, password=PASSWORD)
    resp = submit(rp, resp, button=("choice", "skip"))
    assert rp.resume(resp, email=EMAIL, password=PASSWORD).code
    # An hour later the application asks for a sign-in at most 10 minutes old: the
    # password is asked again, then the second step, which says who asks and why.
    shift_session(app, rp, 3600)
    resp = rp.start(max_age="600")
    assert "/signin?" in resp.headers["Location"]
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge"
    text = re.sub(r"\s+", " ", resp.text).replace("&#39;", "'")
    assert "Connexion asks you to confirm it's you" in text
    assert "in the last 10 minutes before a sensitive action" in text


def test_the_first_method_in_a_sign_in_ends_on_the_done_step(app, rp_factory):
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    page = get(rp, link(resp, "/mfa/setup/totp"))
    resp = submit(rp, page, {"code": totp_code(setup_secret(page)), "label": "Phone"})
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"
    assert "Authenticator app added." in resp.text
    assert 'aria-current="step"' in resp.text and "Done" in resp.text


def test_wrong_codes_say_how_many_attempts_are_left_before_the_pause(app, rp_factory):
    secret = add_totp(app, EMAIL)
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    wrong = next(c for c in ("000000", "111111", "222222") if c != next_totp(secret))
    said = []
    for _ in range(3):
        resp = submit(rp, resp, {"code": wrong})
        assert resp.status == 400
        said.append(re.search(r"\d attempts? left[^<]*", resp.text)[0])
    assert said == [
        "3 attempts left: after that, verification is paused for 10 minutes.",
        "2 attempts left: after that, verification is paused for 10 minutes.",
        "1 attempt left: after that, verification is paused for 10 minutes.",
    ]
    paused = submit(rp, resp, {"code": wrong})
    assert paused.status == 429 and "try again in 10 minutes" in paused.text


def test_the_default_method_is_the_strongest_unless_the_user_chose(app, make_user):
    from idp.extensions import db
    from idp.models import Factor, User

    make_user(email="bo@example.com")
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email="bo@example.com")).scalar_one()
        for kind in ("email", "recovery", "totp", "webauthn"):
            db.session.add(Factor(user_id=user.id, type=kind, status="active", label=kind))
        db.session.commit()
        service = app.extensions["idp.mfa"]
        everything = ("email", "recovery", "totp", "webauthn")
        # A new passkey outranks the authenticator app, which outranks an email code;
        # recovery codes are never the default while anything else is left.
        assert service.default_type(user, everything) == "webauthn"
        assert service.default_type(user, ("email", "recovery", "totp")) == "totp"
        assert service.default_type(user, ("email", "recovery")) == "email"
        assert service.default_type(user, ("recovery",)) == "recovery"
        # The user's own choice wins.
        chosen = db.session.execute(
            db.select(Factor).filter_by(user_id=user.id, type="email")
        ).scalar_one()
        chosen.is_default = True
        db.session.commit()
        assert service.default_type(user, everything) == "email"


def test_after_a_recovery_code_the_lost_method_can_be_replaced(app, rp_factory):
    add_totp(app, EMAIL)
    codes = add_recovery_codes(app, EMAIL)
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    page = get(rp, link(resp, "kind=recovery"))
    resp = walk(rp, submit(rp, page, {"code": codes[0]}), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"
    assert "Replace a lost sign-in method" in resp.text
    assert "That code cannot be used again." in resp.text
    assert "/mfa/setup/totp" in resp.text  # the lost kind can be set up again
    done = submit(rp, resp, button=("choice", "skip"))
    assert rp.resume(done, email=EMAIL, password=PASSWORD).code
