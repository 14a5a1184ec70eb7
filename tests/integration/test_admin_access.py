"""Admin access: the role, a recent second factor (``[admin] mfa_max_age``), CSRF on
every form, JSON errors for the API, and the admin step-up page.

The helpers here (a signed-in staff browser built straight from the session manager)
are shared by the other ``test_admin_*`` modules.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from idp.security.crypto import hash_token
from tests.conftest import make_settings
from tests.integration.mfa_helpers import totp_code

BROWSER_ID = "admin-test-browser-0123456789"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, admin={"mfa_max_age": 900})


class StaffBrowser:
    """A test client with a signed-in session and the page's CSRF token."""

    def __init__(self, app, http, user_id: int | None):
        self.app, self.http, self.user_id = app, http, user_id
        with app.app_context():
            from idp.services import services

            self.csrf = services().csrf.generate(BROWSER_ID)

    def get(self, path: str, **kw):
        return self.http.get(path, **kw)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kw):
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf)
        return self.http.post(path, data=data, **kw)


def signed_in(app, user_id: int | None, *, factor: str | None = "totp", factor_age: int = 0):
    """A browser whose session passed the password and, unless *factor* is None, a
    second factor *factor_age* seconds ago."""
    from idp.services import services

    http = app.test_client()
    http.set_cookie("idp_browser", BROWSER_ID)
    if user_id is not None:
        with app.app_context():
            svc = services()
            cookie, session = svc.sessions.establish(user_id, "pwd")
            if factor:
                cookie, session = svc.sessions.establish(
                    user_id, factor, previous=session, amr=("otp",)
                )
            if factor_age:
                key = f"session:{hash_token(cookie)}"
                data = json.loads(svc.store.get(key))
                data["methods"][factor] = int(time.time()) - factor_age
                svc.store.set(key, json.dumps(data).encode(), 900)
        http.set_cookie(app.extensions["idp"].settings.session.cookie_name, cookie)
    return StaffBrowser(app, http, user_id)


@pytest.fixture
def people(make_user):
    """An administrator, a help-desk agent and an ordinary user."""
    return {
        "admin": make_user("root@example.com", name="Ada Admin", role="admin")[0],
        "helpdesk": make_user("desk@example.com", name="Hal Desk", role="helpdesk")[0],
        "user": make_user("user@example.com", name="Uma User")[0],
    }


def audit_events(app, event: str) -> list:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        return list(
            db.session.execute(
                db.select(AuditEvent).filter_by(event=event).order_by(AuditEvent.id)
            ).scalars()
        )


# -- who gets in -----------------------------------------------------------------------

PAGES = ["/admin/", "/admin/clients", "/admin/users", "/admin/audit", "/admin/mfa",
         "/admin/clients/new", "/admin/mfa/without-mfa.csv"]  # fmt: skip
ADMIN_ONLY = {"/admin/clients", "/admin/audit", "/admin/clients/new"}


def test_not_signed_in_is_sent_to_sign_in(app, people):
    b = signed_in(app, None)
    for page in PAGES:
        resp = b.get(page)
        assert resp.status_code == 302, page
        assert resp.headers["Location"] == "/signin?next=admin", page


def test_sign_in_page_continues_to_admin(app, people):
    b = signed_in(app, None)
    resp = b.get("/signin?next=admin")
    assert 'name="next" value="admin"' in resp.text


def test_non_admin_is_refused_and_audited(app, people):
    b = signed_in(app, people["user"])
    for page in PAGES:
        resp = b.get(page)
        assert resp.status_code == 403, page
        assert "Not allowed" in resp.text
    denied = audit_events(app, "admin.access_denied")
    assert len(denied) == len(PAGES)
    assert denied[0].user_id == people["user"] and denied[0].outcome == "failure"


def test_helpdesk_reaches_help_desk_pages_only(app, people):
    b = signed_in(app, people["helpdesk"])
    for page in PAGES:
        resp = b.get(page)
        assert resp.status_code == (403 if page in ADMIN_ONLY else 200), page


def test_admin_reaches_every_page(app, people):
    b = signed_in(app, people["admin"])
    for page in PAGES:
        assert b.get(page).status_code == 200, page


def test_admin_without_second_factor_must_step_up(app, people):
    b = signed_in(app, people["admin"], factor=None)
    resp = b.get("/admin/users?q=ada")
    assert resp.status_code == 302
    # The one challenge page, in its admin context.
    assert resp.headers["Location"] == "/mfa/challenge?next=/admin/users?q%3Dada"


def test_admin_with_stale_second_factor_must_step_up(app, people):
    b = signed_in(app, people["admin"], factor_age=901)
    for page in PAGES:
        resp = b.get(page)
        assert resp.status_code == 302, page
        assert resp.headers["Location"].startswith("/mfa/challenge?next=/admin"), page
    fresh = signed_in(app, people["admin"], factor_age=880)
    assert fresh.get("/admin/").status_code == 200


def test_stale_admin_cannot_post_an_action(app, people):
    b = signed_in(app, people["admin"], factor_age=2000)
    resp = b.post(f"/admin/users/{people['user']}/action", {"action": "disable"})
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith("/mfa/challenge?next=/admin")
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        assert db.session.get(User, people["user"]).status == "active"


@pytest.mark.parametrize("acr,ok", [
    ("urn:idp:acr:mfa", True),
    ("http://idmanagement.gov/ns/assurance/aal/2", True),
    ("http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true", False),
])  # fmt: skip
def test_required_acr_is_configurable(tmp_path, keys_dir, make_user, acr, ok):
    """With the phishing-resistant level required, a TOTP step-up is not enough."""
    from dataclasses import replace

    from idp.app import create_app
    from idp.store import MemoryStore
    from tests.conftest import _migrate

    s = make_settings(tmp_path, keys_dir, admin={"required_acr": acr})
    s = replace(s, database=replace(s.database, url=f"sqlite:///{tmp_path / 'acr.sqlite3'}"))
    app = create_app(s, store=MemoryStore(), warn=False)
    _migrate(app)
    from idp.extensions import db
    from idp.models import User
    from idp.services import services

    with app.app_context():
        u = User(email="acr@example.com", role="admin",
                 password_hash=services().passwords.hash("x" * 12))  # fmt: skip
        db.session.add(u)
        db.session.commit()
        uid = u.id
    b = signed_in(app, uid, factor="totp")
    assert (b.get("/admin/").status_code == 200) is ok
    if not ok:
        webauthn = signed_in(app, uid, factor="webauthn")
        assert webauthn.get("/admin/").status_code == 200


# -- CSRF --------------------------------------------------------------------------------

FORMS = [
    ("/admin/clients/new", {"name": "X", "redirect_uris": "https://x.example/cb",
                            "auth_method": "client_secret_basic", "scope": "openid"}),
    ("/admin/users/{user}/action", {"action": "disable"}),
    ("/admin/users/{user}/action", {"action": "reset_mfa", "reason": "lost phone"}),
    ("/admin/mfa/remind", {}),
    ("/mfa/challenge", {"kind": "totp", "code": "123456", "next": "/admin/"}),
]  # fmt: skip


@pytest.mark.parametrize("path,data", FORMS)
def test_admin_forms_need_the_csrf_token(app, people, path, data):
    b = signed_in(app, people["admin"])
    path = path.format(user=people["user"])
    missing = b.post(path, data, csrf=False)
    assert missing.status_code == 400 and "This form has expired" in missing.text
    forged = b.post(path, {**data, "csrf_token": "forged"}, csrf=False)
    assert forged.status_code == 400
    assert audit_events(app, "user.disabled") == []
    assert audit_events(app, "client.created") == []
    assert audit_events(app, "mfa.reset") == []


def test_csrf_token_of_another_browser_is_refused(app, people):
    b = signed_in(app, people["admin"])
    with app.app_context():
        from idp.services import services

        other = services().csrf.generate("another-browser-0123456789")
    resp = b.post(
        f"/admin/users/{people['user']}/action",
        {"action": "disable", "csrf_token": other},
        csrf=False,
    )
    assert resp.status_code == 400


# -- the JSON API --------------------------------------------------------------------------


def test_api_errors_are_json(app, people):
    anon = signed_in(app, None).get("/admin/api/mfa")
    assert anon.status_code == 401 and anon.json["error"] == "login_required"
    user = signed_in(app, people["user"]).get("/admin/api/mfa")
    assert user.status_code == 403 and user.json["error"] == "forbidden"
    stale = signed_in(app, people["admin"], factor_age=5000).get("/admin/api/users?q=u")
    assert stale.status_code == 401 and stale.json["error"] == "mfa_required"
    assert "insufficient_user_authentication" in stale.headers["WWW-Authenticate"]
    ok = signed_in(app, people["helpdesk"]).get("/admin/api/users?q=uma")
    assert ok.status_code == 200
    assert [u["email"] for u in ok.json["users"]] == ["user@example.com"]
    assert ok.headers["Cache-Control"] == "no-store"


# -- the step-up page ------------------------------------------------------------------------


def _enroll_totp(app, user_id: int) -> str:
    import pyotp

    from idp.extensions import db
    from idp.models import Factor, User
    from idp.models.base import utcnow
    from idp.services import services

    secret = pyotp.random_base32(32)
    with app.app_context():
        user = db.session.get(User, user_id)
        enc = services().secrets.encrypt(secret, context=f"totp:{user.id}")
        db.session.add(Factor(user_id=user.id, type="totp", label="phone", status="active",
                              secret_enc=enc, activated_at=utcnow()))  # fmt: skip
        db.session.commit()
    return secret


def test_step_up_with_totp_then_continue(app, people):
    secret = _enroll_totp(app, people["admin"])
    b = signed_in(app, people["admin"], factor=None)
    resp = b.get("/mfa/challenge?next=/admin/users?q=uma")
    assert resp.status_code == 200 and "Verify it" in resp.text
    assert "The admin pages need a recent second sign-in step" in resp.text
    wrong = b.post("/mfa/challenge", {"kind": "totp", "code": "000000", "next": "/admin/users"})
    assert wrong.status_code == 400
    ok = b.post("/mfa/challenge", {"kind": "totp", "code": totp_code(secret),
                                   "next": "/admin/users?q=uma"})  # fmt: skip
    assert ok.status_code == 302 and ok.headers["Location"] == "/admin/users?q=uma"
    assert "user@example.com" in b.get("/admin/users?q=uma").text
    assert [e.event for e in audit_events(app, "mfa.failure")] == ["mfa.failure"]


@pytest.mark.parametrize("target", ["https://evil.example/admin", "//evil.example/admin",
                                    "/account/security", "/\\evil.example"])  # fmt: skip
def test_step_up_never_redirects_elsewhere(app, people, target):
    """A ``next`` that is not an admin path is not an admin context: the pass leads to
    the user's own account page, never to another origin or page."""
    secret = _enroll_totp(app, people["admin"])
    b = signed_in(app, people["admin"], factor=None)
    ok = b.post("/mfa/challenge", {"kind": "totp", "code": totp_code(secret), "next": target})
    assert ok.status_code == 302 and ok.headers["Location"] == "/account/security"


def test_step_up_without_a_factor_says_to_set_one_up(app, people):
    b = signed_in(app, people["admin"], factor=None)
    resp = b.get("/mfa/challenge?next=/admin/")
    assert resp.status_code == 200 and "need a second sign-in step" in resp.text
    assert re.search(r'href="/mfa/setup\?next=account"', resp.text)


def test_a_step_up_does_not_make_a_user_staff(app, people):
    """Anyone may pass their own factor on the admin context's challenge; the admin pages
    still check the role."""
    secret = _enroll_totp(app, people["user"])
    b = signed_in(app, people["user"], factor=None)
    ok = b.post("/mfa/challenge", {"kind": "totp", "code": totp_code(secret), "next": "/admin/"})
    assert ok.status_code == 302 and ok.headers["Location"] == "/admin/"
    assert b.get("/admin/").status_code == 403
