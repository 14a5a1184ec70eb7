"""Recovery codes end to end: creation (never first), showing once, download, hashing at
rest, signing in with one, single use under concurrency, regeneration, running out, and
the shared lockout."""

from __future__ import annotations

import json
import os
import re
import threading
import time

import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import (
    browsers,
    get,
    link,
    path_of,
    setup_secret,
    submit,
    totp_code,
    walk,
)

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
CODE_RE = re.compile(r"<code>([0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4})</code>")
CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"required": True, "enforce_from": ""})


@pytest.fixture
def rp_factory(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True)

    return browsers(app, client_id, secret, CB)


# -- helpers ---------------------------------------------------------------------------


def sign_in(rp: MockRP):
    return walk(rp, rp.start(), email=EMAIL, password=PASSWORD)


def complete(rp: MockRP, resp) -> dict:
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    if resp.status == 200 and path_of(resp) == "/mfa/recommend":
        resp = walk(rp, submit(rp, resp, button=("choice", "skip")), email=EMAIL, password=PASSWORD)
    assert resp.is_redirect and resp.location.startswith(CB), (
        resp.status,
        resp.url,
        resp.text[:300],
    )
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


def codes_on(page) -> list[str]:
    return CODE_RE.findall(page.text)


def create_codes(rp: MockRP, page):
    """Press "Create codes": the POST redirects (so a reload cannot swap the set) to the
    page that shows them."""
    resp = submit(rp, page)
    assert resp.status == 302 and "/mfa/recovery/codes" in resp.location, (resp.status, resp.url)
    return get(rp, resp.location)


def enroll_totp(rp: MockRP, resp) -> tuple[str, object]:
    assert path_of(resp) == "/mfa/setup", resp.url
    page = get(rp, link(resp, "/mfa/setup/totp"))
    secret = setup_secret(page)
    return secret, submit(rp, page, {"code": totp_code(secret), "label": "Phone"})


def totp_then_codes(rp_factory) -> tuple[MockRP, str, list[str]]:
    """Forced set-up: TOTP, then recovery codes from the recommendation, then tokens."""
    rp = rp_factory()
    secret, resp = enroll_totp(rp, sign_in(rp))
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"
    page = get(rp, link(resp, "/mfa/setup/recovery"))
    assert page.status == 200, page.location
    page = create_codes(rp, page)
    codes = codes_on(page)
    assert len(codes) == 10
    resp = submit(rp, page)  # "I saved my codes"
    complete(rp, resp)
    return rp, secret, codes


def next_totp(secret: str) -> str:
    """A code for the next time step (the enrollment used the current one)."""
    return totp_code(secret, int(time.time() // 30) + 1)


def at_recovery_challenge(rp_factory):
    rp = rp_factory()
    resp = sign_in(rp)
    assert path_of(resp) == "/mfa/challenge", resp.url
    assert 'name="kind" value="totp"' in resp.text  # the app is the default, not the codes
    page = get(rp, link(resp, "kind=recovery"))
    assert page.status == 200 and 'name="kind" value="recovery"' in page.text, page.text[:300]
    return rp, page


def user_row(app):
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        db.session.expunge(user)
        return user


def recovery_factor(app) -> dict | None:
    from idp.extensions import db
    from idp.models import Factor

    uid = user_row(app).id
    with app.app_context():
        f = db.session.execute(
            db.select(Factor).filter_by(user_id=uid, type="recovery")
        ).scalar_one_or_none()
        return None if f is None else {"id": f.id, "status": f.status, "last": f.last_used_at}


def remaining(app) -> int:
    with app.app_context():
        from idp.extensions import db
        from idp.models import User

        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        return app.extensions["idp.mfa"].registry["recovery"].remaining(user)


def events(app, name: str) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    uid = user_row(app).id
    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name, user_id=uid).order_by(AuditEvent.id)
        ).scalars()
        return [{"outcome": e.outcome, **(e.details or {})} for e in rows]


def outbox(app) -> list[dict]:
    path = app.extensions["idp"].settings.delivery.outbox
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def service_verify(app, code: str):
    """Verify a recovery code through the MFA service, as the challenge page does."""
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        return app.extensions["idp.mfa"].verify(user, "recovery", {"code": code}, binding="x")


# -- creation ------------------------------------------------------------------------------


def test_codes_are_never_first_then_offered_shown_once_and_downloadable(app, rp_factory):
    rp = rp_factory()
    resp = sign_in(rp)
    assert path_of(resp) == "/mfa/setup"
    assert "/mfa/setup/recovery" not in resp.text  # not offered as the first factor
    txn = re.search(r"txn=([\w-]+)", link(resp, "/mfa/setup/totp")).group(1)
    refused = get(rp, f"/mfa/setup/recovery?txn={txn}")
    assert refused.status == 400
    assert "Choose another method first" in refused.text
    signin = get(rp, "/signin")  # any page of this browser carries a valid CSRF token
    csrf = parse_forms(signin.text, signin.url)[0].fields["csrf_token"]
    posted = rp.transport.request(
        "POST", "http://localhost/mfa/setup/recovery", data={"csrf_token": csrf, "txn": txn}
    )
    assert posted.status == 400 and "Choose another method first" in posted.text
    assert recovery_factor(app) is None and remaining(app) == 0

    secret, resp = enroll_totp(rp, resp)
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/recommend"
    assert "/mfa/setup/recovery" in resp.text
    page = get(rp, link(resp, "/mfa/setup/recovery"))
    assert page.status == 200 and codes_on(page) == []
    page = create_codes(rp, page)
    codes = codes_on(page)
    assert len(codes) == 10 and len(set(codes)) == 10
    assert all(set(c.replace("-", "")) <= CROCKFORD for c in codes)
    assert "only time they are shown" in page.text
    assert page.headers.get("Cache-Control") == "no-store"

    download = get(rp, link(page, "/mfa/recovery/download"))
    assert download.status == 200
    assert download.content_type == "text/plain"
    assert download.headers["Content-Disposition"].startswith("attachment")
    assert re.findall(r"^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$", download.text, re.M) == codes
    assert get(rp, "/mfa/recovery/download").text == download.text  # until confirmed

    resp = submit(rp, page)  # "I saved my codes"
    assert resp.is_redirect
    gone = get(rp, "/mfa/recovery/download")
    assert gone.status == 410
    assert not any(c in gone.text for c in codes)
    claims = complete(rp, resp)
    assert claims["acr"] == AAL2
    assert recovery_factor(app)["status"] == "active" and remaining(app) == 10
    assert len(events(app, "mfa.recovery_codes_created")) == 1
    assert any("New recovery codes" in m["subject"] for m in outbox(app))

    # Shown once: the set-up page never shows them again, it offers new ones instead.
    again = get(rp, "/mfa/setup/recovery?next=account")
    assert again.status == 200, again.location
    assert codes_on(again) == [] and "old codes stop working" in again.text


def test_code_download_is_not_cacheable(app, rp_factory):
    rp = rp_factory()
    _, resp = enroll_totp(rp, sign_in(rp))
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    page = create_codes(rp, get(rp, link(resp, "/mfa/setup/recovery")))
    assert len(codes_on(page)) == 10
    # Reloading shows the same set: nothing is regenerated behind the user's back.
    assert codes_on(get(rp, page.url)) == codes_on(page)
    download = get(rp, link(page, "/mfa/recovery/download"))
    assert download.status == 200
    assert "no-store" in download.headers.get("Cache-Control", "")


def test_codes_are_stored_only_hashed(app, rp_factory):
    from idp.extensions import db
    from idp.models import AuditEvent, RecoveryCode

    _, _, codes = totp_then_codes(rp_factory)
    forms = {c for c in codes} | {c.replace("-", "") for c in codes}
    forms |= {f.lower() for f in forms}
    with app.app_context():
        rows = db.session.execute(db.select(RecoveryCode)).scalars().all()
        assert len(rows) == 10
        dump = " ".join(
            repr({col.name: getattr(r, col.name) for col in RecoveryCode.__table__.columns})
            for r in rows
        )
        assert all(re.fullmatch(r"[0-9a-f]{64}", r.code_hash) for r in rows)
        assert len({r.code_hash for r in rows}) == 10
        audit_dump = " ".join(
            repr(e.details) for e in db.session.execute(db.select(AuditEvent)).scalars()
        )
    assert not any(f in dump for f in forms)
    assert not any(f in audit_dump for f in forms)
    assert not any(f in json.dumps(outbox(app)) for f in forms)


# -- signing in with a code ----------------------------------------------------------------


def test_sign_in_with_a_recovery_code_once(app, rp_factory):
    _, _, codes = totp_then_codes(rp_factory)
    sent = len(outbox(app))

    rp, page = at_recovery_challenge(rp_factory)
    resp = submit(rp, page, {"code": codes[0]})
    assert resp.is_redirect, (resp.status, resp.text[:300])
    claims = complete(rp, resp)
    assert claims["acr"] == AAL2
    assert claims["amr"] == ["lookup", "mfa", "pwd"]
    assert remaining(app) == 9
    mail = outbox(app)[sent:]
    assert len(mail) == 1 and mail[0]["to"] == EMAIL
    assert "recovery code was used" in mail[0]["subject"].lower()
    assert "9 unused codes remain" in mail[0]["text"]
    assert [e["factor"] for e in events(app, "mfa.success")] == ["recovery"]

    # The same code again, in another browser: refused and counted.
    rp, page = at_recovery_challenge(rp_factory)
    resp = submit(rp, page, {"code": codes[0]})
    assert resp.status == 400
    assert "not right or was already used" in resp.text
    assert user_row(app).mfa_failures == 1
    failed = events(app, "mfa.failure")
    assert len(failed) == 1 and failed[0]["factor"] == "recovery"
    assert failed[0]["reason"] == "unknown or used"
    assert remaining(app) == 9
    assert len(outbox(app)) == sent + 1  # no "used" mail for a refused code

    # Lower case with spaces instead of dashes is the same code.
    typed = codes[1].lower().replace("-", " ")
    resp = submit(rp, resp, {"code": typed})
    assert resp.is_redirect, (resp.status, resp.text[:300])
    assert complete(rp, resp)["amr"] == ["lookup", "mfa", "pwd"]
    assert user_row(app).mfa_failures == 0
    assert remaining(app) == 8
    assert "8 unused codes remain" in outbox(app)[-1]["text"]


def test_concurrent_use_of_one_code_succeeds_once(app, rp_factory):
    from idp.extensions import db
    from idp.mfa.base import InvalidResponse
    from idp.models import User

    _, _, codes = totp_then_codes(rp_factory)
    uid = user_row(app).id

    def burn(code: str, barrier: threading.Barrier, out: list) -> None:
        with app.app_context():
            user = db.session.get(User, uid)
            service = app.extensions["idp.mfa"]
            barrier.wait(timeout=10)
            try:
                service.verify(user, "recovery", {"code": code}, binding="x")
                out.append("ok")
            except InvalidResponse:
                out.append("refused")
            except Exception as exc:  # noqa: BLE001 - any other outcome fails the test
                out.append(repr(exc))

    for code in codes[:3]:
        out: list[str] = []
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=burn, args=(code, barrier, out)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(out) == ["ok", "refused"], out
    assert remaining(app) == 7
    assert len(events(app, "mfa.success")) == 3
    assert [e["reason"] for e in events(app, "mfa.failure")] == ["unknown or used"] * 3


def test_regenerating_needs_a_recent_factor_and_replaces_the_old_set(app, rp_factory):
    _, secret, old = totp_then_codes(rp_factory)

    rp = rp_factory()  # signed in to the account page with the password only
    resp = get(rp, "/signin?next=account")
    resp = submit(rp, resp, {"email": EMAIL, "password": PASSWORD})
    assert resp.is_redirect and resp.location.endswith("/account/security")
    # A password alone does not open the security page of a user who has factors.
    account = get(rp, "/account/security")
    assert account.status == 302 and account.location.endswith("/mfa/challenge?next=account")
    challenge_page = get(rp, account.location)

    # Neither showing nor posting the form works without a recent second factor.
    csrf = parse_forms(challenge_page.text, challenge_page.url)[0].fields["csrf_token"]
    posted = rp.transport.request(
        "POST", "http://localhost/mfa/setup/recovery", data={"csrf_token": csrf, "next": "account"}
    )
    assert posted.status == 302 and "/mfa/challenge" in posted.location
    assert "reauth=1" in posted.location
    assert len(events(app, "mfa.recovery_codes_created")) == 1
    resp = get(rp, "/mfa/setup/recovery?next=account")
    assert resp.status == 302 and "/mfa/challenge" in resp.location and "reauth=1" in resp.location

    challenge = get(rp, resp.location)
    assert 'name="kind" value="totp"' in challenge.text
    resp = submit(rp, challenge, {"code": next_totp(secret)})
    assert resp.is_redirect and resp.location.endswith("/account/security"), resp

    page = get(rp, "/mfa/setup/recovery?next=account")
    assert page.status == 200, (page.status, page.location)
    assert "old codes stop working" in page.text
    page = create_codes(rp, page)
    new = codes_on(page)
    assert len(new) == 10 and not set(new) & set(old)
    resp = submit(rp, page)  # "I saved my codes"
    assert resp.is_redirect and "/account/security" in resp.location
    assert len(events(app, "mfa.recovery_codes_created")) == 2
    assert remaining(app) == 10

    rp, page = at_recovery_challenge(rp_factory)
    resp = submit(rp, page, {"code": old[0]})
    assert resp.status == 400 and user_row(app).mfa_failures == 1
    resp = submit(rp, resp, {"code": new[0]})
    assert resp.is_redirect, (resp.status, resp.text[:300])
    assert "lookup" in complete(rp, resp)["amr"]
    assert remaining(app) == 9


def test_last_code_leaves_the_factor_used_up(app, rp_factory):
    _, _, codes = totp_then_codes(rp_factory)
    for code in codes[:9]:
        service_verify(app, code)
    assert remaining(app) == 1
    assert recovery_factor(app)["status"] == "active"

    rp, page = at_recovery_challenge(rp_factory)
    resp = submit(rp, page, {"code": codes[9]})
    assert resp.is_redirect, (resp.status, resp.text[:300])
    assert "lookup" in complete(rp, resp)["amr"]
    assert remaining(app) == 0
    assert recovery_factor(app)["status"] == "used_up"
    assert "0 unused codes remain" in outbox(app)[-1]["text"]
    with app.app_context():
        from idp.extensions import db
        from idp.models import User

        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        facts = app.extensions["idp.mfa"].facts(user)
    assert "recovery" not in facts.factor_types
    assert facts.factor_types == frozenset({"totp"}) and facts.factor_count == 1

    # The challenge no longer offers recovery codes, and asking for them shows the app.
    rp = rp_factory()
    resp = sign_in(rp)
    assert path_of(resp) == "/mfa/challenge"
    assert "kind=recovery" not in resp.text
    page = get(rp, resp.url + "&kind=recovery")
    assert 'name="kind" value="totp"' in page.text


# -- lockout -------------------------------------------------------------------------------


class TestLockout:
    @pytest.fixture
    def settings(self, tmp_path, keys_dir):
        return make_settings(
            tmp_path, keys_dir, mfa={"required": True, "enforce_from": "", "max_failures": 3}
        )

    def test_three_wrong_codes_pause_the_second_step(self, app, rp_factory):
        _, secret, codes = totp_then_codes(rp_factory)
        sent = len(outbox(app))
        rp, page = at_recovery_challenge(rp_factory)

        resp = submit(rp, page, {"code": "0000-0000-0000"})
        assert resp.status == 400 and user_row(app).mfa_failures == 1
        resp = submit(rp, resp, {"code": "not a code"})
        assert resp.status == 400 and user_row(app).mfa_failures == 2
        locked = submit(rp, resp, {"code": "ZZZZ-ZZZZ-ZZZZ"})
        assert locked.status == 429
        assert 0 < int(locked.headers["Retry-After"]) <= 600
        assert "Verification is paused" in locked.text
        assert "too many failed attempts" in locked.text.lower()
        assert user_row(app).mfa_locked_until is not None

        # The right code is refused while paused, and is not burned.
        refused = submit(rp, resp, {"code": codes[0]})
        assert refused.status == 429 and "Retry-After" in refused.headers
        assert remaining(app) == 10
        assert events(app, "mfa.success") == []
        assert get(rp, page.url).status == 429
        lockouts = events(app, "mfa.lockout")
        assert len(lockouts) == 1 and lockouts[0]["failures"] == 3
        assert len(events(app, "mfa.failure")) == 3
        mail = outbox(app)[sent:]
        assert len(mail) == 1 and "paused" in mail[0]["subject"].lower()
        assert mail[0]["to"] == EMAIL
        # The counter is shared: the authenticator app is paused too.
        totp_page = get(rp, page.url.replace("kind=recovery", "kind=totp"))
        assert totp_page.status == 429

        from idp.extensions import db
        from idp.models import User

        with app.app_context():
            user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
            app.extensions["idp.mfa"].unlock(user, actor="test")
        assert user_row(app).mfa_locked_until is None and user_row(app).mfa_failures == 0
        assert events(app, "user.unlocked")[0]["actor"] == "test"

        page = get(rp, page.url)
        assert page.status == 200
        resp = submit(rp, page, {"code": codes[0]})
        assert resp.is_redirect, (resp.status, resp.text[:300])
        assert "lookup" in complete(rp, resp)["amr"]
        assert remaining(app) == 9


def test_new_codes_during_a_challenge_do_not_count_as_a_passed_factor(app, rp_factory):
    """Creating recovery codes verifies nothing: inside a sign-in that asks for a factor
    within max_age, new codes (and "I saved my codes") must not satisfy the challenge."""
    from tests.integration.mfa_helpers import shift_session

    _, _, codes = totp_then_codes(rp_factory)
    # Sign in with a recovery code; two minutes pass.
    rp, page = at_recovery_challenge(rp_factory)
    complete(rp, submit(rp, page, {"code": codes[0]}))
    shift_session(app, rp, 120)

    # A request for a factor at most 60 s old: password again, then the challenge.
    resp = walk(rp, rp.start(acr_values="urn:idp:acr:mfa", max_age="60"),
                email=EMAIL, password=PASSWORD)  # fmt: skip
    assert path_of(resp) == "/mfa/challenge", resp.url
    txn = re.search(r"txn=([\w-]+)", resp.url).group(1)
    page = get(rp, f"/mfa/setup/recovery?txn={txn}")
    assert page.status == 200, (page.status, page.location)
    page = create_codes(rp, page)
    resp = submit(rp, page)  # "I saved my codes"
    resp = walk(rp, resp, email=EMAIL, password=PASSWORD)
    # Still at the challenge: no code was issued to the client.
    assert not (resp.is_redirect and resp.location.startswith(CB)), resp.location
    assert path_of(resp) == "/mfa/challenge", resp.url
