"""Password reset and password change: the same answer for unknown addresses, a signed
single-use 1-hour link, a second factor before the new password when the account has
one (never skippable), and what a reset ends: sessions, refresh tokens, the lock."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

import pytest

from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import (
    OTHER_STRONG,
    STRONG,
    add_recovery_codes,
    add_totp,
    events,
    form_fields,
    link_in,
    next_totp,
    outbox,
    post,
    signin,
    text,
    user_row,
)

EMAIL = "ada@example.com"


@pytest.fixture
def overrides() -> dict:
    return {}


@pytest.fixture
def settings(tmp_path, keys_dir, overrides):
    return make_settings(tmp_path, keys_dir, **overrides)


@pytest.fixture
def ada(app, make_user):
    uid, _ = make_user(email=EMAIL)
    return uid


def forgot(client, email=EMAIL):
    """POST /forgot and close the response, as a server does once it is sent: the
    reset email goes out from the response's close callbacks (see
    test_the_reset_email_is_sent_after_the_response)."""
    resp = post(client, "/forgot", {"email": email})
    resp.get_data()
    resp.close()
    return resp


def reset_link(app, email=EMAIL) -> str:
    mails = [m for m in outbox(app, "account.password_reset") if m["to"] == email]
    assert mails, outbox(app)
    return link_in(mails[-1], "/reset/")


def set_password(client, link: str, password=STRONG, confirm=None):
    return post(client, link, {"password": password,
                               "password_confirm": password if confirm is None else confirm},
                names=("password",))  # fmt: skip


def challenge_url(link: str, **query: str) -> str:
    """The one challenge page in its password-reset context, for this link."""
    from urllib.parse import urlencode

    token = link.split("?")[0].rsplit("/", 1)[1]
    return "/mfa/challenge?" + urlencode({"reset": token, **query})


def pass_factor(client, link: str, code: str, kind: str = "totp"):
    page = challenge_url(link, kind=kind)
    return post(client, "/mfa/challenge", {"kind": kind, "code": code}, form_path=page,
                names=("code",))  # fmt: skip


def password_ok(app, email: str, password: str) -> bool:
    with app.app_context():
        return app.extensions["idp"].passwords.verify(user_row(app, email)[2], password)


# -- asking for a link --------------------------------------------------------------------


def test_unknown_and_known_addresses_get_the_same_answer(app, client, ada):
    known = forgot(client, EMAIL)
    unknown = forgot(client, "nobody@example.com")
    assert (
        (known.status_code, known.location)
        == (unknown.status_code, unknown.location)
        == (
            303,
            "/forgot/sent",
        )
    )
    page = text(client.get("/forgot/sent"))
    assert "If an account uses the address you entered" in page and "60 minutes" in page
    [mail] = outbox(app)
    assert mail["to"] == EMAIL and mail["purpose"] == "account.password_reset"
    assert "Reset your password" in mail["subject"] and "60 minutes" in mail["text"]
    outcomes = [o for o, _u, _d in events(app, "password.reset_requested")]
    assert outcomes == ["success", "failure"]


def test_disabled_accounts_get_no_link(app, client, make_user):
    make_user(email="off@example.com", status="disabled")
    assert forgot(client, "off@example.com").status_code == 303
    assert not outbox(app)


@pytest.mark.parametrize(
    ("email", "says"),
    [
        ("", "Enter your email address"),
        ("not-an-address", "like name@example.com"),
        ("a@b", "like name@example.com"),
        ("x" * 300 + "@example.com", "at most 254 characters"),
    ],
)
def test_an_email_that_is_not_an_address(app, client, ada, email, says):
    resp = forgot(client, email)
    assert resp.status_code == 400 and says in text(resp)
    assert not outbox(app)


@pytest.mark.parametrize("overrides", [{"password": {"reset_per_email_per_hour": 2}}])
def test_requests_per_address_are_limited(app, client, ada):
    assert forgot(client).status_code == 303
    assert forgot(client).status_code == 303
    resp = forgot(client)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) > 0
    assert len(outbox(app)) == 2
    # Unknown addresses are limited the same way (the limit reveals nothing).
    forgot(client, "nobody@example.com")
    forgot(client, "nobody@example.com")
    assert forgot(client, "nobody@example.com").status_code == 429


def test_missing_csrf_token_is_refused(app, client, ada):
    assert client.post("/forgot", data={"email": EMAIL}).status_code == 400
    assert not outbox(app)


# -- the email goes out after the response ---------------------------------------------------
# With a synchronous SMTP relay, a known address would wait for the relay's round trip
# and an unknown one would not: the answer time would tell which addresses have
# accounts. The message is therefore sent after the response (for every address).


class RecordingSender:
    """An email sender that records what it sends; with *block* it holds each send
    until the test calls :meth:`release` (a slow mail relay)."""

    def __init__(self, *, block: bool = False, fail: bool = False):
        self.calls: list = []
        self.sent: list = []
        self.entered = threading.Event()
        self._go = threading.Event()
        if not block:
            self._go.set()
        self.fail = fail

    def release(self) -> None:
        self._go.set()

    def send(self, message) -> None:
        from idp.delivery import DeliveryError

        self.calls.append(message)
        self.entered.set()
        assert self._go.wait(20), "the test never released the sender"
        if self.fail:
            raise DeliveryError("relay said no", reason="refused")
        self.sent.append(message)


def test_the_reset_email_is_sent_after_the_response(app, client, ada, monkeypatch):
    """The response is complete (status, headers, body) before the sender is called;
    closing it, as the server does once it is sent, sends the message. Known and
    unknown addresses take the same path up to the response."""
    from idp.account import password

    sender = RecordingSender()
    monkeypatch.setattr(app.extensions["idp"], "email", sender)
    scheduled = []
    real = getattr(password, "send_after_response", None)

    def spy(response, to, event, **kw):
        scheduled.append((to, event))
        return real(response, to, event, **kw)

    monkeypatch.setattr(password, "send_after_response", spy, raising=False)
    for email in (EMAIL, "nobody@example.com"):
        before = len(sender.calls)
        resp = post(client, "/forgot", {"email": email})
        assert resp.status_code == 303 and resp.location == "/forgot/sent"
        resp.get_data()
        assert len(sender.calls) == before, "sent before the response was complete"
        resp.close()
    [message] = sender.sent
    assert message.to == EMAIL and message.purpose == "account.password_reset"
    assert "/reset/" in message.text and "Ada Lovelace" in message.text
    assert scheduled == [(EMAIL, "password_reset"), (None, "password_reset")]
    # The link in the message works.
    assert client.get(link_in({"text": message.text}, "/reset/")).status_code == 200


def test_a_response_the_server_never_closes_still_sends_the_email_once(
    app, client, ada, monkeypatch
):
    """Werkzeug's development server skips close() when the browser resets the
    connection: the message goes out after CLOSE_FALLBACK_SECONDS anyway, and a close
    that comes as well does not send it twice."""
    from idp.account import mail

    monkeypatch.setattr(mail, "CLOSE_FALLBACK_SECONDS", 0.3)
    sender = RecordingSender()
    monkeypatch.setattr(app.extensions["idp"], "email", sender)
    resp = post(client, "/forgot", {"email": EMAIL})  # never closed
    assert resp.status_code == 303
    deadline = time.monotonic() + 10
    while not sender.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    [message] = sender.sent
    assert message.to == EMAIL and "/reset/" in message.text
    resp.close()  # late: already sent
    # Closed in time, then the timer fires: still one message.
    resp = post(client, "/forgot", {"email": EMAIL})
    resp.close()
    time.sleep(0.6)
    assert len(sender.sent) == 2


def test_a_slow_mail_relay_does_not_delay_the_answer(app, ada, monkeypatch):
    """Over real HTTP: the 303 arrives while the mail relay still holds the message;
    the message is delivered once the relay answers."""
    import requests
    from werkzeug.serving import make_server

    sender = RecordingSender(block=True)
    monkeypatch.setattr(app.extensions["idp"], "email", sender)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        http = requests.Session()
        fields = form_fields(http.get(f"{base}/forgot", timeout=10), "csrf_token")
        fields["email"] = EMAIL
        resp = http.post(f"{base}/forgot", data=fields, allow_redirects=False, timeout=5)
        assert resp.status_code == 303 and resp.headers["Location"] == "/forgot/sent"
        assert sender.entered.wait(10), "the message was never handed to the relay"
        assert sender.sent == []
        sender.release()
        deadline = time.monotonic() + 10
        while not sender.sent and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sender.release()
        server.shutdown()
        thread.join(10)
    [message] = sender.sent
    assert message.to == EMAIL and message.purpose == "account.password_reset"


def test_a_failed_delivery_after_the_response_is_logged_and_audited(app, client, ada, monkeypatch,
                                                                  caplog):  # fmt: skip
    monkeypatch.setattr(app.extensions["idp"], "email", RecordingSender(fail=True))
    with caplog.at_level(logging.ERROR, logger="idp.account"):
        assert forgot(client).status_code == 303
    assert "account email password_reset failed: relay said no" in caplog.text
    [(outcome, user_id, details)] = events(app, "notify.failed")
    assert (outcome, user_id, details) == ("failure", ada, {"kind": "password_reset"})
    with app.app_context():
        from idp.extensions import db
        from idp.models import AuditEvent

        row = db.session.execute(
            db.select(AuditEvent).filter_by(event="notify.failed")
        ).scalar_one()
        assert row.ip == "127.0.0.1"  # the request's facts, although it has ended


# -- resetting without a second factor ----------------------------------------------------------


def test_reset_sets_the_password_and_ends_everything(app, client, ada, make_client):
    other = app.test_client()
    assert signin(other, EMAIL, PASSWORD).status_code == 302  # a session elsewhere
    with app.app_context():
        from idp.extensions import db
        from idp.models import User
        from idp.models.base import utcnow

        user = db.session.get(User, ada)
        user.locked_until = utcnow() + timedelta(minutes=10)  # paused after failures
        user.failed_logins = 7
        db.session.commit()
    forgot(client)
    link = reset_link(app)
    page = client.get(link)
    assert page.status_code == 200 and "Choose a new password" in text(page)
    assert 'autocomplete="new-password"' in text(page)
    done = set_password(client, link)
    assert done.status_code == 200 and "Your password was changed" in text(done)
    assert password_ok(app, EMAIL, STRONG) and not password_ok(app, EMAIL, PASSWORD)
    with app.app_context():
        user = db.session.get(User, ada)
        assert user.password_changed_at is not None and user.locked_until is None
        assert user.failed_logins == 0
        assert app.extensions["idp"].sessions.count_for(ada) == 0
    assert "signed in as" not in text(other.get("/")).lower()
    assert client.get_cookie("idp_session") is None  # the reset does not sign in
    [(outcome, uid, details)] = events(app, "password.reset")
    assert (outcome, uid, details["second_factor"]) == ("success", ada, False)
    [mail] = outbox(app, "notify.password_changed")
    assert mail["to"] == EMAIL and "reset with a link" in mail["text"]
    assert signin(client, EMAIL, STRONG).status_code == 302


def test_reset_revokes_refresh_tokens(app, ada, make_client):
    from clients.mockrp.rp import OAuthError
    from tests.integration.mfa_helpers import CB, browsers, walk

    client_id, secret = make_client(first_party=True)
    rp = browsers(app, client_id, secret, CB)()
    resp = walk(rp, rp.start(scope="openid email offline_access", prompt="consent"),
                email=EMAIL, password=PASSWORD)  # fmt: skip
    result = rp.resume(resp, email=EMAIL, password=PASSWORD)
    tokens = rp.exchange_code(result)
    assert tokens.refresh_token
    client = app.test_client()
    forgot(client)
    set_password(client, reset_link(app))
    with pytest.raises(OAuthError) as err:
        rp.refresh(tokens.refresh_token)
    assert err.value.error == "invalid_grant"


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("short", None, "at least 12"),
        ("password12345", None, "common"),
        ("x" * 129, None, "at most 128"),
        ("ada.lovelace.example", None, "name or email"),
        (STRONG, "something else entirely", "not the same"),
    ],
)
def test_weak_or_mismatched_new_password_keeps_the_link(app, client, ada, password, confirm,
                                                        message):  # fmt: skip
    forgot(client)
    link = reset_link(app)
    resp = set_password(client, link, password, confirm)
    assert resp.status_code == 400 and message in text(resp)
    assert password_ok(app, EMAIL, PASSWORD)
    assert set_password(client, link).status_code == 200  # the link was not used up


def test_reused_link_is_refused(app, client, ada):
    forgot(client)
    link = reset_link(app)
    assert set_password(client, link).status_code == 200
    again = client.get(link)
    assert again.status_code == 400
    # Burned: a second use is refused whatever it carries.
    assert "already used" in text(again)
    assert client.post(link, data={"password": OTHER_STRONG}).status_code == 400
    assert password_ok(app, EMAIL, STRONG)


def test_an_older_link_dies_when_the_password_changes(app, client, ada):
    forgot(client)
    first = reset_link(app)
    forgot(client)
    second = reset_link(app)
    assert first != second
    assert set_password(client, second).status_code == 200
    resp = client.get(first)
    assert resp.status_code == 400 and "not valid" in text(resp)
    assert 'href="/forgot"' in text(resp)


def test_reuse_of_a_link_is_refused_even_before_the_password_differs(app, client, ada):
    """Same password twice would keep the fingerprint; the store still burns the id."""
    from idp.account import links

    forgot(client)
    token = reset_link(app).rsplit("/", 1)[1]
    with app.test_request_context():
        links.consume("reset", token)
    resp = client.get(f"/reset/{token}")
    assert resp.status_code == 400 and "already used" in text(resp)


@pytest.mark.parametrize("mangle", [lambda t: t[:-4] + "AAAA", lambda t: t.split(".", 1)[1],
                                    lambda t: "9" + t])  # fmt: skip
def test_tampered_link_is_refused(app, client, ada, mangle):
    forgot(client)
    token = reset_link(app).rsplit("/", 1)[1]
    assert client.get(f"/reset/{mangle(token)}").status_code == 400
    resp = client.post(f"/reset/{mangle(token)}", data={"password": STRONG})
    assert resp.status_code == 400
    assert password_ok(app, EMAIL, PASSWORD)


def test_expired_link_is_refused(app, client, ada):
    from idp.account import links
    from idp.extensions import db
    from idp.models import User

    with app.test_request_context():
        token = links.issue("reset", db.session.get(User, ada), 3600, now=int(time.time()) - 3601)
    resp = client.get(f"/reset/{token}")
    assert resp.status_code == 400 and "expired" in text(resp)


def test_link_lifetime_is_one_hour(app, client, ada):
    forgot(client)
    expires = int(reset_link(app).rsplit("/", 1)[1].split(".")[0])
    assert abs(expires - (time.time() + 3600)) < 60


def test_a_reset_proves_the_inbox(app, client, make_user):
    from idp.extensions import db
    from idp.models import User

    uid, _ = make_user(email="new@example.com")
    with app.app_context():
        db.session.get(User, uid).email_verified = False
        db.session.commit()
    forgot(client, "new@example.com")
    set_password(client, reset_link(app, "new@example.com"))
    assert user_row(app, "new@example.com")[1] is True


# -- with a second factor --------------------------------------------------------------------------


def test_second_factor_comes_first_and_cannot_be_skipped(app, client, ada):
    secret = add_totp(app, EMAIL)
    forgot(client)
    link = reset_link(app)
    opened = client.get(link)  # the link leads to the one challenge page
    assert opened.status_code == 302 and opened.location == challenge_url(link)
    page = client.get(opened.location)
    assert page.status_code == 200 and "Verify it's you" in text(page)
    assert "before choosing a new password" in text(page)
    assert 'name="password"' not in text(page)
    # Posting the new password directly, with a valid CSRF token, is refused.
    token = form_fields(page, "csrf_token")["csrf_token"]
    direct = client.post(link, data={"csrf_token": token, "step": "password",
                                     "password": STRONG, "password_confirm": STRONG})  # fmt: skip
    assert direct.status_code == 403
    assert password_ok(app, EMAIL, PASSWORD)
    assert events(app, "password.reset_refused")[-1][0] == "failure"
    # A wrong code counts against the shared second-factor counter.
    wrong = pass_factor(client, link, "000000")
    assert wrong.status_code == 400 and password_ok(app, EMAIL, PASSWORD)
    assert events(app, "mfa.failure")[-1][2]["factor"] == "totp"
    ok = pass_factor(client, link, next_totp(secret))
    assert ok.status_code == 302 and ok.location.endswith(link)
    assert client.get_cookie("idp_session") is None  # not signed in by the factor
    form = client.get(link)
    assert 'name="password"' in text(form)
    done = set_password(client, link)
    assert done.status_code == 200 and password_ok(app, EMAIL, STRONG)
    assert events(app, "password.reset")[-1][2]["second_factor"] is True


def test_the_factor_pass_belongs_to_one_browser(app, client, ada):
    secret = add_totp(app, EMAIL)
    forgot(client)
    link = reset_link(app)
    assert pass_factor(client, link, next_totp(secret)).status_code == 302
    thief = app.test_client()  # has the link (the inbox) but not the factor
    page = thief.get(link, follow_redirects=True)
    assert "Verify it's you" in text(page)
    token = form_fields(page, "csrf_token")["csrf_token"]
    resp = thief.post(link, data={"csrf_token": token, "step": "password",
                                  "password": OTHER_STRONG, "password_confirm": OTHER_STRONG})  # fmt: skip
    assert resp.status_code == 403 and password_ok(app, EMAIL, PASSWORD)


def test_a_recovery_code_can_be_the_factor(app, client, ada):
    add_totp(app, EMAIL)
    codes = add_recovery_codes(app, EMAIL)
    forgot(client)
    link = reset_link(app)
    page = client.get(challenge_url(link, kind="recovery"))
    assert "Enter one of your recovery codes" in text(page)
    assert pass_factor(client, link, codes[0], kind="recovery").status_code == 302
    assert set_password(client, link).status_code == 200
    # The code is burned.
    forgot(client)
    link2 = reset_link(app)
    assert pass_factor(client, link2, codes[0], kind="recovery").status_code == 400


def test_a_factor_the_user_does_not_have_is_refused(app, client, ada):
    add_totp(app, EMAIL)
    forgot(client)
    link = reset_link(app)
    codes_of_nobody = "ABCD-EFGH-JKMN"
    resp = pass_factor(client, link, codes_of_nobody, kind="recovery")
    assert resp.status_code == 400 and password_ok(app, EMAIL, PASSWORD)
    assert 'name="password"' not in text(client.get(link, follow_redirects=True))


@pytest.mark.parametrize("overrides", [{"mfa": {"max_failures": 3}}])
def test_guessing_the_factor_locks_it(app, client, ada):
    add_totp(app, EMAIL)
    forgot(client)
    link = reset_link(app)
    statuses = [pass_factor(client, link, "000000").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
    assert events(app, "mfa.lockout")
    # While paused, even the right factor cannot open the reset.
    page = client.get(challenge_url(link))
    assert page.status_code == 429
    token = form_fields(client.get("/signin"), "csrf_token")["csrf_token"]
    resp = client.post("/mfa/challenge", data={"csrf_token": token, "kind": "totp",
                                               "code": "123456", "reset": link.rsplit("/", 1)[1]})  # fmt: skip
    assert resp.status_code == 429 and "Verification is paused" in text(resp)
    assert int(resp.headers["Retry-After"]) > 0


# -- change from the account page --------------------------------------------------------------


def test_change_needs_the_current_password_and_ends_other_sessions(app, client, ada):
    other = app.test_client()
    assert signin(other, EMAIL, PASSWORD).status_code == 302
    assert signin(client, EMAIL, PASSWORD).status_code == 302
    assert client.get("/account/password").status_code == 200
    wrong = post(client, "/account/password", {"current_password": "not it at all",
                                               "password": STRONG, "password_confirm": STRONG})  # fmt: skip
    assert wrong.status_code == 400 and "current password is not right" in text(wrong)
    assert events(app, "password.change_failed")
    ok = post(client, "/account/password", {"current_password": PASSWORD, "password": STRONG,
                                            "password_confirm": STRONG})  # fmt: skip
    assert ok.status_code == 303
    assert "Your password was changed" in text(client.get(ok.location))
    assert password_ok(app, EMAIL, STRONG)
    assert client.get("/account/security").status_code == 200  # this browser stays in
    assert other.get("/account/security").status_code == 302  # the other one is out
    [mail] = outbox(app, "notify.password_changed")
    assert "changed from your account page" in mail["text"]
    assert events(app, "password.changed")[-1][1] == ada


@pytest.mark.parametrize(
    ("password", "message"),
    [("short", "at least 12"), ("password12345", "common"), (PASSWORD, "different")],
)
def test_change_refuses_weak_or_unchanged_passwords(app, client, ada, password, message):
    signin(client, EMAIL, PASSWORD)
    resp = post(client, "/account/password", {"current_password": PASSWORD,
                                              "password": password, "password_confirm": password})  # fmt: skip
    assert resp.status_code == 400 and message in text(resp)
    assert password_ok(app, EMAIL, PASSWORD)


def test_change_needs_a_signed_in_user(app, client, ada):
    resp = client.get("/account/password")
    assert resp.status_code == 302 and "/signin" in resp.location
    posted = client.post("/account/password", data={"current_password": PASSWORD,
                                                     "password": STRONG, "password_confirm": STRONG})  # fmt: skip
    assert posted.status_code == 302 and "/signin" in posted.location
    assert password_ok(app, EMAIL, PASSWORD)


def test_change_without_csrf_token_is_refused(app, client, ada):
    signin(client, EMAIL, PASSWORD)
    resp = client.post("/account/password", data={"current_password": PASSWORD,
                                                   "password": STRONG, "password_confirm": STRONG})  # fmt: skip
    assert resp.status_code == 400 and password_ok(app, EMAIL, PASSWORD)


def test_change_with_factors_needs_the_factor_in_this_session(app, client, ada):
    add_totp(app, EMAIL)
    signin(client, EMAIL, PASSWORD)
    resp = client.get("/account/password")
    assert resp.status_code == 302 and "/mfa/challenge" in resp.location


def _email_factor(app, address: str) -> int:
    from idp.extensions import db
    from idp.models import Factor, User
    from idp.models.base import utcnow

    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        factor = Factor(user_id=user.id, type="email", label=address, status="active",
                        secret_enc=app.extensions["idp"].secrets.encrypt(
                            address, context=f"email:{user.id}"),
                        data={"masked": address[:1] + "***"}, activated_at=utcnow())  # fmt: skip
        db.session.add(factor)
        db.session.commit()
        return factor.id


def test_a_code_to_another_inbox_can_be_the_factor(app, client, ada):
    """The reset challenge is the one challenge page: "Send code", then the code."""
    import re

    other = _email_factor(app, "ada.codes@example.org")
    forgot(client)
    link = reset_link(app)
    page = client.get(challenge_url(link, kind="email"))
    assert page.status_code == 200 and "a***" in text(page)
    sent = post(client, "/mfa/challenge", {"kind": "email", "action": "send",
                "factor_id": str(other)}, form_path=challenge_url(link, kind="email"),
                names=("action",))  # fmt: skip
    assert sent.status_code == 302, text(sent)[:300]
    mail = [m for m in outbox(app) if m["to"] == "ada.codes@example.org"][-1]
    code = re.search(r"\b(\d{6})\b", mail["text"]).group(1)
    passed = post(client, "/mfa/challenge", {"kind": "email", "code": code,
                  "factor_id": str(other)}, form_path=sent.location, names=("code",))  # fmt: skip
    assert passed.status_code == 302 and passed.location.endswith(link)
    assert set_password(client, link).status_code == 200


def test_a_code_to_the_accounts_own_inbox_is_not_a_factor_for_a_reset(app, client, ada):
    """The link already proves that inbox: a code sent there would prove nothing more."""
    own = _email_factor(app, EMAIL)
    forgot(client)
    link = reset_link(app)
    page = client.get(challenge_url(link, kind="email"))
    assert "None of your sign-in methods can be used to reset your password" in text(page)
    assert "the reset link went to the same inbox" in text(page)
    token = form_fields(client.get("/signin"), "csrf_token")["csrf_token"]
    reset = link.rsplit("/", 1)[1]
    for data in ({"action": "send"}, {"code": "123456"}):
        resp = client.post("/mfa/challenge", data={"csrf_token": token, "kind": "email",
                           "factor_id": str(own), "reset": reset, **data})  # fmt: skip
        assert resp.status_code in (200, 400) and "Your new password" not in text(resp)
    assert not [m for m in outbox(app) if m["purpose"] == "otp.email"]
    assert 'name="password"' not in text(client.get(link, follow_redirects=True))
