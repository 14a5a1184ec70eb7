"""Push approval with number matching, end to end through the sign-in transaction,
with the companion app (clients.verify) talking to the same provider."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from clients.mockrp import MockRP
from clients.verify import api as verify_api
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import browsers, get, link, path_of, submit, walk
from tests.integration.push_helpers import (
    app_transport,
    continue_form,
    enroll_push,
    enroll_uri,
    number_on,
    send_push,
    status,
)

EMAIL = "ada@example.com"
CB = "https://rp.example.com/cb"
AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return make_settings(tmp_path, keys_dir, mfa={"required": True, "enforce_from": ""})


@pytest.fixture
def rp_factory(app, make_client, make_user):
    make_user()
    client_id, secret = make_client(first_party=True, name="Connexion")
    return browsers(app, client_id, secret, CB)


def finish(rp: MockRP, resp):
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    assert result.code, result
    tokens = rp.exchange_code(result)
    return rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)


@pytest.fixture
def enrolled(app, rp_factory):
    """A user whose first factor is push: returns the app's API client."""
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/setup"
    account, resp = enroll_push(app, rp, resp)
    # Two factors now (the device and its linked codes): no "add another" page.
    claims = finish(rp, resp)
    assert claims["acr"] == AAL2 and claims["amr"] == ["mfa", "pwd", "swk"]
    return verify_api.Client(account, transport=app_transport(app))


def push_page(rp_factory):
    """A new browser signed in with the password, on the push challenge with a request sent."""
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    assert path_of(resp) == "/mfa/challenge", resp.url
    assert "Send request" in resp.text  # push is the default (the most recently used)
    return rp, send_push(rp, resp)


def user_row(app):
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        return db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()


def test_enroll_sign_in_approve_with_the_right_number_gets_tokens(app, rp_factory, enrolled):
    rp, page = push_page(rp_factory)
    number = number_on(page)
    [challenge] = enrolled.pending()
    assert number in challenge["choices"] and len(set(challenge["choices"])) == 3
    assert challenge["client"] == "Connexion" and challenge["ip"] == "127.0.0.1"
    assert status(rp) == {
        "status": "pending",
        "number": number,
        "expires_in": pytest.approx(120, abs=2),
    }
    assert enrolled.approve(challenge["id"], number) == {"status": "approved"}
    assert status(rp)["status"] == "approved"
    resp = rp.submit_form(continue_form(page))
    claims = finish(rp, resp)
    assert claims["acr"] == AAL2
    assert claims["amr"] == ["mfa", "pwd", "swk"]


def test_the_linked_codes_work_as_an_authenticator_app(app, rp_factory, enrolled):
    from clients.verify import totp

    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    page = get(rp, link(resp, "kind=totp"))
    resp = submit(rp, page, {"code": totp.code(enrolled.account.totp["secret"])})
    assert finish(rp, resp)["amr"] == ["mfa", "otp", "pwd"]


def test_continue_before_approval_is_not_a_failure(app, rp_factory, enrolled):
    rp, page = push_page(rp_factory)
    resp = rp.submit_form(continue_form(page))
    assert resp.status == 409 and "Not approved yet" in resp.text
    assert user_row(app).mfa_failures == 0


def test_wrong_number_counts_as_a_failure_and_ends_the_request(app, rp_factory, enrolled):
    rp, page = push_page(rp_factory)
    number = number_on(page)
    [challenge] = enrolled.pending()
    wrong = next(n for n in challenge["choices"] if n != number)
    with pytest.raises(verify_api.AppError) as err:
        enrolled.approve(challenge["id"], wrong)
    assert err.value.status == 400 and err.value.code == "wrong_number"
    assert user_row(app).mfa_failures == 1
    assert status(rp)["status"] == "wrong_number"
    # The right number afterwards is too late: the request ended.
    with pytest.raises(verify_api.AppError) as err:
        enrolled.approve(challenge["id"], number)
    assert err.value.status == 409
    resp = rp.submit_form(continue_form(page))
    assert resp.status == 400 and "wrong number was chosen" in resp.text
    assert "did not match" in rp.transport.request("GET", page.url).text


def test_deny_shows_a_clear_message_and_offers_another_way(app, rp_factory, enrolled):
    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    assert enrolled.deny(challenge["id"]) == {"status": "denied"}
    again = rp.transport.request("GET", page.url)
    assert "denied in the app" in again.text
    assert "Send a new request" in again.text
    assert "Authenticator app" in again.text  # try another way
    assert user_row(app).mfa_failures == 0


def test_deny_report_locks_push_emails_and_audits(app, rp_factory, enrolled, tmp_path):
    from idp.extensions import db
    from idp.models import AuditEvent

    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    assert enrolled.deny(challenge["id"], report=True) == {"status": "reported"}
    again = rp.transport.request("GET", page.url)
    assert "paused" in again.text
    resp = rp.submit(again, button=("action", "send")) if 'value="send"' in again.text else None
    assert resp is None  # no way to send while locked
    outbox = [json.loads(line) for line in (tmp_path / "outbox.jsonl").read_text().splitlines()]
    assert any("you reported was blocked" in m["subject"] for m in outbox)
    with app.app_context():
        events = [e.event for e in db.session.execute(db.select(AuditEvent)).scalars()]
    assert "mfa.push_reported" in events
    # The help desk's unlock turns push back on.
    with app.app_context():
        from flask import current_app

        mfa = current_app.extensions["idp.mfa"]
        user = db.session.merge(user_row(app))
        mfa.unlock(user, actor="helpdesk")
        assert not mfa.registry["push"].service.is_locked(user)


def test_timeout_shows_expired_and_a_new_request_works(app, rp_factory, enrolled):
    from idp.services import services

    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    with app.app_context():
        store = services().store
        raw = json.loads(store.get(f"push:ch:{challenge['id']}"))
        raw["expires"] = int(time.time()) - 1  # as if two minutes had passed
        store.set(f"push:ch:{challenge['id']}", json.dumps(raw).encode(), 60)
    assert status(rp)["status"] == "expired"
    with pytest.raises(verify_api.AppError) as err:
        enrolled.approve(challenge["id"], number_on(page))
    assert err.value.status == 410
    again = rp.transport.request("GET", page.url)
    assert "This request expired. Send a new one." in again.text
    page = send_push(rp, again)
    [challenge] = enrolled.pending()
    enrolled.approve(challenge["id"], number_on(page))
    assert finish(rp, rp.submit_form(continue_form(page)))["acr"] == AAL2


def test_enrollment_link_expired_or_reused_is_refused(app, rp_factory):
    from idp.security.crypto import hash_token
    from idp.services import services

    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    page = get(rp, link(resp, "/mfa/setup/push"))
    uri = enroll_uri(page)
    token = uri.rsplit("token=", 1)[1]
    with app.app_context():
        services().store.expire(f"push:enroll:{hash_token(token)}", 1)
    time.sleep(1.2)
    with pytest.raises(verify_api.AppError) as err:
        verify_api.enroll(uri, name="Late", transport=app_transport(app))
    assert err.value.status == 410 and err.value.code == "expired_token"
    # A fresh page gives a fresh link, which works once.
    page = get(rp, link(resp, "/mfa/setup/push"))
    uri = enroll_uri(page)
    verify_api.enroll(uri, name="First", transport=app_transport(app))
    with pytest.raises(verify_api.AppError) as err:
        verify_api.enroll(uri, name="Second", transport=app_transport(app))
    assert err.value.status == 410


def test_approving_another_users_challenge_is_refused(app, rp_factory, enrolled, make_user):
    """Bob's device cannot answer Ada's request, even knowing its id."""
    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    make_user("bob@example.com")
    bob = rp_factory()
    resp = walk(bob, bob.start(), email="bob@example.com", password=PASSWORD)
    bob_account, _ = enroll_push(app, bob, resp, name="Bob's phone")
    bob_app = verify_api.Client(bob_account, transport=app_transport(app))
    with pytest.raises(verify_api.AppError) as err:
        bob_app.approve(challenge["id"], number_on(page))
    assert err.value.status == 404 and err.value.code == "unknown_challenge"
    assert status(rp)["status"] == "pending"


def test_removed_device_cannot_approve(app, rp_factory, enrolled):
    from idp.extensions import db
    from idp.models import Factor

    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    with app.app_context():
        device = db.session.execute(
            db.select(Factor).filter_by(credential_id=enrolled.account.device_id)
        ).scalar_one()
        db.session.delete(device)
        db.session.commit()
    with pytest.raises(verify_api.AppError) as err:
        enrolled.approve(challenge["id"], number_on(page))
    assert err.value.status == 401 and err.value.code == "unknown_device"


def test_app_remove_refuses_the_last_method_then_removes(app, rp_factory, enrolled):
    with pytest.raises(verify_api.AppError) as err:
        enrolled.remove()
    assert err.value.status == 409 and err.value.code == "last_factor"
    from idp.extensions import db
    from idp.models import Factor

    with app.app_context():
        uid = user_row(app).id
        db.session.add(
            Factor(
                user_id=uid,
                type="webauthn",
                label="Key",
                status="active",
                credential_id="k1",
                public_key=b"x",
            )
        )
        db.session.commit()
    assert enrolled.remove() == {"status": "removed"}
    with app.app_context():
        types = sorted(
            f.type for f in db.session.execute(db.select(Factor).filter_by(user_id=uid)).scalars()
        )
    assert types == ["webauthn"]  # the device and its linked codes are gone
    with pytest.raises(verify_api.AppError) as err:
        enrolled.pending()
    assert err.value.status == 401


def test_a_flood_of_push_requests_is_limited(app, rp_factory, enrolled):
    rp, page = push_page(rp_factory)  # 1
    page = send_push(rp, page)  # 2
    page = send_push(rp, page)  # 3
    resp = rp.submit(page, button=("action", "send"))  # 4: over the limit
    assert resp.status == 429 and "Too many requests" in resp.text
    assert int(resp.headers["Retry-After"]) > 0
    # Only the latest request is pending: a new one replaced the old ones.
    assert len(enrolled.pending()) == 1


def test_store_losing_the_challenge_is_a_clear_failure_and_retry_works(app, rp_factory, enrolled):
    from idp.services import services

    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    with app.app_context():
        store = services().store
        keys = _push_keys(store)
        assert keys
        store.delete(*keys)  # what a store restart does to the challenge
    assert status(rp, challenge=challenge["id"])["status"] == "expired"
    with pytest.raises(verify_api.AppError) as err:
        enrolled.approve(challenge["id"], number_on(page))
    assert err.value.status in (404, 410)
    again = rp.transport.request("GET", page.url)
    assert "Send request" in again.text or "Send a new request" in again.text
    page = send_push(rp, again)
    [challenge] = enrolled.pending()
    enrolled.approve(challenge["id"], number_on(page))
    assert finish(rp, rp.submit_form(continue_form(page)))["acr"] == AAL2


def _push_keys(store) -> list[str]:
    """Bare names of the push keys in the store (memory or Redis)."""
    from idp.store import MemoryStore

    if isinstance(store, MemoryStore):
        prefix = store._prefix
        return [k[len(prefix) :] for k in store._data if k[len(prefix) :].startswith("push:")]
    prefix = store._prefix
    return [k.decode()[len(prefix) :] for k in store._client.scan_iter(match=f"{prefix}push:*")]


def test_memory_store_cleared_mid_challenge(app, backend, rp_factory, enrolled):
    """A restart of the in-memory store loses the session too: the browser is sent to
    sign in again, the app gets a clear error, and signing in again works."""
    if backend != "sqlite":
        pytest.skip("the in-memory store only")
    from idp.services import services

    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    with app.app_context():
        services().store._data.clear()
    with pytest.raises(verify_api.AppError) as err:
        enrolled.approve(challenge["id"], number_on(page))
    assert err.value.status in (404, 410)
    resp = rp.submit_form(continue_form(page))
    assert resp.status in (302, 400)
    rp, page = push_page(rp_factory)
    [challenge] = enrolled.pending()
    enrolled.approve(challenge["id"], number_on(page))
    assert finish(rp, rp.submit_form(continue_form(page)))["acr"] == AAL2


def test_out_of_band_status_by_handle(app, rp_factory, enrolled):
    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    sent = submit(rp, resp, button=("action", "send"))
    link_header = sent.headers["Link"]
    url = link_header.split(";")[0].strip("<>")
    assert url.startswith("http://localhost/push/v1/status/")
    other = app.test_client()  # no cookies: the handle is the credential
    body = other.get(url.replace("http://localhost", "")).get_json()
    [challenge] = enrolled.pending()
    assert body["status"] == "pending" and body["number"] in challenge["choices"]
    enrolled.approve(challenge["id"], body["number"])
    assert other.get(url.replace("http://localhost", "")).get_json() == {"status": "approved"}
    assert other.get("/push/v1/status/not-a-handle").get_json() == {"status": "expired"}


# -- signed app requests --------------------------------------------------------------


def _raw(app, method: str, path: str, token: str | None):
    headers = {"Authorization": f"Device {token}"} if token is not None else {}
    resp = app.test_client().open(path, method=method, base_url="http://localhost", headers=headers)
    return resp.status_code, resp.get_json(silent=True) or {}


def _sign(account, method: str, path: str, key=None, **claims):
    from clients.verify import device

    key = key or device.from_pem(account.private_key)
    base = device.request_claims(method, f"http://localhost{path}", sub=account.device_id)
    return device.sign(key, {"kid": account.device_id}, {**base, **claims})


def test_unsigned_requests_are_refused(app, enrolled):
    for token in (None, "", "not-a-jws"):
        status_code, body = _raw(app, "GET", "/push/v1/challenges", token)
        assert status_code == 401 and body["error"] in ("unsigned_request", "invalid_signature")
    resp = app.test_client().get("/push/v1/challenges", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 401 and resp.headers["WWW-Authenticate"] == "Device"


def test_badly_signed_requests_are_refused(app, enrolled):
    from clients.verify import device

    forged = _sign(enrolled.account, "GET", "/push/v1/challenges", key=device.generate("ES256"))
    assert _raw(app, "GET", "/push/v1/challenges", forged) == (
        401,
        {"error": "invalid_signature", "error_description": "bad signature"},
    )


def test_replayed_requests_are_refused(app, enrolled):
    token = _sign(enrolled.account, "GET", "/push/v1/challenges")
    assert _raw(app, "GET", "/push/v1/challenges", token)[0] == 200
    status_code, body = _raw(app, "GET", "/push/v1/challenges", token)
    assert status_code == 401 and body["error"] == "replayed_request"


def test_stale_or_misdirected_requests_are_refused(app, enrolled):
    stale = _sign(enrolled.account, "GET", "/push/v1/challenges", iat=int(time.time()) - 61)
    assert _raw(app, "GET", "/push/v1/challenges", stale)[1]["error"] == "stale_request"
    elsewhere = _sign(enrolled.account, "DELETE", "/push/v1/device")
    status_code, body = _raw(app, "GET", "/push/v1/challenges", elsewhere)
    assert status_code == 401 and body["error"] == "invalid_request_signature"
    # A signature meant for one challenge cannot answer another.
    swapped = _sign(
        enrolled.account,
        "POST",
        "/push/v1/challenges/A",
        challenge="B",
        action="approve",
        number=42,
    )
    assert _raw(app, "POST", "/push/v1/challenges/A", swapped)[0] == 400


def test_refused_requests_are_audited(app, enrolled):
    from idp.extensions import db
    from idp.models import AuditEvent

    _raw(app, "GET", "/push/v1/challenges", "not-a-jws")
    with app.app_context():
        events = db.session.execute(
            db.select(AuditEvent).filter_by(event="mfa.push_request_refused")
        ).scalars()
        assert [e.outcome for e in events] == ["failure"]


def test_removing_the_device_on_the_account_page_stops_the_app(app, rp_factory):
    from idp.extensions import db
    from idp.models import Factor

    rp = rp_factory()
    resp = walk(rp, rp.start(), email=EMAIL, password=PASSWORD)
    account, resp = enroll_push(app, rp, resp)
    finish(rp, resp)
    page = get(rp, "/account/security")
    assert "Push approval (idp-verify app)" in page.text and "Pixel (codes)" in page.text
    assert "paused after a reported request" not in page.text
    with app.app_context():
        from flask import current_app

        user = db.session.merge(user_row(app))
        current_app.extensions["idp.mfa"].registry["push"].service.lock(user, reason="test")
        db.session.commit()
    page = get(rp, "/account/security")
    assert "paused after a reported request" in page.text
    with app.app_context():
        device_id = db.session.execute(
            db.select(Factor.id).filter_by(credential_id=account.device_id)
        ).scalar_one()
    resp = rp.transport.request(
        "POST",
        f"http://localhost/account/factors/{device_id}",
        data={"csrf_token": _csrf(page), "action": "remove", "confirm": "yes"},
    )
    # Post/redirect/get: the account page says "... removed." (after a new challenge, as
    # the factor this session passed is gone).
    assert resp.status == 303 and resp.location.endswith("/account/security")
    with pytest.raises(verify_api.AppError) as err:
        verify_api.Client(account, transport=app_transport(app)).pending()
    assert err.value.status == 401 and err.value.code == "unknown_device"


def _csrf(page) -> str:
    import re

    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


# -- concurrent long-polls ------------------------------------------------------------------


def _poll(app, account, wait: float):
    """One signed long-poll; returns the Flask test response (headers included)."""
    token = _sign(account, "GET", "/push/v1/challenges", wait=wait)
    return app.test_client().get(
        "/push/v1/challenges",
        base_url="http://localhost",
        headers={"Authorization": f"Device {token}"},
    )


def _count_waits(monkeypatch) -> threading.Semaphore:
    """Released each time a long-poll starts waiting for a challenge."""
    from idp.mfa.push.service import PushService

    started = threading.Semaphore(0)
    original = PushService.wait_pending

    def wait_pending(self, device, timeout):
        started.release()
        return original(self, device, timeout)

    monkeypatch.setattr(PushService, "wait_pending", wait_pending)
    return started


def _in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def _refusals(app) -> list:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        return list(
            db.session.execute(
                db.select(AuditEvent).filter_by(event="mfa.push_poll_refused")
            ).scalars()
        )


def test_concurrent_long_polls_per_device_are_limited(app, enrolled, monkeypatch):
    """One device holds at most ``[push] max_polls_per_device`` (2) worker threads: a
    third long-poll is answered at once with 429 while the two keep waiting, the
    refusal is audited once (not once per attempt), and when one poll ends a new
    one is accepted again."""
    account = enrolled.account
    started = _count_waits(monkeypatch)
    short, short_result = _in_thread(lambda: _poll(app, account, 3))
    long, long_result = _in_thread(lambda: _poll(app, account, 8))
    for _ in range(2):
        assert started.acquire(timeout=15), (short_result, long_result)

    for _attempt in range(2):
        t0 = time.monotonic()
        resp = _poll(app, account, 5)
        assert time.monotonic() - t0 < 2.5
        assert resp.status_code == 429, resp.get_json()
        assert resp.get_json()["error"] == "slow_down"
        assert int(resp.headers["Retry-After"]) > 0
        assert resp.headers["Cache-Control"] == "no-store"
    assert short.is_alive() and long.is_alive()
    [refused] = _refusals(app)
    assert refused.outcome == "failure" and refused.details["limit"] == 2

    short.join(15)
    assert short_result["value"].status_code == 200, short_result
    resp = _poll(app, account, 1)
    assert resp.status_code == 200 and resp.get_json() == {"challenges": []}
    assert long.is_alive()  # the accepted poll made a slot of its own, not the long one's
    long.join(15)
    assert long_result["value"].status_code == 200, long_result


def test_a_slot_left_by_a_crashed_worker_expires(app, enrolled, monkeypatch):
    """A worker that dies mid-poll never frees its slot; the slot stops counting once
    its poll could no longer be running, so the device is not locked out."""
    from idp.mfa.push import api as push_api
    from idp.services import services

    with app.app_context():
        store = services().store
    monkeypatch.setattr(type(store), "remove_from_set", lambda self, key, member: None)
    for _ in range(2):  # two polls whose workers "crash" before cleaning up
        assert _poll(app, enrolled.account, 1).status_code == 200
    assert _poll(app, enrolled.account, 1).status_code == 429
    real = time.time
    monkeypatch.setattr(push_api, "_clock", lambda: real() + 30)  # past 1 s + the grace
    assert _poll(app, enrolled.account, 1).status_code == 200


def test_long_polls_fail_closed_when_the_store_is_down(app, enrolled, monkeypatch):
    from idp.services import services
    from idp.store import StoreUnavailable

    with app.app_context():
        store = services().store

    def down(*_args, **_kwargs):
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(type(store), "add_to_set", down)
    resp = _poll(app, enrolled.account, 5)
    assert resp.status_code == 503 and resp.get_json()["error"] == "temporarily_unavailable"


def test_push_approval_opens_a_password_reset(app, enrolled):
    """The reset challenge is the one challenge page: push works there too, bound to the
    reset link in this browser (no session)."""
    from clients.mockrp.forms import parse_forms
    from tests.integration.account_helpers import link_in, outbox, post

    browser = app.test_client()
    post(browser, "/forgot", {"email": EMAIL}).close()
    link = link_in(outbox(app, "account.password_reset")[-1], "/reset/")
    opened = browser.get(link)
    assert opened.status_code == 302 and "reset=" in opened.location
    page = browser.get(opened.location + "&kind=push")
    form = next(f for f in parse_forms(page.get_data(as_text=True), "http://localhost/")
                if ("action", "send") in f.buttons)  # fmt: skip
    sent = browser.post("/mfa/challenge", data={**form.fields, "action": "send"})
    assert sent.status_code == 302, sent.get_data(as_text=True)[:300]
    page = browser.get(sent.location)
    number = int(re.search(r'id="push-number">(\d+)<', page.get_data(as_text=True)).group(1))
    [challenge] = enrolled.pending()
    assert enrolled.approve(challenge["id"], number) == {"status": "approved"}
    token = link.rsplit("/", 1)[1]
    assert browser.get(f"/mfa/push/status?reset={token}").json["status"] == "approved"
    fields = next(f for f in parse_forms(page.get_data(as_text=True), "http://localhost/")
                  if "data-push-wait" in f.attrs).fields  # fmt: skip
    done = browser.post("/mfa/challenge", data=fields)
    assert done.status_code == 302 and done.location.endswith(link)
    assert 'name="password"' in browser.get(link).get_data(as_text=True)
    assert browser.get_cookie("idp_session") is None  # nobody signed in
