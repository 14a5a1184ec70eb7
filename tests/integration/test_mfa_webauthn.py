"""Security keys and passkeys end to end: registration, sign-in, refused responses,
and a relying party that asks for phishing-resistant authentication.

The authenticator is :class:`tests.softauthn.SoftAuthenticator` (independent of
py_webauthn); the browser is the mock relying party over the Flask test client.
"""

from __future__ import annotations

import json
import os
import time

import cbor2
import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import (
    ISSUER,
    browsers,
    get,
    link,
    path_of,
    setup_secret,
    submit,
    submit_credential,
    totp_code,
    walk,
    webauthn_options,
)
from tests.softauthn import EDDSA, ES256, RS256, AuthenticatorError, SoftAuthenticator, b64u

EMAIL = "ada@example.com"
BOB = "bob@example.com"
CB = "https://rp.example.com/cb"
PR = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
EVIL = "http://evil.example"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(
        tmp_path,
        keys_dir,
        mfa={"required": True, "enforce_from": ""},
        webauthn={"passkey_offer_days": 30},
    )


@pytest.fixture
def rp_factory(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True)

    return browsers(app, client_id, secret, CB)


# -- helpers ---------------------------------------------------------------------------


def sign_in(rp: MockRP, email: str = EMAIL, **extra):
    """Start an authorization request and enter the password; stop at the first MFA page."""
    return walk(rp, rp.start(**extra), email=email, password=PASSWORD)


def complete(rp: MockRP, resp, email: str = EMAIL) -> dict:
    """Walk to the client (skipping the backup-method recommendation) and return the
    verified ID token claims."""
    resp = walk(rp, resp, email=email, password=PASSWORD)
    for page in ("/mfa/recommend", "/mfa/passkey/offer"):
        if resp.status == 200 and path_of(resp) == page:
            resp = submit(rp, resp, button=("choice", "skip"))
            resp = walk(rp, resp, email=email, password=PASSWORD)
    assert resp.is_redirect and resp.location.startswith(CB), (
        resp.status,
        resp.url,
        resp.text[:300],
    )
    result = rp.resume(resp, email=email, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


def register(rp: MockRP, page, authenticator: SoftAuthenticator, label: str = ""):
    """On the WebAuthn set-up page: fetch creation options, create, submit."""
    options = webauthn_options(rp, page, "register")
    return submit_credential(rp, page, authenticator.create(options), label=label)


def enroll(rp_factory, authenticator: SoftAuthenticator, email: str = EMAIL, label: str = ""):
    """Forced set-up in a new browser with *authenticator* as the first factor."""
    rp = rp_factory()
    resp = sign_in(rp, email)
    assert path_of(resp) == "/mfa/setup", resp.url
    page = get(rp, link(resp, "/mfa/setup/webauthn"))
    assert page.status == 200, page.text
    resp = register(rp, page, authenticator, label)
    assert resp.is_redirect, (resp.status, resp.text[:500])
    return rp, complete(rp, resp, email)


def at_challenge(rp_factory, email: str = EMAIL):
    """A new browser, signed in with the password, at the security key challenge."""
    rp = rp_factory()
    resp = sign_in(rp, email)
    assert path_of(resp) == "/mfa/challenge", resp.url
    assert 'data-webauthn="authenticate"' in resp.text
    return rp, resp


def without_allow_list(options: str) -> str:
    """What a discoverable-credential prompt would let through: any credential."""
    return json.dumps({**json.loads(options), "allowCredentials": []})


def user_row(app, email: str = EMAIL):
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        db.session.expunge(user)
        return user


def webauthn_rows(app, email: str = EMAIL) -> list[dict]:
    from idp.extensions import db
    from idp.models import Factor

    uid = user_row(app, email).id
    with app.app_context():
        rows = db.session.execute(
            db.select(Factor).filter_by(user_id=uid, type="webauthn").order_by(Factor.id)
        ).scalars()
        return [{c.name: getattr(f, c.name) for c in Factor.__table__.columns} for f in rows]


def events(app, name: str, email: str = EMAIL) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    uid = user_row(app, email).id
    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name, user_id=uid).order_by(AuditEvent.id)
        ).scalars()
        return [{"outcome": e.outcome, **(e.details or {})} for e in rows]


def outbox(app) -> list[dict]:
    path = app.extensions["idp"].settings.delivery.outbox
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def assert_refused(app, resp, *, failures: int, reason: str, email: str = EMAIL) -> None:
    """The challenge answered 400 with an error, counted one more failure and audited it."""
    assert resp.status == 400, (resp.status, resp.text[:500])
    assert "usa-alert--error" in resp.text
    assert path_of(resp) == "/mfa/challenge"
    assert user_row(app, email).mfa_failures == failures
    failed = events(app, "mfa.failure", email)
    assert len(failed) == failures
    assert failed[-1]["outcome"] == "failure"
    assert failed[-1]["factor"] == "webauthn"
    assert reason.lower() in failed[-1]["reason"].lower(), failed[-1]


# -- registration as the first factor ---------------------------------------------------

ALGS = [
    pytest.param(ES256, True, "swk", id="es256-passkey"),
    pytest.param(ES256, False, "hwk", id="es256-security-key"),
    pytest.param(EDDSA, False, "hwk", id="eddsa-security-key"),
    pytest.param(RS256, True, "swk", id="rs256-passkey"),
]


@pytest.mark.parametrize(("alg", "backup_eligible", "kind"), ALGS)
def test_first_factor_registration_during_forced_setup(app, rp_factory, alg, backup_eligible, kind):
    key = SoftAuthenticator(alg, backup_eligible=backup_eligible)
    rp = rp_factory()
    resp = sign_in(rp)
    assert path_of(resp) == "/mfa/setup"
    page = get(rp, link(resp, "/mfa/setup/webauthn"))
    options = json.loads(webauthn_options(rp, page, "register"))
    assert options["rp"]["id"] == "localhost"
    assert options["excludeCredentials"] == []
    assert {p["alg"] for p in options["pubKeyCredParams"]} >= {ES256, EDDSA, RS256}
    resp = submit_credential(rp, page, key.create(json.dumps(options)), label="My key")
    assert resp.is_redirect, (resp.status, resp.text[:500])
    claims = complete(rp, resp)

    assert claims["acr"] == PR
    assert claims["amr"] == sorted(["mfa", "pwd", "user", kind])
    rows = webauthn_rows(app)
    assert len(rows) == 1
    row = rows[0]
    assert row["status"] == "active"
    assert row["label"] == "My key"
    assert row["credential_id"] == b64u(key.credential_id)
    assert row["device_type"] == ("multi_device" if backup_eligible else "single_device")
    assert row["data"]["alg"] == alg
    assert row["public_key"] and row["sign_count"] == 0
    # The WebAuthn user handle is the user's opaque handle, never the email or id.
    assert key.user_handle and EMAIL.encode() not in key.user_handle
    assert b64u(key.user_handle) == user_row(app).webauthn_handle
    assert [e["factor"] for e in events(app, "mfa.factor_added")] == ["webauthn"]
    assert any(m["to"] == EMAIL and "added" in m["subject"] for m in outbox(app))


def test_default_label_names_the_kind_of_key(app, rp_factory):
    enroll(rp_factory, SoftAuthenticator(ES256, backup_eligible=True))
    assert webauthn_rows(app)[0]["label"] == "Passkey"


@pytest.mark.parametrize(("alg", "backup_eligible", "kind"), ALGS)
def test_later_sign_in_in_a_new_browser(app, rp_factory, alg, backup_eligible, kind):
    key = SoftAuthenticator(alg, backup_eligible=backup_eligible)
    enroll(rp_factory, key)

    rp, resp = at_challenge(rp_factory)
    options = json.loads(webauthn_options(rp, resp, "authenticate"))
    assert options["rpId"] == "localhost"
    assert [c["id"] for c in options["allowCredentials"]] == [b64u(key.credential_id)]
    resp = submit_credential(rp, resp, key.get(json.dumps(options), sign_count_step=5))
    assert resp.is_redirect, (resp.status, resp.text[:500])
    claims = complete(rp, resp)

    assert claims["acr"] == PR
    assert claims["amr"] == sorted(["mfa", "pwd", "user", kind])
    row = webauthn_rows(app)[0]
    assert row["sign_count"] == 5  # the new counter is stored
    assert user_row(app).mfa_failures == 0
    assert [e["factor"] for e in events(app, "mfa.success")] == ["webauthn"]


# -- more than one key --------------------------------------------------------------------


def test_second_key_excludes_the_first_and_duplicates_are_refused(app, rp_factory):
    first = SoftAuthenticator(ES256)
    rp, _ = enroll(rp_factory, first, label="First")

    page = get(rp, "/mfa/setup/webauthn?next=account")
    assert page.status == 200, (page.status, page.url)
    options = webauthn_options(rp, page, "register")
    excluded = [c["id"] for c in json.loads(options)["excludeCredentials"]]
    assert excluded == [b64u(first.credential_id)]
    # A conforming browser refuses to create a credential on an excluded authenticator...
    with pytest.raises(AuthenticatorError) as info:
        first.create(options)
    assert info.value.name == "InvalidStateError"
    # ...and one that ignores the list is refused by the server.
    stripped = json.dumps({**json.loads(options), "excludeCredentials": []})
    resp = submit_credential(rp, page, first.create(stripped), label="Again")
    assert resp.status == 400
    assert "already registered" in resp.text
    assert [r["label"] for r in webauthn_rows(app)] == ["First"]
    refused = events(app, "mfa.enroll_failed")
    assert refused and refused[-1]["reason"] == "duplicate credential id"

    second = SoftAuthenticator(EDDSA)
    resp = register(rp, page, second, "Second")
    assert resp.is_redirect and "/account/security" in resp.location, resp
    rows = webauthn_rows(app)
    assert [r["label"] for r in rows] == ["First", "Second"]
    assert rows[1]["credential_id"] == b64u(second.credential_id)

    # Either key now signs in.
    for key in (first, second):
        rp2, resp = at_challenge(rp_factory)
        options = webauthn_options(rp2, resp, "authenticate")
        assert {c["id"] for c in json.loads(options)["allowCredentials"]} == {
            r["credential_id"] for r in rows
        }
        claims = complete(rp2, submit_credential(rp2, resp, key.get(options)))
        assert claims["acr"] == PR


def test_another_users_credential_cannot_be_registered_again(app, rp_factory, make_user):
    make_user(BOB, name="Bob")
    key = SoftAuthenticator(ES256)
    enroll(rp_factory, key)
    rp = rp_factory()
    resp = sign_in(rp, BOB)
    page = get(rp, link(resp, "/mfa/setup/webauthn"))
    resp = register(rp, page, key)  # same credential id, now offered for Bob
    assert resp.status == 400 and "already registered" in resp.text
    assert webauthn_rows(app, BOB) == []
    assert len(webauthn_rows(app)) == 1


# -- refused assertions -------------------------------------------------------------------


def _forge(case: str, key: SoftAuthenticator, options: str, other: SoftAuthenticator):
    if case == "wrong-origin":
        return key.get(options, origin=EVIL)
    if case == "wrong-rp-id":
        return key.get(options, rp_id="evil.example")
    if case == "wrong-challenge":
        return key.get(options, challenge=os.urandom(32))
    if case == "unknown-credential":
        return SoftAuthenticator(ES256).get(without_allow_list(options))
    if case == "another-users-credential":
        return other.get(without_allow_list(options))
    raise AssertionError(case)


REFUSALS = [
    pytest.param("wrong-origin", 'origin "http://evil.example"', id="wrong-origin"),
    pytest.param("wrong-rp-id", "Unexpected RP ID hash", id="wrong-rp-id"),
    pytest.param("wrong-challenge", "challenge was not expected", id="wrong-challenge"),
    pytest.param(
        "unknown-credential", "credential not registered to this user", id="unknown-credential"
    ),
    pytest.param(
        "another-users-credential",
        "credential not registered to this user",
        id="another-users-credential",
    ),
]


@pytest.mark.parametrize(("case", "reason"), REFUSALS)
def test_assertion_refused_and_counted(app, rp_factory, make_user, case, reason):
    key = SoftAuthenticator(ES256)
    enroll(rp_factory, key)
    bobs = SoftAuthenticator(ES256)
    if case == "another-users-credential":
        make_user(BOB, name="Bob")
        enroll(rp_factory, bobs, email=BOB)
        assert len(webauthn_rows(app, BOB)) == 1
    before = webauthn_rows(app)[0]

    rp, page = at_challenge(rp_factory)
    options = webauthn_options(rp, page, "authenticate")
    resp = submit_credential(rp, page, _forge(case, key, options, bobs))
    assert_refused(app, resp, failures=1, reason=reason)
    after = webauthn_rows(app)[0]
    assert after["sign_count"] == before["sign_count"]
    assert after["last_used_at"] == before["last_used_at"]
    assert events(app, "mfa.success") == []
    if case == "another-users-credential":
        assert webauthn_rows(app, BOB)[0]["sign_count"] == 0
        assert user_row(app, BOB).mfa_failures == 0

    # The refusal took the challenge: a correct answer needs new options, then works.
    retry = submit_credential(rp, page, key.get(options))
    assert_refused(app, retry, failures=2, reason="no pending authentication challenge")
    fresh = webauthn_options(rp, page, "authenticate")
    claims = complete(rp, submit_credential(rp, page, key.get(fresh)))
    assert claims["acr"] == PR
    assert user_row(app).mfa_failures == 0


def test_replayed_assertion_is_refused(app, rp_factory):
    key = SoftAuthenticator(ES256)
    enroll(rp_factory, key)
    rp, page = at_challenge(rp_factory)
    assertion = key.get(webauthn_options(rp, page, "authenticate"))
    first = submit_credential(rp, page, assertion)
    assert first.is_redirect, (first.status, first.text[:300])
    assert user_row(app).mfa_failures == 0

    again = submit_credential(rp, page, assertion)
    assert_refused(app, again, failures=1, reason="no pending authentication challenge")

    # Captured by someone who also knows the password: their own challenge does not match.
    rp2, page2 = at_challenge(rp_factory)
    webauthn_options(rp2, page2, "authenticate")
    stolen = submit_credential(rp2, page2, assertion)
    assert_refused(app, stolen, failures=2, reason="challenge was not expected")
    assert len(events(app, "mfa.success")) == 1


def test_sign_count_regression_is_a_possible_clone(app, rp_factory):
    key = SoftAuthenticator(ES256, backup_eligible=False)
    enroll(rp_factory, key, label="Blue key")
    rp, page = at_challenge(rp_factory)
    options = webauthn_options(rp, page, "authenticate")
    complete(rp, submit_credential(rp, page, key.get(options, sign_count_step=10)))
    assert webauthn_rows(app)[0]["sign_count"] == 10
    sent_before = len(outbox(app))

    key.set_sign_count(3)  # a copy of the key that fell behind
    rp, page = at_challenge(rp_factory)
    resp = submit_credential(rp, page, key.get(webauthn_options(rp, page, "authenticate")))
    assert_refused(app, resp, failures=1, reason="possible clone")
    assert webauthn_rows(app)[0]["sign_count"] == 10  # never lowered
    clones = events(app, "mfa.webauthn_possible_clone")
    assert len(clones) == 1
    assert clones[0]["outcome"] == "failure"
    assert clones[0]["factor_id"] == webauthn_rows(app)[0]["id"]
    assert "stored 10, got 4" in clones[0]["reason"]
    new = outbox(app)[sent_before:]
    assert len(new) == 1
    assert new[0]["to"] == EMAIL
    assert "security key" in new[0]["subject"].lower()
    assert "Blue key" in new[0]["text"]


# -- refused registrations ----------------------------------------------------------------


def _tamper(credential: dict, how: str) -> dict:
    att = cbor2.loads(_unb64u(credential["response"]["attestationObject"]))
    auth_data = bytearray(att["authData"])
    if how == "packed-bad-signature":
        att["fmt"] = "packed"
        att["attStmt"] = {"alg": ES256, "sig": os.urandom(70)}
    elif how == "none-with-statement":
        att["attStmt"] = {"sig": os.urandom(70)}
    elif how == "user-not-present":
        auth_data[32] &= ~0x01
    elif how == "credential-id-swapped":
        auth_data[32 + 1 + 4 + 16 + 2] ^= 0xFF  # first byte of the attested credential id
    elif how == "truncated":
        raw = cbor2.dumps(att)[:-20]
        credential["response"]["attestationObject"] = b64u(raw)
        return credential
    else:
        raise AssertionError(how)
    att["authData"] = bytes(auth_data)
    credential["response"]["attestationObject"] = b64u(cbor2.dumps(att))
    credential["response"]["authenticatorData"] = b64u(bytes(auth_data))
    return credential


def _unb64u(s: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _fake_options() -> str:
    """Creation options the server never issued (what a script could make up)."""
    return json.dumps({
        "challenge": b64u(os.urandom(32)),
        "rp": {"id": "localhost", "name": "Anything"},
        "user": {"id": b64u(os.urandom(32)), "name": EMAIL, "displayName": "Ada"},
        "pubKeyCredParams": [{"type": "public-key", "alg": ES256}],
        "excludeCredentials": [],
    })  # fmt: skip


REGISTRATION_REFUSALS = [
    pytest.param("wrong-origin", 'origin "http://evil.example"', id="wrong-origin"),
    pytest.param("wrong-rp-id", "Unexpected RP ID hash", id="wrong-rp-id"),
    pytest.param("not-issued", "no pending registration challenge", id="challenge-not-issued"),
    pytest.param("other-browser", "challenge was not expected", id="challenge-of-another-browser"),
    pytest.param(
        "packed-bad-signature", "attestation statement signature", id="tampered-packed-signature"
    ),
    pytest.param(
        "none-with-statement", "None attestation had unexpected", id="tampered-none-statement"
    ),
    pytest.param("user-not-present", "User presence was required", id="tampered-user-presence"),
    pytest.param("credential-id-swapped", "rawId differs", id="tampered-credential-id"),
    pytest.param("truncated", "attestationObject was malformed", id="tampered-truncated"),
]


@pytest.mark.parametrize(("case", "reason"), REGISTRATION_REFUSALS)
def test_registration_refused_leaves_nothing(app, rp_factory, case, reason):
    key = SoftAuthenticator(ES256)
    rp = rp_factory()
    resp = sign_in(rp)
    page = get(rp, link(resp, "/mfa/setup/webauthn"))
    if case == "not-issued":
        credential = key.create(_fake_options())
    elif case == "other-browser":
        other = rp_factory()
        other_page = get(other, link(sign_in(other), "/mfa/setup/webauthn"))
        credential = key.create(webauthn_options(other, other_page, "register"))
        webauthn_options(rp, page, "register")  # this browser's own (different) challenge
    else:
        options = webauthn_options(rp, page, "register")
        if case == "wrong-origin":
            credential = key.create(options, origin=EVIL)
        elif case == "wrong-rp-id":
            credential = key.create(options, rp_id="evil.example")
        else:
            credential = _tamper(key.create(options), case)
    resp = submit_credential(rp, page, credential, label="Bad")

    assert resp.status == 400, (resp.status, resp.text[:500])
    assert 'role="alert"' in resp.text and 'data-webauthn="register"' in resp.text
    assert webauthn_rows(app) == []
    assert events(app, "mfa.factor_added") == []
    refused = events(app, "mfa.enroll_failed")
    assert len(refused) == 1 and refused[0]["factor"] == "webauthn"
    assert reason.lower() in refused[0]["reason"].lower(), refused[0]
    assert user_row(app).mfa_failures == 0  # set-up mistakes are not guesses
    # The session did not gain a factor: the sign-in still needs set-up.
    again = walk(rp, get(rp, resp.url.replace("/mfa/setup/webauthn", "/mfa/setup")),
                 email=EMAIL, password=PASSWORD)  # fmt: skip
    assert again.status == 200 and path_of(again) == "/mfa/setup"

    # A good response with fresh options still works afterwards.
    resp = register(rp, page, SoftAuthenticator(ES256))
    assert resp.is_redirect, (resp.status, resp.text[:300])
    assert len(webauthn_rows(app)) == 1


# -- a relying party that asks for phishing resistance ------------------------------------


def totp_user(rp_factory) -> str:
    """Ada with an authenticator app only; returns its secret."""
    rp = rp_factory()
    resp = sign_in(rp)
    page = get(rp, link(resp, "/mfa/setup/totp"))
    secret = setup_secret(page)
    resp = submit(rp, page, {"code": totp_code(secret), "label": "Phone"})
    claims = complete(rp, resp)
    assert claims["acr"] == AAL2
    return secret


def test_phishing_resistant_request_for_a_totp_user_offers_only_a_key(app, rp_factory):
    secret = totp_user(rp_factory)

    rp = rp_factory()  # a new browser, and an RP asking for phishing resistance
    resp = sign_in(rp, acr_values=PR)
    assert resp.status == 200 and path_of(resp) == "/mfa/setup", resp.url
    choices = [h for h in _hrefs(resp) if "/mfa/setup/" in h]
    assert len(choices) == 1 and "/mfa/setup/webauthn" in choices[0], choices
    assert "/mfa/challenge" not in resp.text

    # Adding a factor needs a recent second factor: the TOTP challenge, then back here.
    resp = get(rp, choices[0])
    assert resp.status == 302
    assert "/mfa/challenge" in resp.location and "reauth=1" in resp.location
    challenge = get(rp, resp.location)
    assert challenge.status == 200 and 'name="kind" value="totp"' in challenge.text
    assert webauthn_rows(app) == []
    step = int(time.time() // 30) + 1  # the enrollment used the current step
    resp = submit(rp, challenge, {"code": totp_code(secret, step)})
    assert resp.is_redirect, (resp.status, resp.text[:300])
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup"
    assert [h for h in _hrefs(resp) if "/mfa/setup/" in h] == choices

    page = get(rp, link(resp, "/mfa/setup/webauthn"))
    assert page.status == 200 and 'data-webauthn="register"' in page.text
    key = SoftAuthenticator(ES256, backup_eligible=True)
    claims = complete(rp, register(rp, page, key, "Laptop"))
    assert claims["acr"] == PR
    assert claims["amr"] == ["mfa", "otp", "pwd", "swk", "user"]
    assert len(webauthn_rows(app)) == 1


def _hrefs(resp) -> list[str]:
    import re

    return [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"', resp.text)]


def test_factor_passed_this_second_counts_as_recent(app, rp_factory, monkeypatch):
    from types import SimpleNamespace

    from idp.mfa import pages as mfa_views

    frozen = int(time.time())
    app.extensions["idp"].sessions.clock = lambda: frozen
    monkeypatch.setattr(mfa_views, "time", SimpleNamespace(time=lambda: frozen))
    rp, _ = enroll(rp_factory, SoftAuthenticator(ES256))  # the key passed at `frozen`
    page = get(rp, "/mfa/setup/webauthn?next=account")  # 0 seconds later
    assert page.status == 200, page.location


def test_phishing_resistant_enrollment_page_says_why(app, rp_factory):
    totp_user(rp_factory)
    rp = rp_factory()
    resp = sign_in(rp, acr_values=PR)
    assert path_of(resp) == "/mfa/setup"
    assert "requires a security key or passkey" in resp.text


# -- a sign-in with a passkey alone ------------------------------------------------------


def at_signin(rp_factory, **extra):
    """A new browser at the sign-in page of an authorization request."""
    rp = rp_factory()
    resp = rp.start(**extra)
    while resp.is_redirect:
        resp = get(rp, resp.location)
    assert resp.status == 200 and path_of(resp) == "/signin", (resp.status, resp.url)
    return rp, resp


def passkey_options(rp: MockRP, page) -> str:
    """POST the sign-in page's passkey form fields to the options endpoint, as
    passkey.js does."""
    form = next(f for f in parse_forms(page.text, page.url) if "credential" in f.fields)
    data = {k: v for k, v in form.fields.items() if k in ("csrf_token", "txn", "next")}
    resp = rp.transport.request("POST", f"{ISSUER}/signin/passkey/options", data=data)
    assert resp.status == 200, (resp.status, resp.text[:300])
    return resp.text


def passkey_sign_in(rp: MockRP, page, credential: dict):
    return rp.submit(page, {"credential": json.dumps(credential)})


def all_events(app, name: str) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [{"outcome": e.outcome, "user_id": e.user_id, **(e.details or {})} for e in rows]


def security_page(rp: MockRP) -> str:
    resp = get(rp, "/account/security")
    assert resp.status == 200, (resp.status, resp.url)
    return resp.text


PASSKEYS = [
    pytest.param(False, (), ["hwk", "mfa", "user"], id="device-bound"),
    pytest.param(True, (), ["mfa", "swk", "user"], id="synced"),
    pytest.param(False, (0x00000002,), ["fpt", "hwk", "mfa", "user"], id="fingerprint"),
    pytest.param(True, (0x00000004,), ["mfa", "pin", "swk", "user"], id="pin"),
]


@pytest.mark.parametrize(("backup_eligible", "uvm", "amr"), PASSKEYS)
def test_passkey_signs_in_alone(app, rp_factory, backup_eligible, uvm, amr):
    key = SoftAuthenticator(ES256, backup_eligible=backup_eligible, discoverable=True, uvm=uvm)
    rp, _ = enroll(rp_factory, key)
    row = webauthn_rows(app)[0]
    assert row["data"]["discoverable"] is True and row["data"]["user_verified"] is True
    assert "Can sign in without a password" in security_page(rp)

    rp, page = at_signin(rp_factory)
    assert 'autocomplete="username webauthn"' in page.text
    assert "Sign in with a passkey" in page.text
    options = json.loads(passkey_options(rp, page))
    # A discoverable credential of any user, verified by the authenticator.
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    assert options["rpId"] == "localhost"
    resp = passkey_sign_in(rp, page, key.get(json.dumps(options), sign_count_step=7))
    assert resp.is_redirect, (resp.status, resp.text[:500])
    claims = complete(rp, resp)

    # No email, no password: the passkey is both steps, and phishing-resistant.
    assert claims["acr"] == PR
    assert claims["amr"] == amr
    assert webauthn_rows(app)[0]["sign_count"] == 7
    signed = events(app, "login.passkey")
    assert [(e["outcome"], e["factor"]) for e in signed] == [("success", "webauthn")]
    assert signed[0]["factor_id"] == row["id"]
    # The session is the account's: its pages open without a password.
    assert EMAIL in security_page(rp)


def test_passkey_sign_in_without_user_verification_is_refused_as_first_step(app, rp_factory):
    key = SoftAuthenticator(ES256, discoverable=True)
    enroll(rp_factory, key)
    key.user_verified = False  # the same credential, answered without a PIN or biometric

    rp, page = at_signin(rp_factory)
    resp = passkey_sign_in(rp, page, key.get(passkey_options(rp, page)))
    assert resp.status == 400 and path_of(resp) == "/signin/passkey"
    assert "usa-alert--error" in resp.text and "did not check that it is you" in resp.text
    assert 'name="password"' in resp.text  # the sign-in page, to go on with the password
    refused = events(app, "login.passkey")
    assert [(e["outcome"], e["reason"]) for e in refused] == [("failure", "user_not_verified")]
    # Not signed in: the account pages still ask for a sign-in.
    assert get(rp, "/account/security").status == 302
    # The assertion was genuine: its counter is kept, and nothing is counted against it.
    assert webauthn_rows(app)[0]["sign_count"] == 1
    assert user_row(app).mfa_failures == 0

    # After the password, the same key without user verification is a second step.
    rp, resp = at_challenge(rp_factory)
    claims = complete(
        rp, submit_credential(rp, resp, key.get(webauthn_options(rp, resp, "authenticate")))
    )
    assert claims["acr"] == PR
    assert claims["amr"] == ["hwk", "mfa", "pwd", "user"]


def test_security_key_that_is_not_discoverable_is_a_second_step_only(app, rp_factory):
    key = SoftAuthenticator(ES256, discoverable=False)
    rp, _ = enroll(rp_factory, key)
    row = webauthn_rows(app)[0]
    assert row["label"] == "Security key" and row["data"]["discoverable"] is False
    text = security_page(rp)
    assert "Second step only" in text and "Can sign in without a password" not in text

    rp, page = at_signin(rp_factory)
    options = passkey_options(rp, page)
    with pytest.raises(AuthenticatorError) as info:  # nothing on it to offer
        key.get(options)
    assert info.value.name == "NotAllowedError"
    # A client that answers anyway (no user handle, as from a server-side credential)
    # is refused, and the key stays a second step only.
    key.user_handle = None
    key.discoverable = None
    resp = passkey_sign_in(rp, page, key.get(options))
    assert resp.status == 400 and "That passkey could not sign you in" in resp.text
    assert events(app, "login.passkey")[-1]["reason"] == (
        "user handle does not name the credential's owner"
    )
    assert not signs_alone(app)


def signs_alone(app) -> bool:
    from idp.extensions import db
    from idp.mfa.webauthn import signs_in_alone
    from idp.models import Factor

    with app.app_context():
        return any(signs_in_alone(f) for f in db.session.execute(db.select(Factor)).scalars())


def test_passkey_challenge_is_single_use_and_bound_to_the_browser(app, rp_factory):
    key = SoftAuthenticator(ES256, discoverable=True)
    enroll(rp_factory, key)
    rp, page = at_signin(rp_factory)
    assertion = key.get(passkey_options(rp, page))
    assert passkey_sign_in(rp, page, assertion).is_redirect

    # Replayed: the challenge was taken, and another browser's is another challenge.
    rp2, page2 = at_signin(rp_factory)
    again = passkey_sign_in(rp2, page2, assertion)
    assert again.status == 400 and "That passkey could not sign you in" in again.text
    passkey_options(rp2, page2)
    stolen = passkey_sign_in(rp2, page2, assertion)
    assert stolen.status == 400 and "That passkey could not sign you in" in stolen.text
    signed = events(app, "login.passkey")
    assert [e["outcome"] for e in signed] == ["success", "failure", "failure"]
    assert signed[1]["reason"] == "no pending passkey challenge"
    assert "challenge" in signed[2]["reason"], signed[2]
    assert len(webauthn_rows(app)) == 1 and user_row(app).mfa_failures == 0


def test_unknown_credential_gets_the_same_answer(app, rp_factory):
    key = SoftAuthenticator(ES256, discoverable=True)
    enroll(rp_factory, key)
    stranger = SoftAuthenticator(ES256, discoverable=True)
    stranger.user_handle = key.user_handle  # even naming a real account's handle
    rp, page = at_signin(rp_factory)
    unknown = passkey_sign_in(rp, page, stranger.get(passkey_options(rp, page)))
    rp, page = at_signin(rp_factory)
    forged = passkey_sign_in(rp, page, key.get(passkey_options(rp, page), origin=EVIL))
    assert unknown.status == forged.status == 400
    assert "That passkey could not sign you in" in unknown.text
    assert "That passkey could not sign you in" in forged.text
    failed = all_events(app, "login.passkey")
    assert [(e["outcome"], e["reason"]) for e in failed][0] == (
        "failure",
        "credential not registered",
    )
    assert failed[0]["user_id"] is None


def test_passkey_failures_are_throttled_per_credential(app, rp_factory):
    limit = app.extensions["idp"].settings.login.max_consecutive_failures
    key = SoftAuthenticator(ES256, discoverable=True)
    enroll(rp_factory, key)
    rp, page = at_signin(rp_factory)
    for _ in range(limit):
        resp = passkey_sign_in(rp, page, key.get(passkey_options(rp, page), origin=EVIL))
        assert resp.status == 400
    # The next attempt with that credential is refused before any verification, even a
    # good one, and says when to come back.
    resp = passkey_sign_in(rp, page, key.get(passkey_options(rp, page)))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) > 0
    assert len(events(app, "login.passkey")) == limit
    # The owner's password and second step are not paused by someone else's guesses.
    rp, resp = at_challenge(rp_factory)
    claims = complete(
        rp, submit_credential(rp, resp, key.get(webauthn_options(rp, resp, "authenticate")))
    )
    assert claims["acr"] == PR


def test_passkey_sign_count_regression_is_refused_and_reported(app, rp_factory):
    key = SoftAuthenticator(ES256, discoverable=True)
    enroll(rp_factory, key, label="Laptop")
    rp, page = at_signin(rp_factory)
    complete(rp, passkey_sign_in(rp, page, key.get(passkey_options(rp, page), sign_count_step=10)))
    stored = webauthn_rows(app)[0]["sign_count"]
    sent_before = len(outbox(app))

    key.set_sign_count(2)  # a copy that fell behind
    rp, page = at_signin(rp_factory)
    resp = passkey_sign_in(rp, page, key.get(passkey_options(rp, page)))
    assert resp.status == 400 and "That passkey could not sign you in" in resp.text
    assert webauthn_rows(app)[0]["sign_count"] == stored
    clones = events(app, "mfa.webauthn_possible_clone")
    assert len(clones) == 1 and clones[0]["outcome"] == "failure"
    assert events(app, "login.passkey")[-1]["reason"] == "possible clone"
    new = outbox(app)[sent_before:]
    assert len(new) == 1 and new[0]["to"] == EMAIL and "Laptop" in new[0]["text"]


def test_passkey_of_a_disabled_account_does_not_sign_in(app, rp_factory):
    from idp.extensions import db
    from idp.models import User

    key = SoftAuthenticator(ES256, discoverable=True)
    enroll(rp_factory, key)
    with app.app_context():
        db.session.execute(db.update(User).where(User.email == EMAIL).values(status="disabled"))
        db.session.commit()
    rp, page = at_signin(rp_factory)
    resp = passkey_sign_in(rp, page, key.get(passkey_options(rp, page)))
    assert resp.status == 403 and "disabled" in resp.text
    assert events(app, "login.passkey")[-1]["reason"] == "disabled"


# -- "sign in faster next time" ----------------------------------------------------------


def _two_security_keys(rp_factory) -> SoftAuthenticator:
    """A user with two keys that are a second step only (no passkey)."""
    first = SoftAuthenticator(ES256, discoverable=False)
    rp, _ = enroll(rp_factory, first, label="First")
    page = get(rp, "/mfa/setup/webauthn?next=account")
    assert register(rp, page, SoftAuthenticator(ES256, discoverable=False), "Second").is_redirect
    return first


def _password_and_key(rp_factory, key: SoftAuthenticator, **extra):
    rp = rp_factory()
    resp = sign_in(rp, **extra)
    assert path_of(resp) == "/mfa/challenge", resp.url
    resp = submit_credential(rp, resp, key.get(webauthn_options(rp, resp, "authenticate")))
    return rp, walk(rp, resp, email=EMAIL, password=PASSWORD, passkey_offer=None)


def _offered_days_ago(app, days: int) -> None:
    import datetime as dt

    from idp.extensions import db
    from idp.models import User

    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
    with app.app_context():
        db.session.execute(
            db.update(User).where(User.email == EMAIL).values(passkey_offered_at=when)
        )
        db.session.commit()


def test_passkey_offered_after_a_password_sign_in_at_most_monthly(app, rp_factory):
    key = _two_security_keys(rp_factory)
    assert user_row(app).passkey_offered_at is None

    rp, resp = _password_and_key(rp_factory, key)
    assert resp.status == 200 and path_of(resp) == "/mfa/passkey/offer", resp.url
    assert "Sign in faster next time" in resp.text
    # Shown is what counts: recorded at once, and a reload shows it again.
    assert user_row(app).passkey_offered_at is not None
    again = get(rp, resp.url)
    assert again.status == 200 and "Sign in faster next time" in again.text
    claims = complete(rp, again)
    assert claims["acr"] == PR
    assert [e["choice"] for e in events(app, "mfa.passkey_offer")] == ["skip"]

    # Within the month: no offer.
    rp, resp = _password_and_key(rp_factory, key)
    assert resp.is_redirect and resp.location.startswith(CB), (resp.status, resp.url)
    # Never in a re-authentication the application asked for.
    _offered_days_ago(app, 31)
    rp, resp = _password_and_key(rp_factory, key, prompt="login")
    assert resp.is_redirect and resp.location.startswith(CB), (resp.status, resp.url)

    # A month later: offered again; "Set up a passkey" leads to the set-up, then on.
    rp, resp = _password_and_key(rp_factory, key)
    assert path_of(resp) == "/mfa/passkey/offer", resp.url
    page = walk(rp, submit(rp, resp, button=("choice", "setup")), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/setup/webauthn", page.url
    passkey = SoftAuthenticator(ES256, discoverable=True)
    claims = complete(rp, register(rp, page, passkey, "Phone"))
    assert claims["acr"] == PR
    assert signs_alone(app)

    # With a passkey, no more offers, whenever the last one was.
    _offered_days_ago(app, 365)
    rp, resp = _password_and_key(rp_factory, key)
    assert resp.is_redirect and resp.location.startswith(CB), (resp.status, resp.url)


def test_passkey_offer_page_outside_its_step_writes_nothing(app, rp_factory):
    key = _two_security_keys(rp_factory)
    _offered_days_ago(app, 5)
    before = user_row(app).passkey_offered_at
    rp, resp = _password_and_key(rp_factory, key)
    assert resp.is_redirect and resp.location.startswith(CB)
    rp, page = at_signin(rp_factory)
    txn = parse_forms(page.text, page.url)[0].fields["txn"]
    # Not signed in yet: the offer is not answered, the sign-in page comes back.
    resp = get(rp, f"/mfa/passkey/offer?txn={txn}")
    assert resp.is_redirect and "/signin" in resp.location
    assert user_row(app).passkey_offered_at == before
    assert events(app, "mfa.passkey_offer") == []
