"""New User Registration: the form, no enumeration, the verification link (signed, single
use, 24 h), unverified accounts kept out of sign-in, rate limits, the on/off switch, and
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
    return post(client, "/register", data, form_path=extra.pop("form_path", "/register"))


def verify_link(app, email=NEW) -> str:
    mails = [m for m in outbox(app, "account.verify_email") if m["to"] == email]
    assert mails, outbox(app)
    return link_in(mails[-1], "/verify/")


# -- the form --------------------------------------------------------------------------


def test_sign_in_page_offers_registration_and_password_reset(client):
    page = text(client.get("/signin"))
    assert 'href="/register"' in page and "Create an account" in page
    assert 'href="/forgot"' in page and "Forgot your password?" in page


def test_form_has_labels_for_every_field(client):
    page = text(client.get("/register"))
    for field in ("name", "email", "password", "password_confirm"):
        assert re.search(rf'<label for="{field}">', page), field
        assert f'id="{field}" name="{field}"' in page
    assert 'autocomplete="new-password"' in page
    assert "<script" not in page  # no inline script (CSP)


def test_register_then_verify_then_sign_in(app, client):
    resp = register(client)
    assert resp.status_code == 303 and resp.location.endswith("/register/sent")
    page = client.get(resp.location)
    assert "Check your email" in text(page)
    uid, verified, pw_hash, name = user_row(app, NEW)
    assert verified is False and name == "Grace Hopper"
    assert pw_hash.startswith("$argon2id$") and STRONG not in pw_hash
    assert [(o, u) for o, u, _ in events(app, "user.registered")] == [("success", uid)]
    [mail] = outbox(app, "account.verify_email")
    assert mail["to"] == NEW and "Confirm your email" in mail["subject"]
    assert "24 hours" in mail["text"]

    # Not yet verified: the right password gets "verify first" and a fresh link.
    before = len(outbox(app, "account.verify_email"))
    denied = signin(client, NEW, STRONG)
    assert denied.status_code == 403
    assert "Verify your email address first" in text(denied)
    assert client.get_cookie("idp_session") is None
    assert len(outbox(app, "account.verify_email")) == before + 1
    assert events(app, "login.failure")[-1][2]["reason"] == "email_unverified"

    done = client.get(verify_link(app))
    assert done.status_code == 200
    assert "Your email is verified. Sign in to continue." in text(done)
    assert 'href="/signin"' in text(done)
    assert user_row(app, NEW)[1] is True
    assert events(app, "email.verified")[-1][1] == uid

    ok = signin(client, NEW, STRONG)
    assert ok.status_code == 302 and client.get_cookie("idp_session") is not None


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


def test_second_registration_of_an_unverified_address_only_resends(app, client):
    register(client, password=STRONG)
    first = user_row(app, NEW)
    again = register(client, password="an entirely different passphrase", name="Mallory")
    assert again.status_code == 303
    assert user_row(app, NEW) == first  # neither the password nor the name was replaced
    assert len([m for m in outbox(app, "account.verify_email") if m["to"] == NEW]) == 2
    assert events(app, "user.register_repeat")


def test_concurrent_registration_of_one_address_is_not_an_error(app, client, monkeypatch):
    """The unique constraint catches a registration that raced ours: same answer, no 500."""
    from idp.account import registration

    register(client)  # the "other" request, already committed
    real = registration._existing
    first_lookup_misses = iter([None])
    monkeypatch.setattr(
        registration, "_existing", lambda email: next(first_lookup_misses, real(email))
    )
    resp = register(client, name="Second")
    assert resp.status_code == 303 and resp.location.endswith("/register/sent")
    assert user_row(app, NEW)[3] == "Grace Hopper"
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
        ({"email": ""}, "email", "Enter your email"),
        ({"name": "   "}, "name", "Enter your full name"),
        ({"name": "n" * 201}, "name", "at most 200"),
        ({"name": "Grace\x00Hopper"}, "name", "letters, spaces and punctuation"),
        ({"email": "grace\x00@example.com"}, "email", "like name@example.com"),
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
    assert user_row(app, NEW) is None and not outbox(app)
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
    assert client.get(link).status_code == 200
    again = client.get(link)
    assert again.status_code == 400 and "already used" in text(again)
    assert 'href="/signin"' in text(again)


@pytest.mark.parametrize("mangle", [lambda t: t[:-3] + "abc", lambda t: t[:20], lambda t: "x" * 60])
def test_tampered_link_is_refused(app, client, mangle):
    register(client)
    token = verify_link(app).rsplit("/", 1)[1]
    resp = client.get(f"/verify/{mangle(token)}")
    assert resp.status_code == 400 and "not valid" in text(resp)
    assert user_row(app, NEW)[1] is False
    assert events(app, "email.verify_failed")[-1][2]["reason"] == "InvalidLink"


def test_expired_link_is_refused(app, client):
    from idp.account import links
    from idp.extensions import db
    from idp.models import User

    register(client)
    with app.test_request_context():
        user = db.session.execute(db.select(User).filter_by(email=NEW)).scalar_one()
        token = links.issue("verify_email", user, 86400, now=int(time.time()) - 86401)
    resp = client.get(f"/verify/{token}")
    assert resp.status_code == 400 and "expired" in text(resp)
    assert user_row(app, NEW)[1] is False


def test_link_issued_for_a_previous_address_is_refused(app, client):
    from idp.extensions import db
    from idp.models import User

    register(client)
    link = verify_link(app)
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=NEW)).scalar_one()
        user.email = "changed@example.com"
        db.session.commit()
    resp = client.get(link)
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
    assert user_row(app, "a3@example.com") is None


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
        assert user_row(app, NEW) is None
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
    verified = get(rp, verify_link(app))
    assert "Your email is verified" in verified.text
    back = re.search(r'href="(/signin\?txn=[^"]+)"', verified.text)
    assert back, verified.text
    page = walk(rp, get(rp, back.group(1).replace("&amp;", "&")), email=NEW, password=STRONG)
    # A brand-new user after the enforcement date must set up a factor now.
    assert path_of(page) == "/mfa/setup", page.url
    assert "Remind me later" not in page.text


@pytest.mark.parametrize("overrides", [{"mfa": {"required": True, "enforce_from": "2999-01-01"}}])
def test_before_the_enforcement_date_a_new_user_may_postpone(app, make_client):
    client_id, secret = make_client(first_party=True)
    rp = browsers(app, client_id, secret, CB)()
    reg = get(rp, "/register")
    submit(rp, reg, {"name": "Grace Hopper", "email": NEW, "password": STRONG,
                     "password_confirm": STRONG})  # fmt: skip
    get(rp, verify_link(app))
    page = walk(rp, rp.start(), email=NEW, password=STRONG)
    assert path_of(page) == "/mfa/setup"
    assert "Remind me later" in page.text


def test_cli_users_still_sign_in(app, client, make_user):
    make_user(email="ada@example.com")
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
