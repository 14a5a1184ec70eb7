"""``/account/security``: the user's factors, step-up before changes, the last-factor
rule, notifications and the activity list, driven through the real pages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from idp.security import totp
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import (
    ISSUER,
    browsers,
    get,
    path_of,
    setup_secret,
    submit,
    submit_credential,
    totp_code,
    walk,
    webauthn_options,
)
from tests.softauthn import SoftAuthenticator

EMAIL = "ada@example.com"
OTHER = "bob@example.com"
CB = "https://rp.example.com/cb"
WINDOW = 60  # [mfa] reauth_window, the smallest allowed


@pytest.fixture
def mfa() -> dict:
    """[mfa] overrides; tests parametrize this."""
    return {}


@pytest.fixture
def settings(tmp_path, keys_dir, mfa):
    values = {"required": True, "enforce_from": "", "reauth_window": WINDOW, **mfa}
    return make_settings(tmp_path, keys_dir, mfa=values)


class Clock:
    """The TOTP time step the provider sees (frozen, moved by the test)."""

    def __init__(self, step: int):
        self.step = step


@pytest.fixture
def clock(monkeypatch) -> Clock:
    import time

    c = Clock(int(time.time() // 30))
    monkeypatch.setattr(totp, "current_step", lambda now=None: c.step)
    return c


@pytest.fixture
def rp_factory(app, make_client, make_user):
    make_user()
    make_user(OTHER, name="Bob")
    client_id, secret = make_client(first_party=True)

    return browsers(app, client_id, secret, CB)


# -- helpers ---------------------------------------------------------------------------


def signin_to_account(rp: MockRP, email: str = EMAIL):
    resp = get(rp, "/account/security")
    assert resp.status == 302 and path_of_location(resp) == "/signin"
    resp = walk(rp, resp, email=email, password=PASSWORD)
    assert resp.status == 200 and path_of(resp) == "/account/security", resp.url
    return resp


def path_of_location(resp) -> str:
    from urllib.parse import urlsplit

    return urlsplit(resp.location or "").path


def add_totp(rp: MockRP, clock: Clock, label: str):
    """Set up an authenticator app from the account page; returns (secret, response)."""
    page = get(rp, "/mfa/setup/totp?next=account")
    assert page.status == 200, (page.status, page.location)
    secret = setup_secret(page)
    resp = submit(rp, page, {"code": totp_code(secret, clock.step), "label": label})
    assert resp.status == 302, resp.text[:500]
    return secret, resp


def add_webauthn(rp: MockRP, authenticator: SoftAuthenticator, label: str):
    page = get(rp, "/mfa/setup/webauthn?next=account")
    assert page.status == 200, (page.status, page.location)
    credential = authenticator.create(webauthn_options(rp, page, "register"))
    resp = submit_credential(rp, page, credential, label=label)
    assert resp.status == 302, resp.text[:500]
    return resp


def pass_challenge(rp: MockRP, resp, secret: str, step: int):
    """Answer the TOTP challenge *resp* (a redirect to it or the page itself)."""
    if resp.status == 302:
        resp = get(rp, resp.location)
    assert path_of(resp) == "/mfa/challenge", resp.url
    return submit(rp, resp, {"code": totp_code(secret, step)})


def let_time_pass(app, rp: MockRP, seconds: int, methods: list[str] | None = None) -> None:
    """Move the browser session's sign-in times *seconds* into the past (every method,
    or only those named), as if that much time had passed since they were verified."""
    from idp.security.crypto import hash_token

    svc = app.extensions["idp"]
    cookie = rp.transport.client.get_cookie(svc.settings.session.cookie_name)
    assert cookie is not None, "no session cookie"
    key = f"session:{hash_token(cookie.value)}"
    data = json.loads(svc.store.get(key))
    for method in methods or list(data["methods"]):
        data["methods"][method] -= seconds
    if methods is None:
        data["auth_time"] -= seconds
    svc.store.set(key, json.dumps(data).encode(), 600)


def factors(app, email: str = EMAIL) -> list[dict]:
    from idp.extensions import db
    from idp.models import Factor, User

    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        rows = db.session.execute(
            db.select(Factor).filter_by(user_id=user.id).order_by(Factor.id)
        ).scalars()
        return [
            {
                "id": f.id,
                "type": f.type,
                "label": f.label,
                "status": f.status,
                "default": f.is_default,
                "secret_enc": f.secret_enc,
            }  # fmt: skip
            for f in rows
        ]


def factor_id(app, label: str, email: str = EMAIL) -> int:
    return next(f["id"] for f in factors(app, email) if f["label"] == label)


def events(app, name: str) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [{"user_id": e.user_id, "outcome": e.outcome, **(e.details or {})} for e in rows]


def user_id(app, email: str = EMAIL) -> int:
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        return db.session.execute(db.select(User.id).filter_by(email=email)).scalar_one()


def outbox(app, purpose: str | None = None) -> list[dict]:
    path = Path(app.extensions["idp"].settings.delivery.outbox)
    if not path.exists():
        return []
    mails = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [m for m in mails if purpose is None or m["purpose"] == purpose]


def factor_form(resp, fid: int):
    forms = parse_forms(resp.text, resp.url)
    return next(f for f in forms if f.action.endswith(f"/account/factors/{fid}"))


def act(rp: MockRP, page, fid: int, action: str, **fields):
    """Press *action* in the factor's form on the account page (with its CSRF token)."""
    form = factor_form(page, fid).fill(fields)
    return rp.submit_form(form, button=("action", action))


def done(rp: MockRP, resp):
    """An action's answer: a redirect (303) to the account page, which is then shown."""
    assert resp.status == 303, (resp.status, resp.text[:300])
    assert path_of_location(resp) == "/account/security"
    return get(rp, resp.location)


def remove(rp: MockRP, fid: int):
    """Press "Remove", then "Yes, remove" on the confirmation page the server shows."""
    page = act(rp, get(rp, "/account/security"), fid, "remove")
    assert page.status == 200 and "Yes, remove" in page.text, (page.status, page.location)
    return act(rp, page, fid, "remove")


def forged(rp: MockRP, fid: int, action: str, **fields):
    """The same POST without a CSRF token (e.g. from another site)."""
    return rp.transport.request(
        "POST", f"{ISSUER}/account/factors/{fid}", data={"action": action, **fields}
    )


def row_of(page, label: str) -> str:
    rows = re.findall(r"<tr>(.*?)</tr>", page.text, re.S)
    return next(r for r in rows if f'value="{label}"' in r)


def challenge_kind(resp) -> str:
    m = re.search(r'name="kind" value="(\w+)"', resp.text)
    assert m, f"no challenge form on {resp.url}"
    return m.group(1)


def seed_totp(app, email: str, label: str) -> tuple[int, str]:
    """An active authenticator app for *email*, written straight to the database."""
    from idp.extensions import db
    from idp.models import Factor, User
    from idp.models.base import utcnow

    with app.app_context():
        svc = app.extensions["idp"]
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        secret = totp.new_secret()
        f = Factor(user_id=user.id, type="totp", label=label, status="active",
                   secret_enc=svc.secrets.encrypt(secret, context=f"totp:{user.id}"),
                   activated_at=utcnow())  # fmt: skip
        db.session.add(f)
        db.session.commit()
        return f.id, secret


# -- the page --------------------------------------------------------------------------


def test_signed_out_visitors_sign_in_and_come_back(rp_factory):
    rp = rp_factory()
    resp = get(rp, "/account/security")
    assert resp.status == 302
    assert resp.location.endswith("/signin?next=account")
    page = get(rp, resp.location)
    assert 'name="next" value="account"' in page.text
    form = next(f for f in parse_forms(page.text, page.url) if "password" in f.fields)
    resp = rp.submit_form(form.fill(email=EMAIL, password=PASSWORD))
    assert resp.status == 302 and path_of_location(resp) == "/account/security"
    page = get(rp, resp.location)
    assert page.status == 200
    assert f"Signed in as <strong>{EMAIL}</strong>" in page.text
    assert "You have no second sign-in method yet." in page.text

    # Any other next= value is not followed (no open redirect).
    other = rp_factory()
    page = get(other, "/signin?next=https://evil.example/")
    assert "evil.example" not in page.text
    form = next(f for f in parse_forms(page.text, page.url) if "password" in f.fields)
    resp = other.submit_form(
        form.fill(email=EMAIL, password=PASSWORD, next="https://evil.example/")
    )
    assert resp.status == 302 and "evil.example" not in resp.location


def test_factors_are_listed_without_secrets(app, rp_factory, clock):
    rp = rp_factory()
    signin_to_account(rp)
    secret, resp = add_totp(rp, clock, "Pixel phone")
    # The first method: the next page offers recovery codes and a second method.
    assert resp.location.endswith("/mfa/recommend?next=account&added=totp")
    page = get(rp, resp.location)
    assert "Authenticator app added." in page.text
    let_time_pass(app, rp, 5)
    page = get(rp, "/mfa/setup/recovery?next=account")
    assert page.status == 200, page.location
    resp = submit(rp, page, {})
    codes_page = get(rp, resp.location) if resp.status == 302 else resp
    codes = re.findall(r"<code>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</code>", codes_page.text)
    assert len(codes) == 10
    page = get(rp, "/account/security")

    [stored] = [f for f in factors(app) if f["type"] == "totp"]
    totp_row = row_of(page, "Pixel phone")
    assert "Authenticator app" in totp_row
    from datetime import UTC, datetime

    from idp.wording import long_date

    today = long_date(datetime.now(UTC))
    added, last_used = re.findall(r"<td[^>]*>([^<]*)</td>", totp_row)[-2:]
    assert added == today
    assert last_used.startswith(today) and last_used.endswith("UTC")  # used to enroll
    recovery = next(r for r in re.findall(r"<tr>(.*?)</tr>", page.text, re.S) if "Recovery" in r)
    assert "(10 left)" in recovery and "never" in recovery

    # No secret in any form: not the key, not grouped, not encrypted, no recovery code.
    text = page.text
    assert secret not in text and totp.group_secret(secret) not in text
    assert stored["secret_enc"] and stored["secret_enc"] not in text
    for chunk in (secret[:8], secret[8:16], secret[16:24], secret[24:]):
        assert chunk not in text
    for code in codes:
        assert code not in text


def test_rename_and_default_need_csrf_and_the_default_is_offered_first(app, rp_factory, clock):
    rp = rp_factory()
    signin_to_account(rp)
    secret, _ = add_totp(rp, clock, "Phone")
    let_time_pass(app, rp, 5)
    add_webauthn(rp, SoftAuthenticator(), "Blue key")
    page = get(rp, "/account/security")
    phone, key = factor_id(app, "Phone"), factor_id(app, "Blue key")

    # Forged requests change nothing.
    assert forged(rp, phone, "rename", label="Evil").status == 400
    assert forged(rp, key, "default").status == 400
    assert [(f["label"], f["default"]) for f in factors(app)] == [
        ("Phone", False),
        ("Blue key", False),
    ]

    resp = done(rp, act(rp, page, phone, "rename", label="  Work phone  "))
    assert "Name saved." in resp.text
    assert factor_id(app, "Work phone") == phone
    assert 'value="Work phone"' in resp.text
    resp = done(rp, act(rp, resp, phone, "rename", label="<b>x</b>"))
    assert "<b>x</b>" not in resp.text and "&lt;b&gt;x" in resp.text
    resp = done(rp, act(rp, resp, phone, "rename", label="Work phone"))
    resp = act(rp, resp, phone, "rename", label="   ")
    assert resp.status == 400 and "Enter a name." in resp.text
    assert factor_id(app, "Work phone") == phone

    # Which method does a new sign-in offer first, before and after choosing a default?
    def first_offered() -> str:
        browser = rp_factory()
        resp = walk(browser, browser.start(), email=EMAIL, password=PASSWORD)
        assert path_of(resp) == "/mfa/challenge", resp.url
        return challenge_kind(resp)

    before = first_offered()
    target = phone if before == "webauthn" else key
    kind = "totp" if target == phone else "webauthn"
    resp = done(rp, act(rp, get(rp, "/account/security"), target, "default"))
    assert "Default method changed." in resp.text
    assert [f["default"] for f in factors(app) if f["id"] == target] == [True]
    assert sum(f["default"] for f in factors(app)) == 1
    assert 'class="usa-tag">default' in row_of(
        resp, "Work phone" if target == phone else "Blue key"
    )
    assert first_offered() == kind


def test_adding_a_factor_needs_a_recent_second_factor(app, rp_factory, clock):
    rp = rp_factory()
    signin_to_account(rp)
    secret, _ = add_totp(rp, clock, "Phone")

    # Long after the app was last verified, a recent password is not enough.
    let_time_pass(app, rp, 5)
    let_time_pass(app, rp, WINDOW - 4, methods=["totp"])
    resp = get(rp, "/mfa/setup/totp?next=account")
    assert resp.status == 302
    assert path_of_location(resp) == "/mfa/challenge"
    assert "reauth=1" in resp.location and "next=account" in resp.location
    page = get(rp, resp.location)
    assert challenge_kind(page) == "totp"
    resp = submit(rp, page, {"code": totp_code(secret, clock.step)})  # reused: refused
    assert resp.status == 400
    assert len(factors(app)) == 1

    clock.step += 1
    resp = pass_challenge(rp, page, secret, clock.step)
    assert resp.status == 302 and path_of_location(resp) == "/account/security"
    let_time_pass(app, rp, 5)
    second, resp = add_totp(rp, clock, "Tablet")
    assert second != secret
    assert resp.location.endswith("/account/security?added=totp")
    assert [f["label"] for f in factors(app)] == ["Phone", "Tablet"]

    # Every add is emailed to the user.
    added = outbox(app, "notify.factor_added")
    assert [m["to"] for m in added] == [EMAIL, EMAIL]
    assert "Authenticator app" in added[0]["text"] and '"Phone"' in added[0]["text"]
    assert '"Tablet"' in added[1]["text"]
    assert all("added" in m["subject"] for m in added)
    assert [e["label"] for e in events(app, "mfa.factor_added")] == ["Phone", "Tablet"]


def test_adding_a_factor_right_after_a_challenge_needs_no_second_challenge(app, rp_factory, clock):
    """A second factor verified this very second is recent (age 0 is not "never")."""
    rp = rp_factory()
    signin_to_account(rp)
    add_totp(rp, clock, "Phone")
    resp = get(rp, "/mfa/setup/totp?next=account")
    assert (resp.status, resp.location) == (200, None)


def test_removing_needs_a_recent_second_factor_and_never_the_last_one(app, rp_factory, clock):
    rp = rp_factory()
    signin_to_account(rp)
    secret, _ = add_totp(rp, clock, "Phone")
    phone = factor_id(app, "Phone")

    # A recent password is not enough: the second factor must be recent.
    let_time_pass(app, rp, 5)
    let_time_pass(app, rp, WINDOW - 4, methods=["totp"])
    page = get(rp, "/account/security")
    resp = act(rp, page, phone, "remove")
    assert resp.status == 302 and path_of_location(resp) == "/mfa/challenge"
    assert "reauth=1" in resp.location and "next=account" in resp.location
    assert [f["id"] for f in factors(app)] == [phone]

    clock.step += 1
    resp = pass_challenge(rp, resp, secret, clock.step)
    assert path_of_location(resp) == "/account/security"

    # Right after the challenge: the only method cannot go while MFA is required.
    resp = act(rp, get(rp, "/account/security"), phone, "remove")
    assert resp.status == 409, (resp.status, resp.location)
    assert "only sign-in method" in resp.text and "Add another" in resp.text
    assert [f["id"] for f in factors(app)] == [phone]
    [refused] = events(app, "mfa.remove_refused")
    assert refused["factor_id"] == phone and refused["outcome"] == "failure"
    assert events(app, "mfa.factor_removed") == []

    # Recovery codes do not count as another method.
    let_time_pass(app, rp, 5)
    submit(rp, get(rp, "/mfa/setup/recovery?next=account"), {})
    resp = act(rp, get(rp, "/account/security"), phone, "remove")
    assert resp.status == 409
    assert {f["type"] for f in factors(app)} == {"totp", "recovery"}

    # With a second app, the first can go.
    add_totp(rp, clock, "Tablet")
    resp = done(rp, remove(rp, phone))
    assert "Authenticator app removed." in resp.text
    assert 'value="Phone"' not in resp.text
    assert sorted(f["label"] for f in factors(app)) == ["Recovery codes", "Tablet"]
    [removed] = events(app, "mfa.factor_removed")
    assert removed["factor_id"] == phone and removed["label"] == "Phone"
    assert removed["user_id"] == user_id(app) and removed["actor"] == "user"
    [mail] = outbox(app, "notify.factor_removed")
    assert mail["to"] == EMAIL and "removed" in mail["subject"]
    assert "Authenticator app" in mail["text"] and '"Phone"' in mail["text"]

    # Removing the recovery codes removes every code.
    recovery = factor_id(app, "Recovery codes")
    resp = done(rp, remove(rp, recovery))
    assert "Recovery codes removed." in resp.text
    from idp.extensions import db
    from idp.models import RecoveryCode

    with app.app_context():
        assert db.session.execute(db.select(db.func.count(RecoveryCode.id))).scalar_one() == 0
    assert [f["label"] for f in factors(app)] == ["Tablet"]


@pytest.mark.parametrize("mfa", [{"required": False}])
def test_the_last_factor_may_go_when_mfa_is_optional(app, rp_factory, clock):
    rp = rp_factory()
    signin_to_account(rp)
    add_totp(rp, clock, "Phone")
    let_time_pass(app, rp, 5)
    resp = done(rp, remove(rp, factor_id(app, "Phone")))
    assert "Authenticator app removed." in resp.text
    assert factors(app) == []
    assert "You have no second sign-in method yet." in resp.text


def test_another_users_factor_is_not_found(app, rp_factory, clock):
    theirs, _ = seed_totp(app, OTHER, "Bob's phone")
    rp = rp_factory()
    signin_to_account(rp)
    add_totp(rp, clock, "Phone")
    let_time_pass(app, rp, 5)
    page = get(rp, "/account/security")
    form = factor_form(page, factor_id(app, "Phone"))
    for action, extra in (("rename", {"label": "Mine now"}), ("default", {}), ("remove", {})):
        data = {**form.fields, **extra, "action": action}
        resp = rp.transport.request("POST", f"{ISSUER}/account/factors/{theirs}", data=data)
        assert resp.status == 404, action
    resp = rp.transport.request("POST", f"{ISSUER}/account/factors/999999",
                                data={**form.fields, "action": "rename"})  # fmt: skip
    assert resp.status == 404
    assert [(f["id"], f["label"], f["default"]) for f in factors(app, OTHER)] == [
        (theirs, "Bob's phone", False)
    ]
    assert "Bob" not in page.text


def test_recent_activity_in_plain_words(app, rp_factory, clock):
    rp = rp_factory()
    signin_to_account(rp)
    secret, _ = add_totp(rp, clock, "Phone")
    let_time_pass(app, rp, 5)
    add_totp(rp, clock, "Tablet")
    resp = done(rp, remove(rp, factor_id(app, "Phone")))
    assert resp.status == 200
    # A failed and a passed second step in another browser.
    other = rp_factory()
    page = walk(other, other.start(), email=EMAIL, password=PASSWORD)
    assert submit(other, page, {"code": totp_code(secret, clock.step + 5)}).status == 400

    page = get(rp, "/account/security")
    activity = re.search(r'<ul class="activity">(.*?)</ul>', page.text, re.S).group(1)
    items = [re.sub(r"<[^>]+>", "", li).split(" – ", 1)[1].strip()
             for li in re.findall(r"<li>(.*?)</li>", activity, re.S)]  # fmt: skip
    assert "Signed in" in "\n".join(items)
    assert any(i.startswith("Sign-in method added (Authenticator app)") for i in items)
    assert any(i.startswith("Sign-in method removed (Authenticator app)") for i in items)
    assert any(i.startswith("Failed second sign-in step (Authenticator app)") for i in items)
    assert sum(i.startswith("Signed in") for i in items) == 2
    # Newest first; no internal event names.
    assert items[0].startswith("Failed second sign-in step")
    assert not re.search(r"\b(mfa|login)\.[a-z_]+", activity)
    # Another user's events are not listed.
    bob = rp_factory()
    page = signin_to_account(bob, OTHER)
    bob_activity = re.search(r'<ul class="activity">(.*?)</ul>', page.text, re.S).group(1)
    assert "Sign-in method" not in bob_activity and "Signed in" in bob_activity


def test_password_alone_does_not_open_the_security_page_of_a_user_with_factors(
    app, rp_factory, clock
):
    """The page shows factors and activity and changes names and defaults: a user who
    has a second factor must pass it in this session first."""
    rp = rp_factory()
    signin_to_account(rp)
    secret, _ = add_totp(rp, clock, "Phone")
    other = rp_factory()  # a second browser: password only
    resp = get(other, "/account/security")
    resp = walk(other, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge" and "next=account" in resp.url
    clock.step += 1
    resp = pass_challenge(other, resp, secret, clock.step)
    assert resp.status == 302 and resp.location.endswith("/account/security")
    assert get(other, "/account/security").status == 200
