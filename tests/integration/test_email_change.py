"""Email change: recent re-authentication, a link to the NEW address (single use, 24 h,
dead if the address changed meanwhile), a notice to the old one, no enumeration of
taken addresses, and no 500 when another account takes the address first."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from tests.conftest import PASSWORD
from tests.integration.account_helpers import (
    events,
    form_fields,
    link_in,
    outbox,
    post,
    signin,
    text,
    user_row,
)

EMAIL = "ada@example.com"
NEW = "ada.new@example.org"


@pytest.fixture
def ada(app, make_user):
    uid, _ = make_user(email=EMAIL)
    return uid


@pytest.fixture
def signed_in(app, client, ada):
    assert signin(client, EMAIL, PASSWORD).status_code == 302
    return client


def request_change(client, address=NEW):
    return post(client, "/account/email", {"email": address})


def confirm_link(app, to=NEW) -> str:
    mails = [m for m in outbox(app, "account.email_change_verify") if m["to"] == to]
    assert mails, outbox(app)
    return link_in(mails[-1], "/account/email/confirm/")


def confirm(client, link: str, password: str | None = None):
    """Open the link's page (a GET changes nothing), then confirm it with a POST (the
    password is asked when the browser is not signed in to the account)."""
    page = client.get(link)
    if page.status_code != 200:
        return page
    fields = form_fields(page, "csrf_token")
    if password is not None:
        fields["password"] = password
    return client.post(link, data=fields)


def test_account_page_links_to_the_changes(signed_in):
    page = text(signed_in.get("/account/security"))
    assert 'href="/account/password"' in page and 'href="/account/email"' in page


def test_change_is_confirmed_from_the_new_inbox(app, signed_in, ada):
    resp = request_change(signed_in)
    assert resp.status_code == 200 and "Check your new email" in text(resp)
    assert user_row(app, EMAIL) is not None  # nothing changed yet
    [mail] = outbox(app, "account.email_change_verify")
    assert mail["to"] == NEW and "Confirm your new email" in mail["subject"]
    assert events(app, "email.change_requested")[-1][:2] == ("success", ada)

    other_browser = app.test_client()  # the link works wherever the inbox is read
    page = other_browser.get(confirm_link(app))
    assert page.status_code == 200 and 'name="password"' in text(page)
    assert user_row(app, EMAIL) is not None  # opening the link changed nothing
    done = confirm(other_browser, confirm_link(app), PASSWORD)
    assert done.status_code == 200 and NEW in text(done)
    assert user_row(app, EMAIL) is None
    uid, verified, _hash, _name = user_row(app, NEW)
    assert uid == ada and verified is True
    assert events(app, "email.changed")[-1][1] == ada
    [notice] = outbox(app, "account.email_changed")
    assert notice["to"] == EMAIL and NEW in notice["text"]
    assert "changed" in notice["subject"]
    # Sign-in now uses the new address.
    fresh = app.test_client()
    assert signin(fresh, NEW, PASSWORD).status_code == 302
    assert signin(app.test_client(), EMAIL, PASSWORD).status_code == 200


def test_a_taken_address_gets_the_same_answer_and_no_link(app, signed_in, make_user):
    make_user(email="grace@example.com", name="Grace")
    free = request_change(signed_in, "free@example.com")
    taken = request_change(signed_in, "grace@example.com")
    assert free.status_code == taken.status_code == 200
    assert text(free) == text(taken)
    assert not [
        m for m in outbox(app, "account.email_change_verify") if m["to"] == "grace@example.com"
    ]
    [notice] = outbox(app, "account.email_change_taken")
    assert notice["to"] == "grace@example.com" and "/account/email/confirm/" not in notice["text"]
    assert events(app, "email.change_requested")[-1][0] == "failure"
    assert user_row(app, EMAIL) is not None


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("not-an-address", "like name@example.com"),
        ("", "Enter your email address"),
        ("a" * 250 + "@example.com", "at most 254 characters"),
        ("a@b", "like name@example.com"),
        ("ada@@example.com", "like name@example.com"),
        (" ADA@example.com ", "already your email"),
    ],
)
def test_bad_addresses_are_refused(app, signed_in, address, message):
    resp = request_change(signed_in, address)
    assert resp.status_code == 400 and message in text(resp)
    assert not outbox(app)


def test_reused_link_is_refused(app, signed_in):
    request_change(signed_in)
    link = confirm_link(app)
    assert 'name="password"' not in text(signed_in.get(link))  # signed in: a button only
    assert confirm(signed_in, link).status_code == 200
    again = signed_in.get(link)
    assert again.status_code == 400


@pytest.mark.parametrize("mangle", [lambda t: t[:-2] + "zz", lambda t: t.replace(".", "", 1)])
def test_tampered_link_is_refused(app, signed_in, mangle):
    request_change(signed_in)
    token = confirm_link(app).rsplit("/", 1)[1]
    resp = signed_in.get(f"/account/email/confirm/{mangle(token)}")
    assert resp.status_code == 400 and user_row(app, EMAIL) is not None


def test_expired_link_is_refused(app, ada):
    from idp.account import links
    from idp.extensions import db
    from idp.models import User

    with app.test_request_context():
        user = db.session.get(User, ada)
        token = links.issue("email_change", user, 86400, now=int(time.time()) - 86401,
                            new_email=NEW)  # fmt: skip
    resp = app.test_client().get(f"/account/email/confirm/{token}")
    assert resp.status_code == 400 and "expired" in text(resp)
    assert user_row(app, EMAIL) is not None


def test_link_lifetime_is_24_hours(app, signed_in):
    request_change(signed_in)
    expires = int(confirm_link(app).rsplit("/", 1)[1].split(".")[0])
    assert abs(expires - (time.time() + 86400)) < 60


def test_an_older_link_dies_when_the_address_changes(app, signed_in):
    request_change(signed_in, "first@example.com")
    request_change(signed_in, "second@example.com")
    first = confirm_link(app, "first@example.com")
    assert confirm(signed_in, confirm_link(app, "second@example.com")).status_code == 200
    resp = signed_in.get(first)
    assert resp.status_code == 400 and "not valid" in text(resp)
    assert user_row(app, "second@example.com") is not None
    assert user_row(app, "first@example.com") is None


def test_address_taken_before_the_link_is_opened(app, signed_in, make_user):
    request_change(signed_in)
    make_user(email=NEW, name="Someone else")
    resp = confirm(signed_in, confirm_link(app))
    assert resp.status_code == 409 and "belongs to another account" in text(resp)
    assert user_row(app, EMAIL) is not None and user_row(app, NEW)[3] == "Someone else"


def test_the_unique_constraint_wins_a_race_without_a_500(app, signed_in, make_user, monkeypatch):
    """Another account takes the address between our check and our update."""
    from idp.account import email_change

    request_change(signed_in)
    make_user(email=NEW, name="Someone else")
    monkeypatch.setattr(email_change, "_address_in_use", lambda address, user_id: False)
    resp = confirm(signed_in, confirm_link(app))
    assert resp.status_code == 409
    assert user_row(app, EMAIL) is not None
    assert events(app, "email.change_failed")[-1][2]["reason"] == "address in use"
    assert not outbox(app, "account.email_changed")


def test_requests_are_limited(app, signed_in):
    for i in range(5):
        assert request_change(signed_in, f"n{i}@example.com").status_code == 200
    resp = request_change(signed_in, "n5@example.com")
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert len(outbox(app, "account.email_change_verify")) == 5


def test_needs_a_signed_in_user(app, client, ada):
    resp = client.get("/account/email")
    assert resp.status_code == 302 and "/signin" in resp.location


def test_needs_a_recent_password(app, signed_in, monkeypatch):
    from idp.mfa import pages as views

    later = time.time() + 3600  # past [mfa] reauth_window (the session is still alive)
    monkeypatch.setattr(views, "time", SimpleNamespace(time=lambda: later))
    resp = signed_in.get("/account/email")
    assert resp.status_code == 302 and "reauth=1" in resp.location
    resp = signed_in.post("/account/email", data={"email": NEW})
    assert resp.status_code == 302 and not outbox(app)


def test_with_a_factor_it_needs_a_recent_factor(app, signed_in):
    from tests.integration.account_helpers import add_totp

    add_totp(app, EMAIL)
    resp = signed_in.get("/account/email")
    assert resp.status_code == 302 and "/mfa/challenge" in resp.location


def test_missing_csrf_token_is_refused(app, signed_in):
    resp = signed_in.post("/account/email", data={"email": NEW})
    assert resp.status_code == 400 and not outbox(app)
