"""The pre-account hijack, and the races around it.

An attacker registers the victim's address with his own password, hoping that when the
real owner registers and clicks her link, the account keeps his password (he then binds
a factor and she can never reset). Every registration is an attempt of its own, its
link confirms only that attempt and needs that attempt's password, and the confirmed
attempt deletes every other one: the attacker's password never reaches her account, in
any order of registrations and confirmations, sequential or concurrent.
"""

from __future__ import annotations

import threading

import pytest

from tests.conftest import make_settings
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

VICTIM = "victim@example.com"
OWNER_PW = STRONG
ATTACKER_PW = "mallory owns this passphrase now"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, login={"failures_per_account_ip_per_minute": 50})


def register(client, password: str, name: str):
    data = {"name": name, "email": VICTIM, "password": password, "password_confirm": password}
    resp = sent(post(client, "/register", data))
    assert resp.status_code == 303, text(resp)[:300]


def links(app) -> list[str]:
    mails = [m for m in outbox(app, "account.verify_email") if m["to"] == VICTIM]
    return [link_in(m, "/verify/") for m in mails]


def confirm(client, link: str, password: str):
    page = client.get(link)
    if page.status_code != 200:
        return page
    data = form_fields(page, "csrf_token", "password")
    data["password"] = password
    return client.post(link, data=data)


def signs_in(app, password: str) -> bool:
    return signin(app.test_client(), VICTIM, password).status_code == 302


@pytest.mark.parametrize("attacker_first", [True, False], ids=["attacker-first", "owner-first"])
def test_the_owner_password_wins_once_she_proves_the_mailbox(app, attacker_first):
    attacker, owner = app.test_client(), app.test_client()
    order = [(attacker, ATTACKER_PW, "Mallory"), (owner, OWNER_PW, "Victoria")]
    for client, password, name in order if attacker_first else order[::-1]:
        register(client, password, name)
    attacker_link, owner_link = links(app) if attacker_first else links(app)[::-1]

    done = confirm(owner, owner_link, OWNER_PW)
    assert done.status_code == 200, text(done)[:300]
    _, verified, _, name = user_row(app, VICTIM)
    assert verified is True and name == "Victoria"
    assert signs_in(app, OWNER_PW)
    assert not signs_in(app, ATTACKER_PW)
    # The attacker's attempt did not survive: its link confirms nothing any more.
    assert attacker.get(attacker_link).status_code == 400
    assert confirm(attacker, attacker_link, ATTACKER_PW).status_code == 400
    assert signs_in(app, OWNER_PW) and not signs_in(app, ATTACKER_PW)


def test_the_owner_cannot_be_tricked_into_confirming_the_attackers_attempt(app):
    """The attacker's link lands in the victim's mailbox; opening it and even typing her
    own password creates nothing, and the attacker (who has no link) creates nothing."""
    attacker, victim = app.test_client(), app.test_client()
    register(attacker, ATTACKER_PW, "Mallory")
    [link] = links(app)
    page = victim.get(link)
    assert page.status_code == 200 and "If you did not create an account" in text(page)
    assert confirm(victim, link, OWNER_PW).status_code == 400
    assert user_row(app, VICTIM) is None
    assert not signs_in(app, ATTACKER_PW)


def test_a_pending_account_from_before_is_taken_over_not_kept(app, make_user):
    """Accounts registered before registrations became attempts (unverified, never signed
    in) are replaced by the owner's confirmed attempt: new subject, her name and
    password, nothing of the first registrant left."""
    from idp.extensions import db
    from idp.models import Consent, User

    uid, old_sub = make_user(email=VICTIM, password=ATTACKER_PW, name="Mallory")
    with app.app_context():
        user = db.session.get(User, uid)
        user.email_verified = False
        db.session.add(Consent(user_id=uid, client_id="some-client", scope="openid"))
        db.session.commit()
    assert not signs_in(app, ATTACKER_PW)  # unverified: cannot sign in
    owner = app.test_client()
    register(owner, OWNER_PW, "Victoria")
    assert confirm(owner, links(app)[-1], OWNER_PW).status_code == 200
    row_id, verified, _, name = user_row(app, VICTIM)
    assert row_id == uid and verified is True and name == "Victoria"
    with app.app_context():
        user = db.session.get(User, uid)
        assert user.sub != old_sub
        assert db.session.execute(db.select(Consent).filter_by(user_id=uid)).first() is None
    assert signs_in(app, OWNER_PW) and not signs_in(app, ATTACKER_PW)
    assert events(app, "user.pending_replaced")


def test_registering_a_confirmed_address_creates_no_attempt(app):
    owner = app.test_client()
    register(owner, OWNER_PW, "Victoria")
    confirm(owner, links(app)[0], OWNER_PW)
    attacker = app.test_client()
    register(attacker, ATTACKER_PW, "Mallory")
    assert len(links(app)) == 1  # no second verification link
    [notice] = outbox(app, "account.register_existing")
    assert notice["to"] == VICTIM
    assert not signs_in(app, ATTACKER_PW)


@pytest.mark.postgres
def test_concurrent_confirmations_make_one_account(app, backend):
    """Two of the owner's attempts (two tabs), confirmed at the same instant, and the
    same link submitted twice at once: one account, no error page, no 500."""
    if backend == "sqlite":
        pytest.skip("SQLite runs one writing transaction at a time")
    first, second = app.test_client(), app.test_client()
    register(first, OWNER_PW, "Victoria")
    register(second, "another good passphrase here", "Victoria B")
    link_a, link_b = links(app)
    clients = [app.test_client() for _ in range(4)]
    jobs = [(clients[0], link_a, OWNER_PW), (clients[1], link_b, "another good passphrase here"),
            (clients[2], link_a, OWNER_PW), (clients[3], link_b, "another good passphrase here")]  # fmt: skip
    forms = []
    for client, link, password in jobs:
        page = client.get(link)
        data = form_fields(page, "csrf_token", "password")
        data["password"] = password
        forms.append((client, link, data))
    barrier = threading.Barrier(len(forms))
    statuses: list[int] = []

    def go(client, link, data):
        barrier.wait()
        statuses.append(client.post(link, data=data).status_code)

    threads = [threading.Thread(target=go, args=f) for f in forms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 500 not in statuses and statuses.count(200) == 1, statuses
    assert set(statuses) <= {200, 400, 409}
    from idp.extensions import db
    from idp.models import RegistrationAttempt, User

    with app.app_context():
        assert db.session.execute(db.select(db.func.count(User.id))).scalar_one() == 1
        assert db.session.execute(db.select(RegistrationAttempt)).first() is None


# -- email change ----------------------------------------------------------------------------


def test_email_change_link_needs_a_post_and_the_account_owner(app, make_user):
    """The confirmation link of an email change shows a page; the change happens on a
    POST from a browser signed in to the account, or with the account's password."""
    from idp.account import links as link_module
    from idp.extensions import db
    from idp.models import User
    from tests.conftest import PASSWORD

    uid, _ = make_user(email="ada@example.com")
    with app.test_request_context():
        user = db.session.get(User, uid)
        token = link_module.issue("email_change", user, 3600, new_email="ada@new.example")
    url = f"/account/email/confirm/{token}"
    scanner = app.test_client()
    for _ in range(2):
        assert scanner.get(url).status_code == 200
        assert scanner.head(url).status_code == 200
    assert user_row(app, "ada@example.com") is not None
    # Another browser, the wrong password: nothing changes.
    stranger = app.test_client()
    data = form_fields(stranger.get(url), "csrf_token", "password")
    resp = stranger.post(url, data={**data, "password": "not the password"})
    assert resp.status_code == 400 and user_row(app, "ada@new.example") is None
    # With the account's password: changed.
    resp = stranger.post(url, data={**data, "password": PASSWORD})
    assert resp.status_code == 200, text(resp)[:300]
    assert user_row(app, "ada@new.example") is not None
