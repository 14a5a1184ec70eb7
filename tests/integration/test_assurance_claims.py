"""acr, amr and auth_time in the tokens rest on the methods that satisfy the request.

A session that passed an authenticator app a while ago and passes an email code now,
asked for ``urn:idp:acr:mfa`` or AAL2 with a ``max_age`` the app no longer meets, gets
``acr=urn:idp:acr:mfa`` and no ``otp`` in ``amr``: the stale factor is not counted, and
``auth_time`` is the time of the oldest method that is (OIDC Core 2, 3.1.2.1; RFC 8176).
"""

from __future__ import annotations

import re
import time

import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from idp.delivery import read_outbox
from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import add_totp
from tests.integration.mfa_helpers import (
    browsers,
    get,
    path_of,
    shift_session,
    submit,
    totp_code,
    walk,
)

EMAIL = "ada@example.com"
CODES_TO = "ada.codes@example.org"
CB = "https://rp.example.com/cb"
MFA = "urn:idp:acr:mfa"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(
        tmp_path,
        keys_dir,
        mfa={"required": True, "enforce_from": "", "recommend_second": False},
        otp={"resend_cooldown": 0},
    )


@pytest.fixture
def rp(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True)
    return browsers(app, client_id, secret, CB)()


def seed_email_factor(app) -> None:
    from idp.extensions import db
    from idp.models import Factor, User
    from idp.models.base import utcnow

    with app.app_context():
        svc = app.extensions["idp"]
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        db.session.add(
            Factor(
                user_id=user.id, type="email", label="Work inbox", status="active",
                secret_enc=svc.secrets.encrypt(CODES_TO, context=f"email:{user.id}"),
                data={"masked": "a***@example.org"}, activated_at=utcnow(),
            )
        )  # fmt: skip
        db.session.commit()


def email_code(app) -> str:
    with app.app_context():
        mails = [m for m in read_outbox(app.extensions["idp"].settings.delivery.outbox)
                 if m.get("to") == CODES_TO]  # fmt: skip
    return re.search(r"\b(\d{6})\b", mails[-1]["text"]).group(1)


def tokens_of(rp: MockRP, resp) -> dict:
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


def pass_email_code(app, rp: MockRP, resp):
    """On the challenge page: choose the email code, send it, type it."""
    assert path_of(resp) == "/mfa/challenge", resp.url
    page = get(rp, resp.url + "&kind=email")
    form = next(f for f in parse_forms(page.text, page.url) if f.fields.get("action") == "send"
                or ("action", "send") in f.buttons)  # fmt: skip
    sent = rp.submit_form(form, button=("action", "send") if ("action", "send") in form.buttons
                          else None)  # fmt: skip
    page = get(rp, sent.location) if 300 <= sent.status < 400 else sent
    return submit(rp, page, {"code": email_code(app)})


def test_a_stale_authenticator_app_does_not_lift_a_fresh_email_code(app, rp):
    secret = add_totp(app, EMAIL)
    seed_email_factor(app)
    # Sign in with the password and the authenticator app.
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge"
    page = get(rp, resp.url + "&kind=totp")
    resp = submit(rp, page, {"code": totp_code(secret, int(time.time() // 30) + 1)})
    first = tokens_of(rp, walk(rp, resp, email=EMAIL, password=PASSWORD))
    assert first["acr"] == AAL2 and "otp" in first["amr"]

    # 40 seconds later, a request for MFA or AAL2 that must be at most 30 seconds old:
    # the password is asked again, then a second factor; the user picks the email code.
    shift_session(app, rp, 40)
    resp = walk(rp, rp.start(acr_values=f"{MFA} {AAL2}", max_age="30"),
                email=EMAIL, password=PASSWORD)  # fmt: skip
    resp = pass_email_code(app, rp, resp)
    started = int(time.time())
    claims = tokens_of(rp, walk(rp, resp, email=EMAIL, password=PASSWORD))
    assert claims["acr"] == MFA, claims
    assert claims["amr"] == ["email", "mfa", "pwd"], claims
    assert "otp" not in claims["amr"]
    # auth_time: the oldest method counted (the password typed for this request).
    assert started - 5 <= claims["auth_time"] <= started
    assert claims["auth_time"] >= int(time.time()) - 30


def test_step_up_without_max_age_counts_the_earlier_password(app, rp):
    """No max_age: every method of the session counts, and auth_time is the oldest of
    them (the password), not the moment of the step-up."""
    secret = add_totp(app, EMAIL)
    # A password-only sign-in, as before the enforcement date with the factor unused:
    # the session has the password only, 120 s ago.
    page = get(rp, "/signin")
    assert submit(rp, page, {"email": EMAIL, "password": PASSWORD}).status == 302
    shift_session(app, rp, 120)
    resp = rp.start(acr_values=MFA)
    assert resp.status == 302 and "/mfa/challenge" in resp.location
    page = get(rp, resp.location)
    resp = submit(rp, page, {"code": totp_code(secret, int(time.time() // 30) + 1)})
    claims = tokens_of(rp, walk(rp, resp, email=EMAIL, password=PASSWORD))
    assert claims["acr"] == MFA and claims["amr"] == ["mfa", "otp", "pwd"]
    assert claims["auth_time"] <= int(time.time()) - 119
