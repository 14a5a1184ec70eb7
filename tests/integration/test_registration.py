"""New User Registration: the form, no enumeration, registration attempts confirmed by
their own link (signed, single use, 24 h) and their own password (no pre-account
hijack), pending registrations kept out of sign-in, rate limits, the on/off switch, and
the way back to the application that sent the user."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import (
    STRONG,
    events,
    form_fields,
    link_in,
    outbox,
    post,
    sent,
    signin,
    text,
    user_row,
)
from tests.integration.mfa_helpers import browsers, get, path_of, submit, walk

NEW = "grace@example.com"
CB = "https://rp.example.com/cb"


@pytest.fixture
def overrides() -> dict:
    return {}


@pytest.fixture
def settings(tmp_path, keys_dir, overrides):
    return make_settings(tmp_path, keys_dir, **overrides)


def register(client, email=NEW, password=STRONG, confirm=None, name="Grace Hopper", **extra):
    data = {"name": name, "email": email, "password": password,
            "password_confirm": password if confirm is None else confirm, **extra}  # fmt: skip
    return sent(post(client, "/register", data, form_path=extra.pop("form_path", "/register")))


def verify_link(app, email=NEW, index=-1) -> str:
    mails = [m for m in outbox(app, "account.verify_email") if m["to"] == email]
    assert mails, outbox(app)
    return link_in(mails[index], "/verify/")


def confirm(client, link: str, password: str = STRONG):
    """Open the link (a page), then confirm it with the password (the POST)."""
    return post(client, link, {"password": password}, names=("password",))


def attempts(app, email=NEW) -> list[tuple[int, str, str]]:
    """(id, name, password hash) of the pending registration attempts for *email*."""
    from idp.extensions import db
    from idp.models import RegistrationAttempt

    with app.app_context():
        rows = db.session.execute(
            db.select(RegistrationAttempt).filter_by(email=email).order_by(RegistrationAttempt.id)
        ).scalars()
        return [(a.id, a.name, a.password_hash) for a in rows]


# -- the form --------------------------------------------------------------------------


def test_sign_in_page_offers_registration_and_password_reset(client):
    page = text(client.get("/signin"))
    assert 'href="/register"' in page and "Create an account" in page
    assert 'href="/forgot"' in page and "Forgot your password?" in page


def test_form_has_labels_for_every_field(client):
    page = text(client.get("/register"))
    for field in ("name", "email", "password", "password_confirm"):
        assert re.search(rf'<label for="{field}"[^>]*>', page), field
        assert f'id="{field}" name="{field}"' in page
    assert 'autocomplete="new-password"' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script (CSP)


def test_register_then_confirm_with_the_password_then_signed_in(app, client):
    resp = register(client)
    assert resp.status_code == 303 and resp.location.endswith("/register/sent")
    page = client.get(resp.location)
    assert "Check your email" in text(page)
    # No account yet: a registration attempt, with the password hashed.
    assert user_row(app, NEW) is None
    [(attempt_id, name, pw_hash)] = attempts(app)
    assert name == "Grace Hopper"
    assert pw_hash.startswith("$argon2id$") and STRONG not in pw_hash
    assert events(app, "user.registration_started")[0][2]["attempt"] == attempt_id
    [mail] = outbox(app, "account.verify_email")
    assert mail["to"] == NEW and "Confirm your email" in mail["subject"]
    assert "24 hours" in mail["text"] and "password you chose" in mail["text"]

    # Not yet confirmed: the right password gets "verify first" and a fresh link.
    before = len(outbox(app, "account.verify_email"))
    denied = signin(client, NEW, STRONG)
    assert denied.status_code == 403
    assert "Verify your email address first" in text(denied)
    assert client.get_cookie("idp_session") is None
    assert len(outbox(app, "account.verify_email")) == before + 1
    assert events(app, "login.failure")[-1][2]["reason"] == "registration_pending"

    # Opening the link shows a page and changes nothing (a mail scanner confirms nothing).
    link = verify_link(app)
    shown = client.get(link)
    assert shown.status_code == 200 and "Confirm your email address" in text(shown)
    assert user_row(app, NEW) is None and client.get(link).status_code == 200

    done = confirm(client, link)
    assert done.status_code == 200, text(done)
    assert "Your email is verified and you are signed in" in text(done)
    uid, verified, pw_hash_now, name = user_row(app, NEW)
    assert verified is True and pw_hash_now == pw_hash and name == "Grace Hopper"
    assert events(app, "user.registered")[-1][1] == uid
    assert events(app, "email.verified")[-1][1] == uid
    assert attempts(app) == []
    assert client.get_cookie("idp_session") is not None  # confirming signed in

    ok = signin(client, NEW, STRONG)
    assert ok.status_code == 302


def test_confirming_needs_the_password_of_the_attempt(app, client):
    register(client)
    link = verify_link(app)
    wrong = confirm(client, link, "not the password at all")
    assert wrong.status_code == 400 and "not the password chosen" in text(wrong)
    assert user_row(app, NEW) is None
    assert events(app, "email.verify_failed")[-1][2]["reason"] == "bad_password"
    # Five wrong passwords burn the link.
    for _ in range(4):
        confirm(client, link, "still not the password")
    resp = client.get(link)
    assert resp.status_code == 400 and user_row(app, NEW) is None
    assert confirm_status(client, link) == 400


def confirm_status(client, link: str) -> int:
    return client.get(link).status_code


def test_a_get_of_the_link_never_confirms(app, client):
    """Link scanners and previews follow links with GET (and HEAD): nothing happens."""
    register(client)
    link = verify_link(app)
    for _ in range(3):
        assert client.get(link).status_code == 200
        assert client.head(link).status_code == 200
    assert user_row(app, NEW) is None and len(attempts(app)) == 1
    # A POST without the page's CSRF token does nothing either.
    resp = client.post(link, data={"password": STRONG})
    assert resp.status_code == 400 and user_row(app, NEW) is None
    assert confirm(client, link).status_code == 200


def test_unverified_wrong_password_gets_the_generic_message_and_no_mail(app, client):
    register(client)
    sent = len(outbox(app))
    resp = signin(client, NEW, "not the password at all")
    assert resp.status_code == 200
    assert "The email or password is not right" in text(resp)
    assert "verify" not in text(resp).lower()
    assert len(outbox(app)) == sent


def test_resending_at_sign_in_is_limited(app, client):
    register(client)
    for _ in range(5):
        assert signin(client, NEW, STRONG).status_code == 403
    # One link from the registration, three resends per hour.
    assert len(outbox(app, "account.verify_email")) == 4


# -- no enumeration ----------------------------------------------------------------------


def _shape(resp) -> tuple[int, str | None]:
    return resp.status_code, resp.location


def test_taken_email_is_indistinguishable(app, client, make_user):
    make_user(email="ada@example.com")
    before = user_row(app, "ada@example.com")
    fresh = register(client, email=NEW)
    taken = register(client, email="ada@example.com", name="Mallory")
    assert _shape(fresh) == _shape(taken)
    assert text(client.get(fresh.location)) == text(client.get(taken.location))
    # The owner hears about it; nothing about the account changed.
    [notice] = outbox(app, "account.register_existing")
    assert notice["to"] == "ada@example.com"
    assert "Someone tried to create an account" in notice["subject"]
    assert "/forgot" in notice["text"]
    assert user_row(app, "ada@example.com") == before
    assert not [m for m in outbox(app, "account.verify_email") if m["to"] == "ada@example.com"]
    assert events(app, "user.register_existing")[0][0] == "failure"


def test_taken_email_costs_the_same_work(app, client, make_user, monkeypatch):
    """The password is hashed whether or not the address is taken (equal timing)."""
    make_user(email="ada@example.com")
    svc = app.extensions["idp"]
    calls: list[str] = []
    original = svc.passwords.hash
    monkeypatch.setattr(svc.passwords, "hash", lambda p: calls.append(p) or original(p))
    register(client, email=NEW)
    register(client, email="ada@example.com")
    assert calls == [STRONG, STRONG]


def test_each_registration_of_a_pending_address_is_an_attempt_of_its_own(app, client):
    register(client, password=STRONG)
    again = register(client, password="an entirely different passphrase", name="Mallory")
    assert again.status_code == 303
    assert [name for _, name, _ in attempts(app)] == ["Grace Hopper", "Mallory"]
    assert user_row(app, NEW) is None
    assert len([m for m in outbox(app, "account.verify_email") if m["to"] == NEW]) == 2


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"password": "short pw"}, "password", "at least 12"),
        ({"password": "password12345"}, "password", "common"),
        ({"password": "aaaaaaaaaaaaaaaa"}, "password", "repeated"),
        ({"password": "grace.hopper.example"}, "password", "name or email"),
        ({"password": "x" * 129}, "password", "at most 128"),
        ({"confirm": "correct horse battery stapler"}, "password_confirm", "not the same"),
        ({"email": "not-an-address"}, "email", "like name@example.com"),
        ({"email": "a@b"}, "email", "like name@example.com"),
        ({"email": "two@@example.com"}, "email", "like name@example.com"),
        ({"email": "<script>@example.com"}, "email", "like name@example.com"),
        ({"email": "g" * 3000 + "@example.com"}, "email", "at most 254 characters"),
        ({"email": ""}, "email", "Enter your email"),
        ({"name": "   "}, "name", "Enter your full name"),
        ({"name": "n" * 201}, "name", "at most 200"),
        ({"name": "Grace\u200fHopper"}, "name", "letters, spaces and punctuation"),
        ({"email": "grace\n@example.com"}, "email", "like name@example.com"),
        ({"email": "grace@example.com\nBcc: x@example.org"}, "email", "like name@example.com"),
    ],
)
def test_bad_input_is_refused_with_a_message_on_the_field(app, client, make_user, fields,
                                                         field, message):  # fmt: skip
    make_user(email="ada@example.com")
    fields = dict(fields)  # shared between the backends' runs
    email = fields.pop("email", NEW)
    resp = register(client, email=email, **fields)
    assert resp.status_code == 400
    page = text(resp)
    assert message in page
    assert f'id="{field}-error"' in page and 'aria-invalid="true"' in page
    assert 'role="alert"' in page
    assert user_row(app, NEW) is None and attempts(app) == [] and not outbox(app)
    # The same mistake with a taken address gets the same page (no enumeration).
    again = register(client, email="ada@example.com" if email == NEW else email, **fields)
    assert again.status_code == 400 and message in text(again)


def test_values_are_kept_but_passwords_are_not(client):
    resp = register(client, password="password12345")
    fields = form_fields(resp, "name")
    assert fields["name"] == "Grace Hopper" and fields["email"] == NEW
    assert fields.get("password", "") == "" and "password12345" not in text(resp)


def test_missing_csrf_token_is_refused(app, client):
    resp = client.post("/register", data={"name": "G", "email": NEW, "password": STRONG,
                                          "password_confirm": STRONG})  # fmt: skip
    assert resp.status_code == 400 and "expired" in text(resp)
    assert user_row(app, NEW) is None


# -- the verification link ----------------------------------------------------------------


def test_reused_link_is_refused(app, client):
    register(client)
    link = verify_link(app)
    assert confirm(client, link).status_code == 200
    again = client.get(link)
    assert again.status_code == 400
    assert 'href="/signin"' in text(again)


@pytest.mark.parametrize("mangle", [lambda t: t[:-3] + "abc", lambda t: t[:20], lambda t: "x" * 60])
def test_tampered_link_is_refused(app, client, mangle):
    register(client)
    token = verify_link(app).rsplit("/", 1)[1]
    resp = client.get(f"/verify/{mangle(token)}")
    assert resp.status_code == 400 and "not valid" in text(resp)
    assert user_row(app, NEW) is None
    assert events(app, "email.verify_failed")[-1][2]["reason"] == "InvalidLink"


def test_expired_link_is_refused(app, client):
    from idp.account import links
    from idp.extensions import db
    from idp.models import RegistrationAttempt

    register(client)
    with app.test_request_context():
        attempt = db.session.execute(db.select(RegistrationAttempt)).scalar_one()
        token = links.issue("verify_email", attempt, 86400, now=int(time.time()) - 86401)
    resp = client.get(f"/verify/{token}")
    assert resp.status_code == 400 and "expired" in text(resp)
    assert user_row(app, NEW) is None


def test_link_of_an_account_whose_address_changed_is_refused(app, client, make_user):
    """A help-desk reset makes an account prove its address again; the link dies when
    the address changes."""
    from idp.account import links
    from idp.extensions import db
    from idp.models import User

    uid, _ = make_user(email=NEW)
    with app.test_request_context():
        user = db.session.get(User, uid)
        user.email_verified = False
        token = links.issue("verify_email", user, 3600)
        user.email = "changed@example.com"
        db.session.commit()
    resp = client.get(f"/verify/{token}")
    assert resp.status_code == 400 and user_row(app, "changed@example.com")[1] is False


def test_link_lifetime_is_24_hours(app, client):
    register(client)
    token = verify_link(app).rsplit("/", 1)[1]
    expires = int(token.split(".")[0])
    assert abs(expires - (time.time() + 86400)) < 60


# -- limits and the switch -------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"registration": {"per_ip_per_hour": 2}}])
def test_per_ip_limit(app, client):
    assert register(client, email="a1@example.com").status_code == 303
    assert register(client, email="a2@example.com").status_code == 303
    resp = register(client, email="a3@example.com")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert "Too many attempts" in text(resp)
    assert attempts(app, "a3@example.com") == []


@pytest.mark.parametrize("overrides", [{"registration": {"per_ip_per_hour": 1}}])
def test_rejected_forms_are_limited_too(app, client):
    for _ in range(3):
        assert register(client, password="password12345").status_code == 400
    resp = register(client, password="password12345")
    assert resp.status_code == 429 and "Too many attempts" in text(resp)
    assert events(app, "user.register_limited")[-1][2]["limit"] == "register.form.ip"


@pytest.mark.parametrize("overrides", [{"registration": {"per_email_per_hour": 1}}])
def test_per_email_limit_is_the_same_for_taken_and_free_addresses(app, client, make_user):
    make_user(email="ada@example.com")
    for email in (NEW, "ada@example.com"):
        assert register(client, email=email).status_code == 303
        assert register(client, email=email).status_code == 429
    assert len(outbox(app, "account.register_existing")) == 1


def test_store_down_fails_closed(settings):
    from flask_migrate import upgrade

    from idp.app import create_app
    from idp.extensions import db
    from idp.store import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.2)
    app = create_app(settings, store=store, warn=False)
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
    client = app.test_client()
    try:
        page = client.get("/register")
        data = form_fields(page, "csrf_token")
        data.update(name="G H", email=NEW, password=STRONG, password_confirm=STRONG)
        resp = client.post("/register", data=data)
        assert resp.status_code == 503
        assert user_row(app, NEW) is None and attempts(app) == []
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        store.close()


@pytest.mark.parametrize("overrides", [{"registration": {"enabled": False}}])
def test_registration_can_be_switched_off(app, client):
    assert client.get("/register").status_code == 404
    assert "Registration is closed" in text(client.get("/register"))
    assert client.post("/register", data={"email": NEW}).status_code == 404
    assert "/register" not in text(client.get("/signin"))
    assert "Forgot your password?" in text(client.get("/signin"))


# -- from an application, to the MFA set-up prompt ------------------------------------------


@pytest.mark.parametrize("overrides", [{"mfa": {"required": True, "enforce_from": ""}}])
def test_registration_from_an_application_returns_to_it_and_asks_for_mfa(app, make_client):
    client_id, secret = make_client(first_party=True)
    rp = browsers(app, client_id, secret, CB)()
    signin_page = rp.start()
    while 300 <= signin_page.status < 400:
        signin_page = rp.follow(signin_page)
    assert path_of(signin_page) == "/signin"
    reg = get(rp, re.search(r'href="(/register\?txn=[^"]+)"', signin_page.text).group(1))
    assert 'name="txn"' in reg.text
    resp = submit(rp, reg, {"name": "Grace Hopper", "email": NEW, "password": STRONG,
                            "password_confirm": STRONG})  # fmt: skip
    assert resp.status == 303 and "txn=" in resp.location
    page = get(rp, verify_link(app))
    assert "Confirm your email address" in page.text
    # Confirming in the browser that started the sign-in takes the application's
    # sign-in on: a brand-new user after the enforcement date must set up a factor now.
    resp = submit(rp, page, {"password": STRONG})
    page = walk(rp, resp, email=NEW, password=STRONG)
    assert path_of(page) == "/mfa/setup", page.url
    assert "Remind me later" not in page.text


@pytest.mark.parametrize("overrides", [{"mfa": {"required": True, "enforce_from": "2999-01-01"}}])
def test_before_the_enforcement_date_a_new_user_may_postpone(app, make_client):
    client_id, secret = make_client(first_party=True)
    rp = browsers(app, client_id, secret, CB)()
    reg = get(rp, "/register")
    submit(rp, reg, {"name": "Grace Hopper", "email": NEW, "password": STRONG,
                     "password_confirm": STRONG})  # fmt: skip
    submit(rp, get(rp, verify_link(app)), {"password": STRONG})
    page = walk(rp, rp.start(), email=NEW, password=STRONG)
    assert path_of(page) == "/mfa/setup"
    assert "Remind me later" in page.text


def test_cli_users_still_sign_in(app, client, make_user):
    make_user(email="ada@example.com")
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
