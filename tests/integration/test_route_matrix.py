"""Every route × every sign-in stage: nothing is written, and no code or token is issued,
unless the stage permits it.

The routes come from the application's URL map, so a route added later is covered
without editing this file (an unknown path argument fails the test until the matrix is
taught a value for it). Each request is a browser's: its own cookies and a valid CSRF
token (so the CSRF check is not what stops it), the stage's sign-in transaction, and
form fields that would succeed if the stage allowed them (the right password, "allow",
"remove", "skip"...). The stages:

* ``anonymous``: a browser that started a sign-in and typed nothing;
* ``password_only``: the password passed, the second factor pending;
* ``password_factor``: password and authenticator app passed, a sign-in waiting at the
  consent page;
* ``stale_factor``: password and app passed an hour ago; a request asks for a factor at
  most 60 seconds old;
* ``other_users_txn``: a signed-in browser presenting the transaction id of a sign-in
  running in another person's browser.

What counts as written: any row of any table (except the audit trail, which records
refusals, and failure counters and timestamps) and the stage's sign-in state in the
store (the transaction's completed steps, the session's passed methods).
"""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.mockrp.forms import parse_forms
from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import add_totp
from tests.integration.mfa_helpers import (
    browsers,
    get,
    path_of,
    shift_session,
    submit,
    totp_code,
    walk,
)

CB = "https://rp.example.com/cb"
STAGES = ("anonymous", "password_only", "password_factor", "stale_factor", "other_users_txn")
WRITING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
# Columns that count attempts or record time, not privilege.
IGNORED_COLUMNS = {
    "failed_logins", "mfa_failures", "locked_until", "mfa_locked_until", "updated_at",
    "last_login_at", "last_seen",
}  # fmt: skip

# (endpoint, method) -> the stages in which a write is the route's purpose.
PERMITTED: dict[tuple[str, str], set[str]] = {
    # Signing in (the form carries the right password) and registering are open to all.
    ("auth.signin", "POST"): set(STAGES),
    ("register.register", "POST"): set(STAGES),
    # Signing out ends the browser's own session, whatever its stage.
    ("oidc.logout", "POST"): set(STAGES),
    # Cancelling drops the browser's own sign-in transaction (and answers the client
    # access_denied), whatever its stage; it issues nothing.
    ("oidc.cancel", "POST"): set(STAGES),
    # A complete sign-in may consent, manage its factors and its account.
    ("oidc.consent", "POST"): {"password_factor"},
    ("account.factor_action", "POST"): {"password_factor"},
    ("mfa.setup_factor", "POST"): {"password_factor"},
    ("email.change", "POST"): {"password_factor"},
    ("password.change", "POST"): {"password_factor"},
    ("mfa.webauthn_options", "POST"): {"password_factor"},  # the user's WebAuthn handle
    # A complete sign-in issues a code to the client.
    ("oidc.authorize", "GET"): {"password_factor"},
    ("oidc.authorize", "POST"): {"password_factor"},
    ("oidc.resume", "GET"): {"password_factor"},
}

# Form fields that would make each route do its most consequential thing.
ACTIONS = {
    "account.factor_action": "remove",
    "admin.user_action": "reset_mfa",
    "admin.client_action": "disable",
    "mfa.challenge": "send",
}


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(
        tmp_path,
        keys_dir,
        mfa={"required": True, "enforce_from": "", "recommend_second": False},
        login={"failures_per_account_ip_per_minute": 1000, "failures_per_ip_per_minute": 1000},
    )


# -- the world ------------------------------------------------------------------------


class Stage:
    """One browser at one sign-in stage, with what its requests may touch."""

    count = 0

    def __init__(self, app, name: str, new_browser, make_user, client_id: str):
        Stage.count += 1
        self.app, self.name = app, name
        self.email = f"{name}-{Stage.count}@example.com"
        self.uid, _ = make_user(email=self.email)
        self.step = int(time.time() // 30)
        self.secret = add_totp(app, self.email, self.step)
        self.rp = new_browser()
        self.client_id = client_id
        self.txn: str | None = None
        getattr(self, f"_{name}")(new_browser, make_user)

    # stages
    def _anonymous(self, new_browser, make_user):
        resp = self.rp.start()
        self.txn = _txn_of(resp.location)

    def _password_only(self, new_browser, make_user):
        resp = walk(self.rp, self.rp.start(), email=self.email, password=PASSWORD)
        assert path_of(resp) == "/mfa/challenge", resp.url
        self.txn = _txn_of(resp.url)

    def _signed_in_fully(self, rp, email, secret):
        resp = walk(rp, rp.start(prompt="consent"), email=email, password=PASSWORD)
        assert path_of(resp) == "/mfa/challenge", resp.url
        # The step after the one the set-up used (each step is accepted once).
        resp = submit(rp, resp, {"code": totp_code(secret, self.step + 1)})
        assert resp.status == 302, resp.text[:300]
        resp = get(rp, resp.location) if "/consent" not in resp.location else resp
        loc = resp.location if resp.status == 302 else resp.url
        assert "/consent" in loc, loc
        return _txn_of(loc)

    def _password_factor(self, new_browser, make_user):
        self.txn = self._signed_in_fully(self.rp, self.email, self.secret)
        _grant_consent(self.app, self.uid, self.client_id)

    def _stale_factor(self, new_browser, make_user):
        self._signed_in_fully(self.rp, self.email, self.secret)
        _grant_consent(self.app, self.uid, self.client_id)
        shift_session(self.app, self.rp, 3600, keep=("pwd",))
        resp = self.rp.start(acr_values="urn:idp:acr:mfa", max_age="60")
        assert resp.status == 302 and "/mfa/challenge" in resp.location, resp.location
        self.txn = _txn_of(resp.location)

    def _other_users_txn(self, new_browser, make_user):
        # The attacker is fully signed in as himself...
        self._signed_in_fully(self.rp, self.email, self.secret)
        # ...and presents the transaction of a sign-in in the victim's browser.
        victim_email = f"victim-{Stage.count}@example.com"
        victim_uid, _ = make_user(email=victim_email)
        secret = add_totp(self.app, victim_email, self.step)
        self.victim = new_browser()
        self.txn = self._signed_in_fully(self.victim, victim_email, secret)
        self.victim_uid = victim_uid

    # what may change
    def csrf(self) -> str:
        page = get(self.rp, "/signin")
        return next(f for f in parse_forms(page.text, page.url) if "csrf_token" in f.fields).fields[
            "csrf_token"
        ]

    def store_state(self) -> dict:
        svc = self.app.extensions["idp"]
        out = {}
        with self.app.app_context():
            raw = svc.store.get(f"txn:{self.txn}") if self.txn else None
            out["txn_done"] = sorted(json.loads(raw)["done"]) if raw else None
            for label, rp in (("session", self.rp), ("victim", getattr(self, "victim", None))):
                if rp is None:
                    continue
                cookie = rp.transport.client.get_cookie(svc.settings.session.cookie_name)
                session = svc.sessions.load(cookie.value) if cookie else None
                out[label] = sorted(session.methods) if session else None
        return out


def _txn_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["txn"][0]


def _grant_consent(app, uid: int, client_id: str) -> None:
    from idp.extensions import db
    from idp.models import Consent

    with app.app_context():
        if not db.session.execute(db.select(Consent).filter_by(user_id=uid)).first():
            db.session.add(Consent(user_id=uid, client_id=client_id, scope="openid profile email"))
            db.session.commit()


def db_state(app, only_user: int | None = None) -> dict[str, list]:
    """Every table's rows (minus ignored columns); with *only_user*, a user's rows of the
    tables that belong to users (the other tables whole)."""
    from idp.extensions import db

    out = {}
    with app.app_context():
        for table in db.metadata.sorted_tables:
            if table.name == "audit_events":
                continue
            cols = [c for c in table.columns if c.name not in IGNORED_COLUMNS]
            query = db.select(*cols).order_by(*table.primary_key)
            if only_user is not None and table.name == "users":
                query = query.where(table.c.id == only_user)
            elif only_user is not None and "user_id" in table.c:
                query = query.where(table.c.user_id == only_user)
            out[table.name] = [tuple(r) for r in db.session.execute(query).all()]
    return out


def _diff(before: dict, after: dict) -> list[str]:
    return [k for k in before if before[k] != after[k]]


# -- the routes -------------------------------------------------------------------------


def _routes(app) -> list[tuple[str, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "metrics"):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, rule.rule, method))
    return sorted(set(out))


def _path(rule: str, stage: Stage) -> str:
    """Fill the rule's arguments with values that reach the view's logic."""
    from idp.extensions import db
    from idp.models import Factor

    with stage.app.app_context():
        factor_id = db.session.execute(
            db.select(Factor.id).filter_by(user_id=getattr(stage, "victim_uid", stage.uid))
        ).scalar()
    values = {
        "factor_id": str(factor_id),
        "user_id": str(getattr(stage, "victim_uid", stage.uid)),
        "client_id": stage.client_id,
        "token": "1999999999.bm90LWEtdG9rZW4.c2lnbmF0dXJl",
        "kind": "recovery",
        "purpose": "register",
        "challenge_id": "x" * 22,
        "handle": "x" * 22,
        "resource_id": "1",
    }

    def fill(m: re.Match) -> str:
        name = m.group(1).split(":")[-1]
        assert name in values, f"the route matrix has no value for <{name}> in {rule}"
        return values[name]

    return re.sub(r"<([^>]+)>", fill, rule)


def _send(stage: Stage, endpoint: str, rule: str, method: str):
    path = _path(rule, stage)
    fields = {
        "csrf_token": stage.csrf(),
        "txn": stage.txn or "",
        "decision": "allow",
        "choice": "skip",
        "action": ACTIONS.get(endpoint, "remove"),
        "email": stage.email,
        "password": PASSWORD,
        "current_password": PASSWORD,
        "password_confirm": PASSWORD,
        "reason": "route matrix",
        "kind": "totp",
        "code": "000000",
        "label": "renamed",
        "hours": "24",
        "role": "admin",
        "next": "account",
        "confirm": "yes",  # past the confirmation of the destructive actions
    }
    url = f"http://localhost{path}"
    if method == "GET":
        return stage.rp.transport.request("GET", f"{url}?txn={stage.txn or ''}")
    return stage.rp.transport.request(method, url, data=fields)


def _issued_code(resp) -> bool:
    loc = resp.location or ""
    return loc.startswith(CB) and "code" in parse_qs(urlsplit(loc).query)


@pytest.fixture
def world(app, make_client, make_user):
    client_id, secret = make_client()  # a third-party client: consent applies
    return browsers(app, client_id, secret, CB), make_user, client_id


def test_every_route_is_in_the_matrix(app):
    """The matrix knows a value for every path argument (a new argument name fails)."""
    for _endpoint, rule, _method in _routes(app):
        for arg in re.findall(r"<([^>]+)>", rule):
            assert arg.split(":")[-1] in {
                "factor_id", "user_id", "client_id", "token", "kind", "purpose",
                "challenge_id", "handle", "resource_id",
            }, rule  # fmt: skip


@pytest.mark.parametrize("stage_name", STAGES)
def test_nothing_is_written_unless_the_stage_permits_it(app, world, stage_name):
    new_browser, make_user, client_id = world
    problems = []
    for endpoint, rule, method in _routes(app):
        stage = Stage(app, stage_name, new_browser, make_user, client_id)
        # The attacker of other_users_txn is signed in as himself: what he does to his own
        # account is his business; the victim's rows and sign-in must not change.
        only = getattr(stage, "victim_uid", None)
        before_db, before_store = db_state(app, only), stage.store_state()
        resp = _send(stage, endpoint, rule, method)
        assert resp.status < 500, (endpoint, method, stage_name, resp.status, resp.text[:400])
        permitted = stage_name in PERMITTED.get((endpoint, method), set())
        if permitted:
            continue
        changed = _diff(before_db, db_state(app, only))
        store_after = stage.store_state()
        if store_after != before_store:
            # Signing out (a cleared session) is never a privilege gained.
            gained = {
                k: (before_store[k], store_after[k])
                for k in before_store
                if before_store[k] != store_after[k]
                and not (k in ("session", "victim") and store_after[k] is None)
            }
            if gained:
                changed.append(f"store {gained}")
        if _issued_code(resp):
            changed.append("an authorization code was issued")
        if changed:
            problems.append(f"{method} {rule} ({endpoint}) at {stage_name}: {changed}")
    assert not problems, "\n".join(problems)
