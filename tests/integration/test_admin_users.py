"""``/admin/users``: search, the user's page (status, factors without secrets,
sessions, recent events) and the help-desk actions, each audited with the agent's id."""

from __future__ import annotations

import json
import os
import re
import sys
import types
from datetime import timedelta

import pyotp
import pytest

from idp.extensions import db
from idp.models import Factor, RefreshToken, User
from idp.models.base import utcnow
from idp.wording import long_date
from tests.integration import test_admin_access as access
from tests.integration.test_admin_access import audit_events, signed_in

# Fixtures shared with the other admin modules.
people = access.people
settings = access.settings


def outbox(app) -> list[dict]:
    path = app.extensions["idp"].settings.delivery.outbox
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture
def uma(app, people):
    """The user with an authenticator app, a refresh token and two browser sessions."""
    from idp.services import services

    uid = people["user"]
    with app.app_context():
        secret = pyotp.random_base32(32)
        enc = services().secrets.encrypt(secret, context=f"totp:{uid}")
        db.session.add(Factor(user_id=uid, type="totp", label="Uma's phone", status="active",
                              secret_enc=enc, activated_at=utcnow(),
                              last_used_at=utcnow()))  # fmt: skip
        db.session.add(RefreshToken(token_hash="a" * 64, family_id="fam1", client_id="rp",
                                    user_id=uid, expires_at=utcnow() + timedelta(days=1)))  # fmt: skip
        db.session.commit()
        svc = services()
        svc.sessions.establish(uid, "pwd")
        svc.sessions.establish(uid, "pwd")
        return {"id": uid, "secret": secret, "enc": enc}


def _user(app, uid: int) -> User:
    with app.app_context():
        u = db.session.get(User, uid)
        db.session.expunge(u)
        return u


def _sessions(app, uid: int) -> int:
    from idp.services import services

    with app.app_context():
        return len(services().sessions.sessions_of(uid))


def _refresh_revoked(app) -> bool:
    with app.app_context():
        return db.session.execute(db.select(RefreshToken)).scalar_one().revoked_at is not None


def act(b, uid: int, action: str, **fields):
    """Press *action* and confirm it (the page's dialog sends confirm=yes; the actions
    that need no confirmation ignore it). tests/integration/test_confirmations.py covers
    the same posts without it."""
    return b.post(f"/admin/users/{uid}/action", {"action": action, "confirm": "yes", **fields})


def test_search_by_email_or_name(app, people):
    b = signed_in(app, people["helpdesk"])
    assert "user@example.com" in b.get("/admin/users?q=UMA").text
    assert "user@example.com" in b.get("/admin/users?q=user@").text
    page = b.get("/admin/users?q=nobody-like-this")
    assert "No user matches" in page.text
    # LIKE wildcards are searched literally.
    assert "user@example.com" not in b.get("/admin/users?q=%25").text


def test_user_page_shows_status_factors_sessions_events_but_no_secrets(app, people, uma):
    b = signed_in(app, people["helpdesk"])
    page = b.get(f"/admin/users/{uma['id']}")
    assert page.status_code == 200
    text = page.text
    assert "Uma&#39;s phone" in text and "Authenticator app" in text
    assert uma["secret"] not in text and uma["enc"] not in text
    assert text.count("Session ") == 2
    assert "Account: <strong>active</strong>" in text
    assert b.get("/admin/users/99999").status_code == 404


def test_lock_and_unlock(app, people, uma):
    b = signed_in(app, people["helpdesk"])
    assert act(b, uma["id"], "lock", hours="7").status_code == 400  # not an offered duration
    resp = act(b, uma["id"], "lock", hours="24")
    assert resp.status_code == 302
    user = _user(app, uma["id"])
    # The administrative lock, not the failed-attempt lock a password reset clears.
    assert user.admin_locked_until > utcnow() + timedelta(hours=23)
    assert user.locked_until is None
    assert _sessions(app, uma["id"]) == 0 and _refresh_revoked(app)
    assert "Locked by the help desk: locked until" in b.get(f"/admin/users/{uma['id']}").text
    act(b, uma["id"], "unlock")
    user = _user(app, uma["id"])
    assert user.admin_locked_until is None and user.locked_until is None
    actor = f"user:{people['helpdesk']}"
    assert [e.details["actor"] for e in audit_events(app, "user.locked")] == [actor]
    assert [e.details["actor"] for e in audit_events(app, "user.unlocked")] == [actor]


def test_disable_and_enable(app, people, uma):
    b = signed_in(app, people["helpdesk"])
    act(b, uma["id"], "disable")
    assert _user(app, uma["id"]).status == "disabled"
    assert _sessions(app, uma["id"]) == 0 and _refresh_revoked(app)
    act(b, uma["id"], "enable")
    assert _user(app, uma["id"]).status == "active"
    assert audit_events(app, "user.disabled")[0].details["actor"] == f"user:{people['helpdesk']}"
    assert audit_events(app, "user.enabled")[0].user_id == uma["id"]


@pytest.mark.parametrize("reason", ["", "   ", "x"])
def test_reset_mfa_needs_a_reason(app, people, uma, reason):
    b = signed_in(app, people["helpdesk"])
    resp = act(b, uma["id"], "reset_mfa", reason=reason)
    assert resp.status_code == 400
    assert "Say why" in resp.text
    with app.app_context():
        assert db.session.execute(db.select(Factor)).first() is not None
    assert audit_events(app, "mfa.reset") == []
    assert _sessions(app, uma["id"]) == 2


def test_reset_mfa_removes_factors_notifies_and_ends_sessions(app, people, uma):
    b = signed_in(app, people["helpdesk"])
    resp = act(b, uma["id"], "reset_mfa", reason="lost phone, identity checked by call")
    assert resp.status_code == 302
    with app.app_context():
        assert db.session.execute(db.select(Factor)).first() is None
    assert _sessions(app, uma["id"]) == 0 and _refresh_revoked(app)
    (event,) = audit_events(app, "mfa.reset")
    assert event.details["actor"] == f"user:{people['helpdesk']}"
    assert event.details["reason"] == "lost phone, identity checked by call"
    mail = [m for m in outbox(app) if m["to"] == "user@example.com"]
    assert mail and "reset by the help desk" in mail[-1]["subject"]
    assert "lost phone" in mail[-1]["text"]


def test_revoke_sessions_and_refresh_tokens(app, people, uma):
    b = signed_in(app, people["helpdesk"])
    resp = act(b, uma["id"], "revoke")
    assert resp.status_code == 302
    assert "Ended 2 session(s)" in b.get(resp.headers["Location"]).text
    assert _sessions(app, uma["id"]) == 0 and _refresh_revoked(app)
    (event,) = audit_events(app, "user.sessions_revoked")
    assert event.details == {"actor": f"user:{people['helpdesk']}", "sessions": 2,
                             "token_families": 1}  # fmt: skip


def test_resend_verification_calls_the_account_sender(app, people, monkeypatch):
    """The action calls ``idp.account.links.send_email_verification(user)`` and audits
    what it answered (a recording fake stands in for the account module)."""
    calls = []
    fake = types.ModuleType("idp.account.links")
    fake.send_email_verification = lambda user: calls.append(user.email) or True
    monkeypatch.setitem(sys.modules, "idp.account.links", fake)
    with app.app_context():
        db.session.get(User, people["user"]).email_verified = False
        db.session.commit()
    b = signed_in(app, people["helpdesk"])
    resp = act(b, people["user"], "resend_verification")
    assert resp.status_code == 302
    assert "Verification email sent." in b.get(resp.headers["Location"]).text
    assert calls == ["user@example.com"]
    (event,) = audit_events(app, "user.verification_resent")
    assert event.outcome == "success" and event.details["actor"] == f"user:{people['helpdesk']}"
    # An address that is already verified is not sent another link.
    with app.app_context():
        db.session.get(User, people["user"]).email_verified = True
        db.session.commit()
    again = act(b, people["user"], "resend_verification")
    assert again.status_code == 400 and "already verified" in again.text
    assert calls == ["user@example.com"]


def test_resend_verification_sends_a_real_email(app, people):
    """End to end with the account module's own sender: a link lands in the outbox."""
    with app.app_context():
        db.session.get(User, people["user"]).email_verified = False
        db.session.commit()
    b = signed_in(app, people["helpdesk"])
    resp = act(b, people["user"], "resend_verification")
    assert resp.status_code == 302
    mail = [m for m in outbox(app) if m["to"] == "user@example.com"]
    assert mail, "no verification email in the outbox"


def test_roles_only_by_admins_and_never_ones_own(app, people):
    desk = signed_in(app, people["helpdesk"])
    assert act(desk, people["user"], "role", role="admin").status_code == 403
    admin = signed_in(app, people["admin"])
    assert act(admin, people["user"], "role", role="helpdesk").status_code == 302
    assert _user(app, people["user"]).role == "helpdesk"
    own = act(admin, people["admin"], "role", role="user")
    assert own.status_code == 403 and _user(app, people["admin"]).role == "admin"
    assert "your account page" in own.text
    assert act(admin, people["user"], "role", role="root").status_code == 400
    (event,) = audit_events(app, "user.role_changed")
    assert event.details == {"actor": f"user:{people['admin']}", "role": "helpdesk",
                             "previous": "user"}  # fmt: skip
    refused = audit_events(app, "admin.action_refused")
    assert [(e.details["actor"], e.details["reason"]) for e in refused] == [
        (f"user:{people['helpdesk']}", "admin_only"),
        (f"user:{people['admin']}", "self"),
    ]


def test_unknown_action_is_refused(app, people):
    b = signed_in(app, people["helpdesk"])
    assert act(b, people["user"], "explode").status_code == 400


# -- status messages come from the server only -------------------------------------------------


def _status(html: str) -> list[str]:
    found = re.findall(r'role="status"[^>]*>(.*?)</div>', html, re.S)
    return [" ".join(re.sub(r"<[^>]+>", " ", m).split()) for m in found]


@pytest.mark.parametrize("text", ["Your account is compromised, call +1 555 0100",
                                  "<b>Urgent</b>", "Sign-in locked; sessions ended."])  # fmt: skip
def test_text_in_the_query_string_is_never_a_status_message(app, people, text):
    b = signed_in(app, people["helpdesk"])
    page = b.get(f"/admin/users/{people['user']}", query_string={"m": text})
    assert page.status_code == 200
    assert _status(page.text) == []
    assert "compromised" not in page.text and "Urgent" not in page.text
    assert "sessions ended" not in page.text


def test_the_message_of_an_action_shows_once_after_the_redirect(app, people, uma):
    b = signed_in(app, people["helpdesk"])
    resp = act(b, uma["id"], "revoke")
    assert resp.status_code == 302
    assert resp.headers["Location"] == f"/admin/users/{uma['id']}"  # nothing in the URL
    # Another browser of the same agent does not get it: it is bound to this browser.
    other = signed_in(app, people["helpdesk"])
    other.http.set_cookie("idp_browser", "another-admin-browser-0123456789")
    assert _status(other.get(resp.headers["Location"]).text) == []
    first = b.get(resp.headers["Location"])
    assert _status(first.text) == ["Ended 2 session(s) and 1 refresh-token grant(s)."]
    assert _status(b.get(resp.headers["Location"]).text) == []  # read once: not on reload


def test_flash_messages_live_in_the_store_under_a_hash_of_the_browser_id(app, people, uma):
    from idp.flash import FLASH_TTL
    from idp.security.crypto import hash_token
    from idp.services import services
    from tests.integration.test_admin_access import BROWSER_ID

    b = signed_in(app, people["helpdesk"])
    act(b, uma["id"], "revoke")
    with app.app_context():
        store = services().store
        key = f"flash:{hash_token(BROWSER_ID)}"
        assert store.get(key) is not None
        assert 0 < store.ttl(key) <= FLASH_TTL
        assert store.get(f"flash:{BROWSER_ID}") is None
    b.get(f"/admin/users/{uma['id']}")
    with app.app_context():
        assert services().store.get(key) is None


def test_a_refused_form_shows_its_error_without_a_redirect(app, people, uma):
    b = signed_in(app, people["helpdesk"])
    resp = act(b, uma["id"], "reset_mfa", reason="x")
    assert resp.status_code == 400 and 'role="alert"' in resp.text and "Say why" in resp.text
    assert _status(b.get(f"/admin/users/{uma['id']}").text) == []


# -- the two locks ------------------------------------------------------------------------------


def test_the_page_shows_the_two_locks_apart(app, people):
    uid = people["user"]
    b = signed_in(app, people["helpdesk"])
    page = b.get(f"/admin/users/{uid}").text
    assert "Failed sign-in attempts: not locked" in page
    assert "Locked by the help desk: not locked" in page
    with app.app_context():
        db.session.get(User, uid).locked_until = utcnow() + timedelta(minutes=15)
        db.session.commit()
    page = b.get(f"/admin/users/{uid}").text
    assert "Failed sign-in attempts: locked until" in page
    assert "Locked by the help desk: not locked" in page
    act(b, uid, "lock", hours="168")
    page = b.get(f"/admin/users/{uid}").text
    until = long_date(_user(app, uid).admin_locked_until, with_time=True)
    assert f"Locked by the help desk: locked until {until}" in page
    assert "Failed sign-in attempts: locked until" in page


def test_a_password_reset_does_not_lift_the_help_desk_lock(app, people, uma):
    """Lock from the help-desk page, then the whole self-service reset: /forgot, the
    emailed link, the second factor, a new password. Sign-in stays refused until the
    help desk unlocks."""
    from tests.integration.account_helpers import STRONG, form_fields, link_in, post, signin
    from tests.integration.account_helpers import outbox as mails
    from tests.integration.mfa_helpers import totp_code

    desk = signed_in(app, people["helpdesk"])
    assert act(desk, uma["id"], "lock", hours="24").status_code == 302

    browser = app.test_client()
    asked = post(browser, "/forgot", {"email": "user@example.com"})
    assert asked.status_code == 303
    asked.close()  # the email may leave once the response is sent, as a server closes it
    (mail,) = mails(app, "account.password_reset")
    link = link_in(mail, "/reset/")
    challenge = browser.get(link, follow_redirects=True)  # the one challenge page
    assert "Verify it's you" in challenge.text and 'name="password"' not in challenge.text
    token = link.rsplit("/", 1)[1]
    passed = post(browser, "/mfa/challenge", {"kind": "totp", "code": totp_code(uma["secret"])},
                  form_path=f"/mfa/challenge?reset={token}", names=("code",))  # fmt: skip
    assert passed.status_code == 302
    form = browser.get(link)
    fields = form_fields(form, "csrf_token", "password")
    fields.update(password=STRONG, password_confirm=STRONG)
    done = browser.post(link, data=fields)
    assert done.status_code == 200 and "Your new password is saved" in done.text

    refused = signin(app.test_client(), "user@example.com", STRONG)
    assert refused.status_code != 302, "the reset lifted the help desk's lock"
    assert audit_events(app, "login.failure")[-1].details["reason"] == "admin_locked"
    assert _user(app, uma["id"]).admin_locked_until > utcnow()

    assert act(desk, uma["id"], "unlock").status_code == 302
    assert signin(app.test_client(), "user@example.com", STRONG).status_code == 302


# -- what the page offers --------------------------------------------------------------------------

ALL_SHOWN = {"unlock", "disable", "revoke", "resend_verification", "lock", "reset_mfa"}


@pytest.mark.parametrize("viewer,target,shown,reason_fields", [
    ("helpdesk", "user", ALL_SHOWN, False),
    ("helpdesk", "helpdesk2", set(), False),
    ("helpdesk", "admin", set(), False),
    ("helpdesk", "helpdesk", set(), False),  # their own account
    ("admin", "user", ALL_SHOWN | {"role"}, False),
    ("admin", "helpdesk", ALL_SHOWN | {"role"}, False),
    ("admin", "admin2", ALL_SHOWN | {"role"}, True),
    ("admin", "admin", set(), False),  # their own account
])  # fmt: skip
def test_the_page_offers_only_the_actions_the_viewer_may_take(
    app, people, make_user, viewer, target, shown, reason_fields
):
    if target == "helpdesk2":
        uid = make_user("desk2@example.com", name="Hedy Desk", role="helpdesk")[0]
    elif target == "admin2":
        uid = make_user("root2@example.com", name="Alan Admin", role="admin")[0]
    else:
        uid = people[target]
    with app.app_context():
        u = db.session.get(User, uid)
        u.email_verified = False
        u.admin_locked_until = utcnow() + timedelta(hours=1)
        db.session.commit()
    page = signed_in(app, people[viewer]).get(f"/admin/users/{uid}")
    assert page.status_code == 200
    offered = set(re.findall(r'name="action" value="([a-z_]+)"', page.text))
    assert offered == shown
    reasons = re.findall(r'<input[^>]*name="reason"[^>]*>', page.text)
    if reason_fields:  # every form asks why (an administrator's account)
        # (the header's "Sign out" form acts on the viewer, not on the account shown)
        signout = page.text.count('<form method="post" action="/logout"')
        assert len(reasons) == page.text.count('<form method="post"') - signout
        assert all("required" in r for r in reasons)
        assert "administrator" in page.text and "audit" in page.text
    elif "reset_mfa" in shown:
        assert len(reasons) == 1  # only the reset asks (its reason is emailed)
    else:
        assert reasons == []
    if not shown:
        assert 'id="no-actions"' in page.text
