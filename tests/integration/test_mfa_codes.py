"""Codes by email, text message and voice call, end to end through the sign-in
transaction: email against a real SMTP server (aiosmtpd) started by the test, SMS and
voice against a local gateway that records the Twilio-shaped API calls."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import browsers, get, link, path_of, submit, walk
from tests.support.gateway import FROM, SID, TOKEN, Gateway
from tests.support.smtp import SMTPServer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"
MFA = "urn:idp:acr:mfa"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
NUMBER = "+12025550143"
MASKED = "***-***-0143"


@pytest.fixture
def smtp():
    with SMTPServer() as server:
        yield server


@pytest.fixture
def gateway():
    with Gateway(hang_seconds=3) as gw:
        yield gw


OTP: dict = {"resend_cooldown": 0}


@pytest.fixture
def settings(tmp_path, keys_dir, smtp, gateway):
    return make_settings(
        tmp_path, keys_dir,
        mfa={"required": True, "enforce_from": ""},
        delivery={
            "email_backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": smtp.port,
            "smtp_security": "none", "email_from": "no-reply@id.example.gov",
            "email_reply_to": "help@id.example.gov",
            "sms_backend": "twilio", "voice_backend": "twilio", "twilio_account_sid": SID,
            "twilio_auth_token": TOKEN, "twilio_from": FROM, "twilio_base_url": gateway.url,
            "timeout": 1, "retries": 1,
        },
        ui={"service_name": "Connexion Sign-In"},
        otp=OTP,
    )  # fmt: skip


@pytest.fixture
def uid(make_user):
    return make_user()[0]


@pytest.fixture
def rp_factory(app, make_client, uid):
    client_id, secret = make_client(first_party=True)
    return browsers(app, client_id, secret, CB)


# -- helpers ---------------------------------------------------------------------------------


def follow(rp: MockRP, resp):
    """Follow redirects inside the provider (stop at the client's redirect URI)."""
    for _ in range(10):
        if not (300 <= resp.status < 400) or (resp.location or "").startswith(CB):
            return resp
        resp = get(rp, resp.location)
    raise AssertionError("redirect loop")


def finish(rp: MockRP, resp) -> dict:
    resp = walk(rp, follow(rp, resp), email=EMAIL, password=PASSWORD)
    if path_of(resp) == "/mfa/recommend":
        resp = submit(rp, resp, button=("choice", "skip"))
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


def press(rp: MockRP, resp, action: str):
    """Submit the form whose button or hidden field says action=<action>."""
    for form in parse_forms(resp.text, resp.url):
        if ("action", action) in form.buttons:
            return rp.submit_form(form, button=("action", action))
        if form.fields.get("action") == action:
            return rp.submit_form(form)
    raise AssertionError(f"no {action!r} form on {resp.url}: {resp.text[:400]}")


def setup_page(rp: MockRP, kind: str):
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup", resp.url
    return get(rp, link(resp, f"/mfa/setup/{kind}"))


def add_factor(app, uid: int, kind: str, destination: str, **kw) -> int:
    """An active code factor, as if enrolled earlier."""
    from idp.extensions import db
    from idp.mfa.codes.email import mask_email
    from idp.mfa.codes.numbers import mask_phone
    from idp.models import Factor
    from idp.services import services

    with app.app_context():
        context = f"{'email' if kind == 'email' else 'phone'}:{uid}"
        masked = mask_email(destination) if kind == "email" else mask_phone(destination)
        f = Factor(user_id=uid, type=kind, status="active", label=kw.pop("label", masked),
                   secret_enc=services().secrets.encrypt(destination, context=context),
                   data={"masked": masked}, **kw)  # fmt: skip
        db.session.add(f)
        db.session.commit()
        return f.id


def factors(app, uid: int) -> list:
    from idp.extensions import db
    from idp.models import Factor

    with app.app_context():
        rows = db.session.execute(db.select(Factor).filter_by(user_id=uid)).scalars().all()
        return [(f.type, f.status, f.secret_enc, dict(f.data or {}), f.label) for f in rows]


def user_failures(app, uid: int) -> int:
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        return db.session.get(User, uid).mfa_failures


def audits(app, event: str) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(db.select(AuditEvent).filter_by(event=event)).scalars()
        return [dict(e.details or {}, outcome=e.outcome) for e in rows]


def challenge(rp: MockRP):
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge", resp.url
    return resp


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


# -- enrollment ------------------------------------------------------------------------------


def test_email_factor_with_another_address_reads_the_code_from_a_real_smtp_server(
    app, rp_factory, smtp, uid
):
    rp = rp_factory()
    page = setup_page(rp, "email")
    assert f'value="{EMAIL}"' in page.text  # the sign-in address is offered, not imposed
    resp = follow(rp, submit(rp, page, {"destination": "Ada.Codes@Example.ORG"}))
    assert "A***@example.org" in resp.text and "Ada.Codes" not in resp.text
    got = smtp.last_to("Ada.Codes@example.org")
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["From"] == "no-reply@id.example.gov" and msg["Reply-To"] == "help@id.example.gov"
    text, html = got.part("plain"), got.part("html")
    assert "Connexion Sign-In" in text and "Never share this code" in text
    assert got.code() in html and "Never share this code" in html
    assert factors(app, uid) == []  # nothing bound before the code comes back
    claims = finish(rp, submit(rp, resp, {"code": got.code()}))
    # Email counts for the MFA rule but is not AAL2 (NIST SP 800-63B 5.1.3.1).
    assert claims["acr"] == MFA
    assert claims["amr"] == ["email", "mfa", "pwd"]
    [(kind, status, secret_enc, data, label)] = factors(app, uid)
    assert (kind, status, data, label) == ("email", "active", {"masked": "A***@example.org"},
                                           "A***@example.org")  # fmt: skip
    assert "example.org" not in secret_enc


def test_sms_factor_sends_the_twilio_message_shape_and_reaches_aal2(
    app, rp_factory, gateway, smtp, uid
):
    rp = rp_factory()
    page = setup_page(rp, "sms")
    resp = follow(rp, submit(rp, page, {"destination": "(202) 555-0143", "label": "Work phone"}))
    assert MASKED in resp.text and "555-0143" not in resp.text.replace(MASKED, "")
    [call] = gateway.calls
    assert call.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert (call.user, call.password) == (SID, TOKEN)
    assert set(call.form) == {"To", "From", "Body"}
    assert call.form["To"] == NUMBER and call.form["From"] == FROM
    code = call.code()
    body = call.form["Body"]
    assert body.startswith(f"Connexion Sign-In: your verification code is {code}.")
    assert "Never share it" in body
    assert body.endswith(f"\n\n@localhost #{code}")  # WebOTP
    claims = finish(rp, submit(rp, resp, {"code": code}))
    assert claims["acr"] == AAL2
    assert claims["amr"] == ["mfa", "pwd", "sms"]
    [(kind, status, secret_enc, data, label)] = factors(app, uid)
    assert (kind, status, data, label) == ("sms", "active", {"masked": MASKED}, "Work phone")
    assert "5550143" not in secret_enc and "0143" not in secret_enc
    # The "method added" notice reaches the sign-in address as text + HTML.
    notice = smtp.last_to(EMAIL).message
    assert notice["Subject"] == "Connexion Sign-In: A sign-in method was added to your account"
    assert [p.get_content_type() for p in notice.iter_parts()] == ["text/plain", "text/html"]
    html = notice.get_body(("html",)).get_content()
    assert (
        "Text message" in html and "(SMS)" not in html and "Work phone" in html and "{{" not in html
    )
    assert "Never share sign-in codes" in html and html.count("If this was not you") == 1


def test_voice_factor_calls_with_twiml_reading_the_code_twice(app, rp_factory, gateway, uid):
    rp = rp_factory()
    page = setup_page(rp, "voice")
    resp = follow(rp, submit(rp, page, {"destination": "+1 800 234 5678"}))  # toll-free is fine
    [call] = gateway.calls
    assert call.path == f"/2010-04-01/Accounts/{SID}/Calls.json"
    assert set(call.form) == {"To", "From", "Twiml"}
    assert call.form["To"] == "+18002345678"
    root = ET.fromstring(call.form["Twiml"])
    assert root.tag == "Response"
    says = " ".join(e.text for e in root.iter("Say"))
    code = call.code()
    assert says.count(", ".join(code)) == 2
    assert "Connexion Sign-In" in says and "Never share this code" in says
    claims = finish(rp, submit(rp, resp, {"code": code}))
    assert claims["acr"] == AAL2 and claims["amr"] == ["mfa", "pwd", "tel"]


def test_a_new_enrollment_code_can_be_requested(app, rp_factory, gateway, uid):
    rp = rp_factory()
    resp = follow(rp, submit(rp, setup_page(rp, "sms"), {"destination": NUMBER}))
    first = gateway.calls[-1].code()
    resp = follow(rp, press(rp, resp, "resend"))
    assert "We sent a new code" in resp.text
    second = gateway.calls[-1].code()
    assert len(gateway.calls) == 2
    if first != second:
        bad = submit(rp, resp, {"code": first})
        assert bad.status == 400
    finish(rp, submit(rp, resp, {"code": second}))
    assert [f[0] for f in factors(app, uid)] == ["sms"]


def test_wrong_codes_at_set_up_bind_nothing_and_kill_the_code(app, rp_factory, gateway, uid):
    rp = rp_factory()
    resp = follow(rp, submit(rp, setup_page(rp, "sms"), {"destination": NUMBER}))
    code = gateway.calls[-1].code()
    for _ in range(3):
        bad = submit(rp, resp, {"code": wrong(code)})
        assert bad.status == 400 and 'aria-invalid="true"' in bad.text
    dead = submit(rp, resp, {"code": code})
    assert dead.status == 400 and "Too many wrong entries" in dead.text
    assert factors(app, uid) == []
    assert [a["factor"] for a in audits(app, "mfa.enroll_failed")] == ["sms"] * 4


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("call me maybe", "does not look like a phone number"),
        ("12", "not valid"),
        ("+1 202 555 01", "not valid"),
        ("+1 900 234 5678", "premium-rate"),
        ("+34 901 123 456", "shared-cost"),
        ("+1 800 234 5678", "toll-free number, which cannot receive text messages"),
    ],
)
def test_unusable_phone_numbers_are_refused_and_nothing_is_sent(
    app, rp_factory, gateway, uid, number, message
):
    rp = rp_factory()
    resp = submit(rp, setup_page(rp, "sms"), {"destination": number})
    assert resp.status == 400
    assert message in resp.text and 'aria-invalid="true"' in resp.text
    assert gateway.calls == [] and factors(app, uid) == []


@pytest.mark.parametrize("address", ["not-an-email", "ada@", "ada@localhost", "a@@example.com",
                                     "<ada@example.com>", "ada @example.com", "ada@exa_mple.com"])  # fmt: skip
def test_an_email_that_is_not_an_address_is_refused(app, rp_factory, smtp, uid, address):
    rp = rp_factory()
    resp = submit(rp, setup_page(rp, "email"), {"destination": address})
    assert resp.status == 400
    assert "Enter an email address like name@example.com" in resp.text
    assert smtp.messages == [] and factors(app, uid) == []


@pytest.mark.parametrize("answer", [400, "timeout", 503])
def test_a_failed_send_during_set_up_binds_nothing_and_offers_another_method(
    app, rp_factory, gateway, uid, answer
):
    gateway.answer(*([answer] * 2))  # a 503 is retried once, then fails
    rp = rp_factory()
    page = setup_page(rp, "sms")
    start = time.monotonic()
    resp = submit(rp, page, {"destination": NUMBER})
    assert time.monotonic() - start < 4  # bounded by [delivery] timeout and retries
    assert resp.status == 503
    assert "We could not send a text message right now" in resp.text
    assert "/mfa/setup/totp" in resp.text and "/mfa/setup/voice" in resp.text
    assert len(gateway.calls) == (2 if answer == 503 else 1)
    assert factors(app, uid) == []
    reason = {400: "refused", "timeout": "timeout", 503: "unavailable"}[answer]
    assert audits(app, "delivery.failed") == [
        {"channel": "sms", "purpose": "enroll", "reason": reason, "outcome": "failure"}
    ]
    # Nothing pending either: the set-up starts over with the number form.
    again = get(rp, page.url)
    assert 'name="destination"' in again.text and 'name="code"' not in again.text


def test_a_5xx_then_success_is_retried_once(app, rp_factory, gateway, uid):
    gateway.answer(503)
    rp = rp_factory()
    resp = follow(rp, submit(rp, setup_page(rp, "sms"), {"destination": NUMBER}))
    assert len(gateway.calls) == 2 and gateway.calls[0].form == gateway.calls[1].form
    finish(rp, submit(rp, resp, {"code": gateway.calls[-1].code()}))
    assert [f[0] for f in factors(app, uid)] == ["sms"]


def test_the_same_number_cannot_be_added_twice(app, rp_factory, gateway, uid):
    add_factor(app, uid, "sms", NUMBER)
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    finish(rp, submit(rp, resp, {"code": gateway.calls[-1].code()}))
    page = get(rp, "/mfa/setup/sms?next=account")
    resp = submit(rp, page, {"destination": "202 555 0143"})
    assert resp.status == 400 and "That phone number is already set up" in resp.text
    assert len(gateway.calls) == 1


# -- challenge -----------------------------------------------------------------------------


def test_the_challenge_sends_only_on_post_and_says_where(app, rp_factory, gateway, uid):
    add_factor(app, uid, "sms", NUMBER)
    rp = rp_factory()
    resp = challenge(rp)
    assert gateway.calls == []  # a GET never sends
    assert "Send code" in resp.text and MASKED in resp.text and 'name="code"' not in resp.text
    resp = follow(rp, press(rp, resp, "send"))
    assert f"We sent a text message with a 6-digit code to {MASKED}." in resp.text
    assert "Send a new code" in resp.text
    [call] = gateway.calls
    reloaded = get(rp, resp.url)
    assert len(gateway.calls) == 1 and 'name="code"' in reloaded.text  # reload: no new send
    claims = finish(rp, submit(rp, resp, {"code": call.code()}))
    assert claims["acr"] == AAL2 and claims["amr"] == ["mfa", "pwd", "sms"]
    assert audits(app, "mfa.code_sent")[0]["purpose"] == "mfa"


def test_email_challenge_reads_the_code_from_the_smtp_server(app, rp_factory, smtp, uid):
    add_factor(app, uid, "email", "ada.codes@example.org")
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    assert "a***@example.org" in resp.text
    code = smtp.last_to("ada.codes@example.org").code()
    claims = finish(rp, submit(rp, resp, {"code": code}))
    assert claims["acr"] == MFA and claims["amr"] == ["email", "mfa", "pwd"]


def test_email_alone_cannot_reach_aal2(app, rp_factory, smtp, uid):
    add_factor(app, uid, "email", "ada.codes@example.org")
    rp = rp_factory()
    resp = walk(rp, rp.start(acr_values=AAL2), email=EMAIL, password=PASSWORD)
    # No email challenge: the user is asked to set up a factor that reaches AAL2.
    assert path_of(resp) == "/mfa/setup"
    assert "/mfa/setup/sms" in resp.text and "/mfa/setup/email" not in resp.text


def test_wrong_code_counts_in_the_shared_failure_counter(app, rp_factory, gateway, uid):
    add_factor(app, uid, "voice", NUMBER)
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    bad = submit(rp, resp, {"code": wrong(gateway.calls[-1].code())})
    assert bad.status == 400 and "That code is not right" in bad.text
    assert user_failures(app, uid) == 1
    assert audits(app, "mfa.failure")[0]["factor"] == "voice"


def test_expired_code_is_refused(app, rp_factory, gateway, uid):
    fid = add_factor(app, uid, "sms", NUMBER)
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    code = gateway.calls[-1].code()
    with app.app_context():
        from idp.services import services

        assert services().store.expire(f"otp:code:mfa:{uid}:{fid}", 1)
    time.sleep(1.2)
    bad = submit(rp, resp, {"code": code})
    assert bad.status == 400 and "expired or was already used" in bad.text
    assert user_failures(app, uid) == 1


def test_reused_code_is_refused(app, rp_factory, gateway, uid):
    add_factor(app, uid, "sms", NUMBER)
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    code = gateway.calls[-1].code()
    finish(rp, submit(rp, resp, {"code": code}))
    other = rp_factory()
    page = challenge(other)
    # The page offers "Send code" only; post the used code with that form's fields.
    [form] = [f for f in parse_forms(page.text, page.url) if f.fields.get("action") == "send"]
    data = {**form.fields, "code": code, "action": "verify"}
    bad = other.transport.request("POST", form.action, data=data)
    assert bad.status == 400 and "expired or was already used" in bad.text
    assert len(gateway.calls) == 1


def test_a_code_for_one_factor_fails_on_another(app, rp_factory, gateway, uid):
    home = add_factor(app, uid, "sms", NUMBER, label="Home")
    work = add_factor(app, uid, "sms", "+12025550199", label="Work", is_default=True)
    add_factor(app, uid, "voice", NUMBER)
    rp = rp_factory()
    page = challenge(rp)
    assert "***-***-0199" in page.text  # the default first, the other one offered
    other = get(rp, link(page, f"factor_id={home}"))
    resp = follow(rp, press(rp, other, "send"))
    assert gateway.calls[-1].form["To"] == NUMBER
    code = gateway.calls[-1].code()
    on_work = submit(rp, resp, {"code": code, "factor_id": str(work)})
    assert on_work.status == 400
    on_voice = submit(rp, resp, {"code": code, "kind": "voice", "factor_id": ""})
    assert on_voice.status == 400
    assert user_failures(app, uid) == 2
    claims = finish(rp, submit(rp, resp, {"code": code}))  # still good where it was sent
    assert claims["amr"] == ["mfa", "pwd", "sms"]


def test_three_wrong_entries_kill_the_code_and_a_new_code_keeps_the_count(
    app, rp_factory, gateway, uid
):
    add_factor(app, uid, "sms", NUMBER)
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    code = gateway.calls[-1].code()
    for _ in range(3):
        bad = submit(rp, resp, {"code": wrong(code)})
        assert bad.status == 400
    dead = submit(rp, resp, {"code": code})
    assert dead.status == 400 and "Too many wrong entries for this code" in dead.text
    assert user_failures(app, uid) == 4
    resp = follow(rp, press(rp, dead, "send"))
    assert len(gateway.calls) == 2
    assert user_failures(app, uid) == 4  # NIST SP 800-63B: a new code does not reset it
    submit(rp, resp, {"code": wrong(gateway.calls[-1].code())})
    assert user_failures(app, uid) == 5


def test_the_shared_counter_locks_code_factors_too(app, rp_factory, gateway, uid):
    add_factor(app, uid, "sms", NUMBER)
    from dataclasses import replace

    from idp.services import services

    with app.app_context():
        svc = services()
        svc.settings = replace(svc.settings, mfa=replace(svc.settings.mfa, max_failures=3))
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    code = gateway.calls[-1].code()
    for _ in range(2):
        submit(rp, resp, {"code": wrong(code)})
    locked = submit(rp, resp, {"code": wrong(code)})
    assert locked.status == 429
    # While locked, no code is sent either.
    page = get(rp, resp.url)
    assert page.status == 429
    assert len(gateway.calls) == 1


def test_a_send_that_times_out_at_sign_in_offers_the_other_methods(app, rp_factory, gateway, uid):
    add_factor(app, uid, "sms", NUMBER, is_default=True)
    add_factor(app, uid, "email", "ada.codes@example.org")
    gateway.answer("timeout")
    rp = rp_factory()
    resp = press(rp, challenge(rp), "send")
    assert resp.status == 503
    assert "We could not send a text message right now" in resp.text
    assert "kind=email" in resp.text.replace("&amp;", "&")
    assert audits(app, "delivery.failed")[0]["reason"] == "timeout"
    assert user_failures(app, uid) == 0


# -- resend limits ---------------------------------------------------------------------------


class TestSendLimits:
    @pytest.fixture
    def settings(self, tmp_path, keys_dir, smtp, gateway):
        return make_settings(
            tmp_path, keys_dir,
            mfa={"required": True, "enforce_from": ""},
            delivery={"sms_backend": "twilio", "voice_backend": "twilio",
                      "twilio_account_sid": SID, "twilio_auth_token": TOKEN,
                      "twilio_from": FROM, "twilio_base_url": gateway.url, "timeout": 1},
            otp={"resend_cooldown": 30, "sends_per_destination": 1},
        )  # fmt: skip

    def test_resend_spam_meets_the_cooldown(self, app, rp_factory, gateway, uid):
        add_factor(app, uid, "sms", NUMBER)
        rp = rp_factory()
        resp = follow(rp, press(rp, challenge(rp), "send"))
        again = press(rp, resp, "send")
        assert again.status == 429
        assert "A code was sent moments ago. Wait" in again.text
        assert 1 <= int(again.headers["Retry-After"]) <= 30
        assert len(gateway.calls) == 1

    def test_the_destination_limit_counts_every_account(self, app, rp_factory, make_user, gateway,
                                                        uid):  # fmt: skip
        add_factor(app, uid, "sms", NUMBER)
        other_uid, _ = make_user(email="eve@example.com")
        add_factor(app, other_uid, "sms", NUMBER)
        follow(rp := rp_factory(), press(rp, challenge(rp), "send"))
        eve = rp_factory()
        resp = walk(eve, eve.start(), email="eve@example.com", password=PASSWORD)
        refused = press(eve, resp, "send")
        assert refused.status == 429 and "Too many codes were sent" in refused.text
        assert len(gateway.calls) == 1


# -- account page --------------------------------------------------------------------------


def test_account_page_shows_masked_destinations_and_the_restricted_badge(
    app, rp_factory, gateway, uid
):
    add_factor(app, uid, "sms", NUMBER, label="Phone", is_default=True)
    add_factor(app, uid, "email", "ada.codes@example.org")
    rp = rp_factory()
    resp = follow(rp, press(rp, challenge(rp), "send"))
    finish(rp, submit(rp, resp, {"code": gateway.calls[-1].code()}))
    page = get(rp, "/account/security")
    assert page.status == 200
    assert MASKED in page.text and "a***@example.org" in page.text
    assert "restricted" in page.text and "not AAL2" in page.text
    assert "Add an authenticator app or a security key" in page.text
    assert "5550143" not in page.text and "ada.codes" not in page.text
