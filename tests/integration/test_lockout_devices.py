"""The lockout is no denial of service: device cookies (OWASP).

Anyone who knows an address could keep its owner out for good by typing ten wrong
passwords every fifteen minutes. The lock still stops the guessing, but only for
browsers that never signed in to the account: the owner's own browser, which holds a
signed device cookie from an earlier sign-in, keeps signing in. The owner is emailed
and every step is audited.
"""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import events, outbox, signin

EMAIL = "ada@example.com"
LIMIT = 3


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(
        tmp_path,
        keys_dir,
        login={"max_consecutive_failures": LIMIT, "failures_per_account_ip_per_minute": 100,
               "failures_per_ip_per_minute": 100},
    )  # fmt: skip


def attacker(app, n: int = LIMIT):
    """A browser that never signed in here, typing *n* wrong passwords."""
    client = app.test_client()
    for _ in range(n):
        assert signin(client, EMAIL, "a wrong guess").status_code == 200
    return client


def owner_browser(app):
    """The owner's usual browser: it signed in before (and got its device cookie)."""
    client = app.test_client()
    assert signin(client, EMAIL, PASSWORD).status_code == 302
    assert client.get_cookie("idp_device") is not None
    client.post("/logout", data={})  # signed out again; the device cookie stays
    return client


def test_a_stranger_cannot_lock_the_owner_out(app, make_user):
    make_user()
    owner = owner_browser(app)
    attacker(app)
    assert events(app, "login.lockout")
    # The lock holds for unknown browsers, even with the right password...
    assert signin(app.test_client(), EMAIL, PASSWORD).status_code == 200
    assert events(app, "login.failure")[-1][2]["reason"] == "locked"
    # ...but not for the owner's browser.
    assert signin(owner, EMAIL, PASSWORD).status_code == 302
    assert events(app, "login.lock_bypassed")
    # The lock stays for strangers after the owner signed in.
    assert signin(app.test_client(), EMAIL, PASSWORD).status_code == 200


def test_the_owner_is_emailed_when_strangers_lock_the_account(app, make_user):
    make_user()
    attacker(app)
    [mail] = outbox(app, "notify.login_locked")
    assert mail["to"] == EMAIL
    body = " ".join(mail["text"].split())
    assert "change your password" in body
    assert "Browsers you have signed in with before can still sign in" in body


def test_a_trusted_browsers_own_failures_lock_only_that_browser(app, make_user):
    from idp.extensions import db
    from idp.models import User

    uid, _ = make_user()
    owner = owner_browser(app)
    second = owner_browser(app)
    for _ in range(LIMIT):
        assert signin(owner, EMAIL, "a wrong guess").status_code == 200
    assert events(app, "login.device_lockout")
    assert signin(owner, EMAIL, PASSWORD).status_code == 200  # this browser is locked
    assert events(app, "login.failure")[-1][2]["reason"] == "device_locked"
    # The account is not: another trusted browser and unknown browsers still sign in.
    assert signin(second, EMAIL, PASSWORD).status_code == 302
    assert signin(app.test_client(), EMAIL, PASSWORD).status_code == 302
    with app.app_context():
        user = db.session.get(User, uid)
        assert user.locked_until is None and user.failed_logins == 0


@pytest.mark.parametrize(
    "mangle",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature
        lambda v: "9999" + v[v.index(".") :],  # another user id
        lambda v: v.split(".")[0] + ".x." + v.split(".", 2)[2],  # another nonce
        lambda v: "garbage",
    ],
)
def test_a_forged_device_cookie_is_not_trusted(app, make_user, mangle):
    make_user()
    owner = owner_browser(app)
    value = owner.get_cookie("idp_device").value
    forged = app.test_client()
    forged.set_cookie("idp_device", mangle(value))
    attacker(app)
    assert signin(forged, EMAIL, PASSWORD).status_code == 200


def test_a_device_cookie_of_one_account_does_not_help_another(app, make_user):
    make_user()
    make_user(email="grace@example.com")
    client = app.test_client()
    assert signin(client, "grace@example.com", PASSWORD).status_code == 302
    attacker(app)
    assert signin(client, EMAIL, PASSWORD).status_code == 200


def test_a_password_change_untrusts_every_browser(app, make_user):
    from idp.extensions import db
    from idp.models import User
    from idp.models.base import utcnow

    uid, _ = make_user()
    owner = owner_browser(app)
    with app.app_context():
        db.session.get(User, uid).password_changed_at = utcnow()
        db.session.commit()
    attacker(app)
    assert signin(owner, EMAIL, PASSWORD).status_code == 200


def test_the_administrative_lock_holds_for_trusted_browsers_too(app, make_user):
    from datetime import timedelta

    from idp.extensions import db
    from idp.models import User
    from idp.models.base import utcnow

    uid, _ = make_user()
    owner = owner_browser(app)
    with app.app_context():
        db.session.get(User, uid).admin_locked_until = utcnow() + timedelta(hours=1)
        db.session.commit()
    assert signin(owner, EMAIL, PASSWORD).status_code == 200
    assert events(app, "login.failure")[-1][2]["reason"] == "admin_locked"


def test_device_cookie_attributes(app, make_user):
    make_user()
    client = app.test_client()
    resp = signin(client, EMAIL, PASSWORD)
    header = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith("idp_device="))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header
    assert "Max-Age=15552000" in header  # 180 days
