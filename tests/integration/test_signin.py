"""The password sign-in page: no enumeration, CSRF, lockout, rate limits, disabled
accounts, session id rotation and a store outage (NIST SP 800-63B 5.2.2, 7.1)."""

from __future__ import annotations

import re

import pytest

from clients.mockrp.forms import find_form, page_info, parse_forms
from tests.conftest import PASSWORD, make_settings

COOKIE = "idp_session"


@pytest.fixture
def overrides() -> dict:
    """Settings sections to override; tests parametrize this to change limits."""
    return {}


@pytest.fixture
def settings(tmp_path, keys_dir, overrides):
    return make_settings(tmp_path, keys_dir, **overrides)


# -- helpers -------------------------------------------------------------------------


def csrf_from(resp) -> str:
    form = find_form(parse_forms(resp.get_data(as_text=True), "http://localhost/signin"), "email")
    return form.fields["csrf_token"]


def signin(client, email: str, password: str, *, csrf: str | None | bool = True, **extra):
    """GET the sign-in page (for its CSRF token) and POST the form."""
    token = csrf_from(client.get("/signin")) if csrf is True else csrf
    data = {"email": email, "password": password, **extra}
    if token:
        data["csrf_token"] = token
    return client.post("/signin", data=data)


def session_cookie(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie is not None else None


def errors(resp) -> list[str]:
    return page_info(resp.get_data(as_text=True)).errors


def events(app, name: str) -> list[tuple[str, int | None, dict]]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [(r.outcome, r.user_id, dict(r.details or {})) for r in rows]


def signed_in_as(client) -> str | None:
    """The email the provider's home page shows as signed in, or None."""
    html = client.get("/").get_data(as_text=True)
    m = re.search(r"You are signed in as <strong>([^<]+)</strong>", html)
    return m.group(1) if m else None


def load_session(app, cookie: str | None):
    with app.app_context():
        return app.extensions["idp"].sessions.load(cookie)


# -- success --------------------------------------------------------------------------


def test_sign_in_without_a_transaction(app, client, make_user):
    user_id, _ = make_user()
    resp = signin(client, "ADA@example.com ", PASSWORD)
    assert resp.status_code == 302
    assert resp.headers["Location"] == "/"
    cookie = session_cookie(client)
    assert cookie and load_session(app, cookie).user_id == user_id
    assert signed_in_as(client) == "ada@example.com"
    assert events(app, "login.success") == [("success", user_id, {"method": "pwd"})]


# -- failures look the same --------------------------------------------------------------


def test_wrong_password_and_unknown_email_look_identical(app, client, make_user):
    user_id, _ = make_user()
    wrong = signin(client, "ada@example.com", "not the password")
    unknown = signin(client, "nobody@example.com", PASSWORD)
    assert wrong.status_code == unknown.status_code == 200
    assert errors(wrong) == errors(unknown)
    assert errors(wrong) and "email or password is not right" in errors(wrong)[0]
    for resp in (wrong, unknown):
        assert find_form(
            parse_forms(resp.get_data(as_text=True), "http://localhost/signin"), "password"
        )
        assert "Set-Cookie" not in resp.headers or COOKIE not in resp.headers["Set-Cookie"]
    assert session_cookie(client) is None
    failures = events(app, "login.failure")
    assert [(o, u, d["reason"]) for o, u, d in failures] == [
        ("failure", user_id, "bad_password"),
        ("failure", None, "unknown_account"),
    ]
    assert events(app, "login.success") == []


@pytest.mark.parametrize(("email", "password"), [("", PASSWORD), ("ada@example.com", "")])
def test_empty_fields(app, client, make_user, email, password):
    make_user()
    resp = signin(client, email, password)
    assert resp.status_code == 400
    assert errors(resp) == ["Enter your email and password."]
    assert session_cookie(client) is None


@pytest.mark.parametrize("email", ["ada\x00@example.com", "ada@example.com\x00"])
def test_a_nul_in_the_email_is_refused_at_the_edge(app, client, make_user, email):
    """PostgreSQL text cannot hold NUL: the request edge refuses it (a 400 that says
    which field), on both databases, never a 500 and never a sign-in attempt."""
    make_user()
    resp = signin(client, email, PASSWORD)
    assert resp.status_code == 400
    assert "contains a control character" in resp.get_data(as_text=True)
    assert session_cookie(client) is None
    assert events(app, "login.failure") == [] and events(app, "login.success") == []


# -- CSRF ---------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "123.abc", "1700000000.00", "x" * 80, "1.é"])
def test_bad_csrf_token(app, client, make_user, token):
    make_user()
    client.get("/signin")  # the browser cookie exists
    resp = signin(client, "ada@example.com", PASSWORD, csrf=token)
    assert resp.status_code == 400
    assert "This form has expired" in page_info(resp.get_data(as_text=True)).title
    assert session_cookie(client) is None
    assert events(app, "login.success") == events(app, "login.failure") == []


def test_csrf_token_of_another_browser(app, client, make_user):
    make_user()
    stolen = csrf_from(app.test_client().get("/signin"))
    client.get("/signin")
    resp = signin(client, "ada@example.com", PASSWORD, csrf=stolen)
    assert resp.status_code == 400
    assert session_cookie(client) is None


def test_csrf_token_without_browser_cookie(app, client, make_user):
    make_user()
    token = csrf_from(client.get("/signin"))
    client.delete_cookie("idp_browser")
    resp = signin(client, "ada@example.com", PASSWORD, csrf=token)
    assert resp.status_code == 400
    assert session_cookie(client) is None


# -- lockout and rate limits ---------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"login": {"max_consecutive_failures": 3}}])
def test_lockout_after_consecutive_failures(app, client, make_user):
    from idp.extensions import db
    from idp.models import User

    user_id, _ = make_user()
    generic = None
    for _ in range(3):
        resp = signin(client, "ada@example.com", "wrong password")
        assert resp.status_code == 200
        generic = errors(resp)
    resp = signin(client, "ada@example.com", PASSWORD)
    assert resp.status_code == 200
    assert errors(resp) == generic
    assert session_cookie(client) is None
    lockouts = events(app, "login.lockout")
    assert len(lockouts) == 1
    assert lockouts[0][:2] == ("failure", user_id) and lockouts[0][2]["failures"] == 3
    assert events(app, "login.success") == []
    assert events(app, "login.failure")[-1][2]["reason"] == "locked"
    with app.app_context():
        user = db.session.get(User, user_id)
        assert user.locked_until is not None and user.last_login_at is None


@pytest.mark.parametrize("overrides", [{"login": {"failures_per_account_ip_per_minute": 50}}])
def test_concurrent_wrong_passwords_are_each_counted(app, backend, make_user):
    """The counter is incremented by the database (n = n + 1 under the row lock): six
    guesses sent at once count six, not one each read of the same old value."""
    if backend == "sqlite":
        pytest.skip("SQLite runs one writing transaction at a time")
    import threading

    from idp.extensions import db
    from idp.models import User

    user_id, _ = make_user()
    clients = [app.test_client() for _ in range(6)]
    tokens = [csrf_from(c.get("/signin")) for c in clients]
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = []

    def guess(c, token):
        barrier.wait()
        statuses.append(signin(c, "ada@example.com", "wrong password", csrf=token).status_code)

    threads = [
        threading.Thread(target=guess, args=pair) for pair in zip(clients, tokens, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 6
    with app.app_context():
        assert db.session.get(User, user_id).failed_logins == 6
    assert [e[2]["reason"] for e in events(app, "login.failure")] == ["bad_password"] * 6


@pytest.mark.parametrize(
    "overrides",
    [{"login": {"max_consecutive_failures": 3, "failures_per_account_ip_per_minute": 50}}],
)
def test_success_resets_the_failure_count(app, client, make_user):
    make_user()
    for _ in range(2):
        signin(client, "ada@example.com", "wrong password")
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
    for _ in range(2):
        signin(client, "ada@example.com", "wrong password")
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
    assert events(app, "login.lockout") == []


@pytest.mark.parametrize("overrides", [{"login": {"per_ip_per_minute": 3}}])
def test_per_ip_ceiling_counts_every_attempt(app, client, make_user):
    """A ceiling on all attempts from one address (high by default: 300 a minute)."""
    make_user()
    for _ in range(3):
        assert signin(client, "ada@example.com", PASSWORD).status_code == 302
    resp = signin(client, "ada@example.com", PASSWORD)
    assert resp.status_code == 429
    retry = int(resp.headers["Retry-After"])
    assert 1 <= retry <= 60
    assert f"Wait {retry} seconds" in errors(resp)[0]
    # Another address is not limited.
    other = app.test_client()
    token = csrf_from(other.get("/signin"))
    resp = other.post(
        "/signin",
        data={"email": "ada@example.com", "password": PASSWORD, "csrf_token": token},
        environ_base={"REMOTE_ADDR": "192.0.2.7"},
    )
    assert resp.status_code == 302


def test_correct_sign_ins_are_never_throttled(app, make_user):
    """Six correct sign-ins of one account from one address in a minute (step-ups with
    prompt=login, several applications) and thirty of thirty people behind one office
    NAT on deadline day: all get in. Only failures are limited per account and address."""
    make_user()
    for i in range(30):
        make_user(email=f"user{i}@example.com")
    one = app.test_client()
    for _ in range(6):
        assert signin(one, "ada@example.com", PASSWORD).status_code == 302
    for i in range(30):
        assert signin(app.test_client(), f"user{i}@example.com", PASSWORD).status_code == 302
    assert events(app, "login.failure") == []


@pytest.mark.parametrize("overrides", [{"login": {"failures_per_account_ip_per_minute": 2}}])
def test_failures_per_account_and_ip_are_limited(app, client, make_user):
    make_user()
    for _ in range(2):
        assert signin(client, "ada@example.com", "wrong").status_code == 200
    resp = signin(client, "Ada@Example.com", PASSWORD)
    assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
    assert "Wait" in errors(resp)[0] and "seconds" in errors(resp)[0]
    assert session_cookie(client) is None
    # Another account from the same address is fine.
    assert signin(client, "grace@example.com", "x").status_code == 200


@pytest.mark.parametrize(
    "overrides",
    [{"login": {"failures_per_ip_per_minute": 3, "failures_per_account_ip_per_minute": 50}}],
)
def test_failures_per_ip_across_accounts_are_limited(app, client, make_user):
    """Password spraying from one address: wrong guesses on many accounts."""
    make_user()
    for i in range(3):
        assert signin(client, f"user{i}@example.com", "wrong").status_code == 200
    resp = signin(client, "ada@example.com", PASSWORD)
    assert resp.status_code == 429


# -- disabled accounts ---------------------------------------------------------------------


def test_disabled_user(app, client, make_user):
    user_id, _ = make_user(status="disabled")
    resp = signin(client, "ada@example.com", PASSWORD)
    assert resp.status_code == 403
    assert errors(resp) == ["This account is disabled. Contact the help desk for help."]
    assert session_cookie(client) is None
    assert events(app, "login.failure")[-1][1:] == (user_id, {"reason": "disabled"})
    # A wrong password says nothing about the account's state.
    resp = signin(client, "ada@example.com", "wrong")
    assert resp.status_code == 200
    assert "disabled" not in " ".join(errors(resp))


def test_disabling_ends_existing_sessions(app, client, make_user):
    from idp.extensions import db
    from idp.models import User

    user_id, _ = make_user()
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
    assert signed_in_as(client) == "ada@example.com"
    with app.app_context():
        db.session.get(User, user_id).status = "disabled"
        db.session.commit()
    assert signed_in_as(client) is None


# -- session id rotation ------------------------------------------------------------------


def test_session_id_rotates_at_sign_in(app, client, make_user):
    make_user()
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
    first = session_cookie(client)
    first_session = load_session(app, first)
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
    second = session_cookie(client)
    assert second and second != first
    assert load_session(app, first) is None
    second_session = load_session(app, second)
    assert second_session.sid == first_session.sid  # same user, same logical session
    # The old cookie no longer signs anyone in.
    stale = app.test_client()
    stale.set_cookie(COOKIE, first)
    assert signed_in_as(stale) is None
    assert signed_in_as(client) == "ada@example.com"


def test_planted_session_cookie_is_not_adopted(app, client, make_user):
    """Session fixation: a cookie value chosen before sign-in never becomes a session."""
    make_user()
    client.set_cookie(COOKIE, "attacker-chosen-value")
    assert signin(client, "ada@example.com", PASSWORD).status_code == 302
    assert session_cookie(client) != "attacker-chosen-value"
    assert load_session(app, "attacker-chosen-value") is None


def test_other_user_gets_a_new_session(app, client, make_user):
    make_user()
    make_user("grace@example.com", name="Grace Hopper")
    signin(client, "ada@example.com", PASSWORD)
    ada = load_session(app, session_cookie(client))
    signin(client, "grace@example.com", PASSWORD)
    grace = load_session(app, session_cookie(client))
    assert grace.user_id != ada.user_id and grace.sid != ada.sid
    assert signed_in_as(client) == "grace@example.com"


def test_session_cookie_attributes(app, client, make_user):
    make_user()
    resp = signin(client, "ada@example.com", PASSWORD)
    header = next(h for h in resp.headers.getlist("Set-Cookie") if h.startswith(COOKIE + "="))
    assert "HttpOnly" in header and "SameSite=Lax" in header and "Path=/" in header


# -- store outage --------------------------------------------------------------------------


def test_store_down_fails_closed(settings):
    """The rate limits live in the store: without it, sign-in answers 503 (fail closed)."""
    from flask_migrate import upgrade

    from idp.app import create_app
    from idp.extensions import db
    from idp.models import AuditEvent, User
    from idp.services import services
    from idp.store import RedisStore

    store = RedisStore("redis://127.0.0.1:1/0", socket_timeout=0.2)
    app = create_app(settings, store=store, warn=False)
    app.config["TESTING"] = True
    with app.app_context():
        upgrade()
        db.session.add(
            User(
                email="ada@example.com",
                name="Ada",
                email_verified=True,
                password_hash=services().passwords.hash(PASSWORD),
            )
        )
        db.session.commit()
    client = app.test_client()
    try:
        page = client.get("/signin")
        assert page.status_code == 200
        resp = client.post(
            "/signin",
            data={"email": "ada@example.com", "password": PASSWORD, "csrf_token": csrf_from(page)},
        )
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "30"
        assert "temporarily unavailable" in page_info(resp.get_data(as_text=True)).title
        assert session_cookie(client) is None
        with app.app_context():
            assert db.session.query(AuditEvent).filter_by(event="login.success").count() == 0
            assert db.session.get(User, 1).last_login_at is None
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        store.close()
