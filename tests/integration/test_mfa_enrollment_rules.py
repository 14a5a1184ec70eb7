"""The enrollment and challenge rules of the sign-in policy, through the real pages:
"Remind me later" before the enforcement date, safe enrollment, TOTP code checks,
step-up by acr_values and prompt=none."""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from idp.security import totp
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import (
    ISSUER,
    browsers,
    get,
    link,
    path_of,
    setup_secret,
    shift_session,
    submit,
    totp_code,
    walk,
)

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"
AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
MFA = "urn:idp:acr:mfa"
WINDOW = 60


def day(offset: int) -> str:
    """A date *offset* days from today (UTC, as the policy counts)."""
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=offset)).isoformat()


class Days(int):
    """An enforcement date *n* days from today, resolved when the test runs, not when
    it is collected (a run that crosses midnight would otherwise count one day less)."""


@pytest.fixture
def mfa() -> dict:
    """[mfa] overrides; tests parametrize this."""
    return {}


@pytest.fixture
def settings(tmp_path, keys_dir, mfa):
    mfa = {k: day(v) if isinstance(v, Days) else v for k, v in mfa.items()}
    values = {"required": True, "enforce_from": "", "reauth_window": WINDOW, **mfa}
    return make_settings(tmp_path, keys_dir, mfa=values)


class Clock:
    def __init__(self, step: int):
        self.step = step


@pytest.fixture
def clock(monkeypatch) -> Clock:
    """The TOTP time step the provider sees (frozen; tests move it)."""
    c = Clock(int(time.time() // 30))
    monkeypatch.setattr(totp, "current_step", lambda now=None: c.step)
    return c


@pytest.fixture
def rp_factory(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True)

    return browsers(app, client_id, secret, CB)


# -- helpers ---------------------------------------------------------------------------


def location_path(resp) -> str:
    return urlsplit(resp.location or "").path


def location_query(resp) -> dict[str, list[str]]:
    return parse_qs(urlsplit(resp.location or "").query)


def finish(rp: MockRP, resp) -> dict:
    """Drive the rest of the sign-in ("Not now" to the backup-method recommendation)."""
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    if resp.status == 200 and path_of(resp) == "/mfa/recommend":
        resp = submit(rp, resp, button=("choice", "skip"))
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


def error_of(rp: MockRP, resp) -> str | None:
    """The error of an authorization response redirect (no page may be shown)."""
    assert resp.status == 302 and resp.location.startswith(CB), (resp.status, resp.location)
    result = rp.resume(resp)
    assert result.code is None
    return result.error


def csrf_of(rp: MockRP) -> str:
    page = get(rp, "/signin")
    form = next(f for f in parse_forms(page.text, page.url) if "csrf_token" in f.fields)
    return form.fields["csrf_token"]


def txn_of(resp) -> str:
    return parse_qs(urlsplit(resp.url).query)["txn"][0]


def events(app, name: str) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [{"user_id": e.user_id, "outcome": e.outcome, **(e.details or {})} for e in rows]


def factor_rows(app) -> list[tuple[str, str]]:
    from idp.extensions import db
    from idp.models import Factor

    with app.app_context():
        rows = db.session.execute(db.select(Factor).order_by(Factor.id)).scalars()
        return [(f.type, f.status) for f in rows]


def let_time_pass(app, rp: MockRP, seconds: int) -> None:
    """Move the browser session's sign-in times *seconds* into the past."""
    shift_session(app, rp, seconds)


def seed_totp(app, email: str = EMAIL) -> str:
    """An active authenticator app for *email*, written straight to the database."""
    from idp.extensions import db
    from idp.models import Factor, User
    from idp.models.base import utcnow

    with app.app_context():
        svc = app.extensions["idp"]
        user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one()
        secret = totp.new_secret()
        db.session.add(
            Factor(
                user_id=user.id,
                type="totp",
                label="Phone",
                status="active",
                secret_enc=svc.secrets.encrypt(secret, context=f"totp:{user.id}"),
                activated_at=utcnow(),
            )  # fmt: skip
        )
        db.session.commit()
        return secret


def signin_to_account(rp: MockRP) -> None:
    resp = walk(rp, get(rp, "/account/security"), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/account/security", resp.url


def totp_setup_page(rp: MockRP):
    """From the sign-in: walk to the set-up choice and open the authenticator app page."""
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup", resp.url
    page = get(rp, link(resp, "/mfa/setup/totp"))
    assert page.status == 200, (page.status, page.location)
    return page


def enroll(rp: MockRP, clock: Clock) -> str:
    """A full sign-in that sets up an authenticator app; returns its secret."""
    page = totp_setup_page(rp)
    secret = setup_secret(page)
    resp = submit(rp, page, {"code": totp_code(secret, clock.step), "label": "Phone"})
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend", resp.url
    finish(rp, submit(rp, resp, button=("choice", "skip")))
    return secret


# -- "Remind me later" -----------------------------------------------------------------


@pytest.mark.parametrize("mfa", [{"enforce_from": Days(10)}])
def test_remind_me_later_before_the_enforcement_date(app, rp_factory):
    rp = rp_factory()
    page = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/setup", page.url
    assert "10 days left" in page.text
    date = dt.date.fromisoformat(day(10)).strftime("%B %-d, %Y")
    assert f"required from {date}" in page.text
    form = next(f for f in parse_forms(page.text, page.url) if f.action.endswith("/mfa/postpone"))
    assert "Remind me later" in page.text
    txn = txn_of(page)
    assert form.fields["txn"] == txn

    # A forged "remind me later" (no CSRF token) is refused and postpones nothing.
    forged = rp.transport.request("POST", f"{ISSUER}/mfa/postpone", data={"txn": txn})
    assert forged.status == 400
    assert events(app, "mfa.postponed") == []
    again = get(rp, f"/mfa/setup?txn={txn}")
    assert "Remind me later" in again.text

    data = form.submit_data()
    resp = rp.submit_form(form)
    assert resp.status == 302 and location_path(resp) == "/authorize/resume", resp.location
    claims = finish(rp, resp)
    assert claims["acr"] == AAL1
    assert claims["amr"] == ["pwd"]
    [postponed] = events(app, "mfa.postponed")
    assert postponed["days_left"] == 10
    assert factor_rows(app) == []

    # Replaying the POST for the finished sign-in, or for a made-up one, is a 400 page.
    replay = rp.transport.request("POST", f"{ISSUER}/mfa/postpone", data=data)
    assert replay.status == 400 and "expired" in replay.text
    unknown = rp.transport.request("POST", f"{ISSUER}/mfa/postpone", data={**data, "txn": "x" * 32})
    assert unknown.status == 400 and "expired" in unknown.text
    assert len(events(app, "mfa.postponed")) == 1

    # The next sign-in asks again (postponing lasts one sign-in).
    rp2 = rp_factory()
    page = walk(rp2, rp2.start(), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/setup" and "Remind me later" in page.text


@pytest.mark.parametrize("mfa", [{"enforce_from": Days(-1)}, {"enforce_from": Days(0)}, {}])
def test_no_postponing_once_enforced(app, rp_factory):
    rp = rp_factory()
    page = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/setup", page.url
    assert "Remind me later" not in page.text and "days left" not in page.text
    assert not [f for f in parse_forms(page.text, page.url) if "/mfa/postpone" in f.action]

    txn = txn_of(page)
    data = {"txn": txn, "csrf_token": csrf_of(rp)}
    resp = rp.transport.request("POST", f"{ISSUER}/mfa/postpone", data=data)
    assert resp.status == 400
    assert "required" in resp.text
    [refused] = events(app, "mfa.postpone_refused")
    assert refused["outcome"] == "failure" and refused["user_id"] is not None
    assert events(app, "mfa.postponed") == []
    # The sign-in still stops at set-up.
    resp = walk(rp, get(rp, f"/authorize/resume?txn={txn}"), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup"


# -- safe enrollment -------------------------------------------------------------------


def test_first_factor_needs_a_recent_password(app, rp_factory, clock):
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup"
    txn = txn_of(resp)
    setup_link = link(resp, "/mfa/setup/totp")

    let_time_pass(app, rp, WINDOW + 1)
    resp = get(rp, setup_link)
    assert resp.status == 302 and location_path(resp) == "/signin", resp.location
    assert location_query(resp) == {"txn": [txn], "reauth": ["1"]}
    page = get(rp, resp.location)
    assert "enter your password again" in page.text
    assert f'value="{EMAIL}"' in page.text
    assert factor_rows(app) == []

    resp = walk(rp, page, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup" and txn_of(resp) == txn
    page = get(rp, link(resp, "/mfa/setup/totp"))
    assert page.status == 200
    secret = setup_secret(page)
    resp = submit(rp, page, {"code": totp_code(secret, clock.step)})
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    claims = finish(rp, submit(rp, resp, button=("choice", "skip")))
    assert claims["acr"] == AAL2
    assert factor_rows(app) == [("totp", "active")]


def test_totp_enrollment_needs_a_current_code(app, rp_factory, clock):
    rp = rp_factory()
    page = totp_setup_page(rp)
    secret = setup_secret(page)
    good = totp_code(secret, clock.step)
    wrong = f"{(int(good) + 1) % 10**6:06d}"

    resp = submit(rp, page, {"code": wrong, "label": "Phone"})
    assert resp.status == 400 and "did not match" in resp.text
    assert setup_secret(resp) == secret  # the same key, to try again
    assert factor_rows(app) == []
    for old in (clock.step - 2, clock.step - 3, clock.step + 2):
        resp = submit(rp, resp, {"code": totp_code(secret, old), "label": "Phone"})
        assert resp.status == 400, old
        assert factor_rows(app) == []
    assert len(events(app, "mfa.enroll_failed")) == 4
    assert events(app, "mfa.factor_added") == []

    resp = submit(rp, resp, {"code": totp_code(secret, clock.step - 1), "label": "Phone"})
    assert resp.status == 302  # one step of drift is allowed
    assert factor_rows(app) == [("totp", "active")]


@pytest.mark.parametrize("mfa", [{"max_totp_per_user": 1}])
def test_at_most_max_totp_per_user_authenticator_apps(app, rp_factory, clock):
    rp = rp_factory()
    signin_to_account(rp)
    page = get(rp, "/mfa/setup/totp?next=account")
    secret = setup_secret(page)
    assert submit(rp, page, {"code": totp_code(secret, clock.step)}).status == 302
    let_time_pass(app, rp, 5)

    resp = get(rp, "/mfa/setup/totp?next=account")
    assert resp.status == 409
    assert "Cannot add another authenticator app" in resp.text and "most allowed" in resp.text
    resp = rp.transport.request("POST", f"{ISSUER}/mfa/setup/totp?next=account",
                                data={"csrf_token": csrf_of(rp), "code": "123456"})  # fmt: skip
    assert resp.status in (400, 409)
    assert factor_rows(app) == [("totp", "active")]


# -- the TOTP challenge ----------------------------------------------------------------


def test_totp_challenge_refuses_wrong_reused_and_out_of_window_codes(app, rp_factory, clock):
    secret = enroll(rp_factory(), clock)  # enrolled with the code of clock.step
    rp = rp_factory()
    page = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(page) == "/mfa/challenge"

    good = totp_code(secret, clock.step + 1)
    wrong = f"{(int(good) + 1) % 10**6:06d}"
    cases = [
        (wrong, "not right"),
        (totp_code(secret, clock.step), "already used"),  # the enrollment code, same step
        (totp_code(secret, clock.step - 1), "already used"),  # older than the used step
        (totp_code(secret, clock.step + 3), "not right"),
        (totp_code(secret, clock.step - 3), "not right"),
        ("12345", "not right"),
    ]
    for code, message in cases:
        page = submit(rp, page, {"code": code})
        assert page.status == 400, code
        assert message in page.text, (code, page.text[:300])
        assert path_of(page) == "/mfa/challenge"
    failures = events(app, "mfa.failure")
    assert len(failures) == len(cases)
    assert [f["reason"] for f in failures][:3] == [
        "totp mismatch",
        "totp step reused",
        "totp step reused",
    ]

    clock.step += 1
    resp = submit(rp, page, {"code": good})
    assert resp.status == 302
    claims = finish(rp, resp)
    assert claims["acr"] == AAL2 and "otp" in claims["amr"]
    # The same code again, in a third browser, is a replay.
    rp3 = rp_factory()
    page = walk(rp3, rp3.start(), email=EMAIL, password=PASSWORD)
    page = submit(rp3, page, {"code": good})
    assert page.status == 400 and "already used" in page.text


# -- step-up and prompt=none -----------------------------------------------------------


@pytest.mark.parametrize("mfa", [{"required": False}])
def test_step_up_asks_only_for_the_second_factor(app, rp_factory, clock):
    secret = seed_totp(app)
    rp = rp_factory()
    sessions = app.extensions["idp"].sessions
    # The first sign-in happened a while ago.
    sessions.clock = lambda: time.time() - 120
    try:
        claims = finish(rp, rp.start())
    finally:
        sessions.clock = time.time
    assert claims["acr"] == AAL1 and claims["amr"] == ["pwd"]
    first_auth = claims["auth_time"]

    # prompt=none cannot show the challenge.
    assert error_of(rp, rp.start(acr_values=MFA, prompt="none")) == "login_required"

    resp = rp.start(acr_values=MFA)
    assert resp.status == 302 and location_path(resp) == "/mfa/challenge", resp.location
    page = get(rp, resp.location)
    assert "password" not in [n for f in parse_forms(page.text, page.url) for n in f.fields]
    resp = submit(rp, page, {"code": totp_code(secret, clock.step)})
    assert resp.status == 302
    stepped = finish(rp, resp)
    assert stepped["acr"] == MFA
    # auth_time is the oldest method the assertion rests on: the earlier password.
    assert stepped["auth_time"] == first_auth
    assert set(stepped["amr"]) >= {"pwd", "otp", "mfa"}
    assert stepped["sid"] == claims["sid"]

    # max_age=0 asks for the password again, even right after the step-up.
    resp = rp.start(max_age=0)
    assert resp.status == 302 and location_path(resp) == "/signin", resp.location
    again = finish(rp, resp)
    assert again["auth_time"] >= stepped["auth_time"]


def test_prompt_none_when_a_challenge_is_needed(app, rp_factory):
    seed_totp(app)
    rp = rp_factory()
    page = get(rp, "/signin")  # password only
    resp = submit(rp, page, {"email": EMAIL, "password": PASSWORD})
    assert resp.status == 302
    assert error_of(rp, rp.start(prompt="none")) == "login_required"
    # Without prompt=none the same request goes to the challenge.
    resp = rp.start()
    assert location_path(resp) == "/mfa/challenge"


def test_prompt_none_when_set_up_is_needed(app, rp_factory):
    rp = rp_factory()
    signin_to_account(rp)  # password only, no factor yet
    assert error_of(rp, rp.start(prompt="none")) == "interaction_required"
    resp = rp.start()
    assert location_path(resp) == "/mfa/setup"
