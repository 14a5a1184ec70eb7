"""``/admin/users``: search, the user's page (status, factors without secrets,
sessions, recent events) and the help-desk actions, each audited with the agent's id."""

from __future__ import annotations

import json
import os
import sys
import types
from datetime import timedelta

import pyotp
import pytest

from idp.extensions import db
from idp.models import Factor, RefreshToken, User
from idp.models.base import utcnow
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
        return services().sessions.count_for(uid)


def _refresh_revoked(app) -> bool:
    with app.app_context():
        return db.session.execute(db.select(RefreshToken)).scalar_one().revoked_at is not None


def act(b, uid: int, action: str, **fields):
    return b.post(f"/admin/users/{uid}/action", {"action": action, **fields})


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
    assert user.locked_until > utcnow() + timedelta(hours=23)
    assert _sessions(app, uma["id"]) == 0 and _refresh_revoked(app)
    assert "locked until" in b.get(f"/admin/users/{uma['id']}").text
    act(b, uma["id"], "unlock")
    assert _user(app, uma["id"]).locked_until is None
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
    assert "Ended+2+session" in resp.headers["Location"]
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
    assert resp.status_code == 302 and "Verification+email+sent" in resp.headers["Location"]
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
    assert own.status_code == 400 and _user(app, people["admin"]).role == "admin"
    assert act(admin, people["user"], "role", role="root").status_code == 400
    (event,) = audit_events(app, "user.role_changed")
    assert event.details == {"actor": f"user:{people['admin']}", "role": "helpdesk",
                             "previous": "user"}  # fmt: skip


def test_unknown_action_is_refused(app, people):
    b = signed_in(app, people["helpdesk"])
    assert act(b, people["user"], "explode").status_code == 400
