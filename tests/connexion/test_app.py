"""The Connexion pages without a provider: the authorization request, the callback's
checks, the step-up redirects, the Form C page and its reaction to the API, the
dashboard's words, logout, and the pages' accessibility and security basics.

Authlib's discovery is preloaded (``conftest.cx_app``); the API's keys come from the
stand-in provider. The real provider is in ``test_flow.py``.
"""

from __future__ import annotations

import re
import sqlite3
import time
from datetime import date
from urllib.parse import parse_qs, urlsplit

import pytest

from clients.connexion import reports
from clients.connexion.assurance import ago, amr_words, satisfies
from clients.connexion.due_dates import next_form_c_due
from clients.mockrp.forms import parse_forms
from tests.connexion.conftest import (
    AAL1,
    AAL2,
    API,
    API_SCOPE,
    BASE,
    ISSUER,
    MFA,
    PHISHING_RESISTANT,
)

STEP_UP = {"acr_values": MFA, "max_age": "900", "next": "/form-c"}


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sign_in(cx, *, acr=MFA, age=60, amr=("mfa", "otp", "pwd"), access_token="at", sub="user-123"):
    """Put a signed-in user in the session, as /callback would."""
    with cx.session_transaction() as s:
        s["user"] = {"iss": ISSUER, "sub": sub, "name": "Ada Lovelace",
                     "email": "ada@example.com", "acr": acr, "amr": list(amr),
                     "auth_time": int(time.time()) - age}  # fmt: skip
        s["access_token"] = access_token
        s["id_token"] = "the.id.token"


def csrf(cx) -> str:
    page = cx.get("/logout")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(1)


def answers(cx, **overrides) -> dict:
    data = {
        "csrf_token": csrf(cx),
        "supplier_number": "1234567890",
        "period": reports.periods(date.today())[0].code,
        "subcontractors": "4",
        "total_purchases": "$1,000.50",
        "certified": "yes",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# -- /login -------------------------------------------------------------------------------


def test_login_sends_code_flow_with_pkce_state_and_nonce(cx):
    resp = cx.get("/login")
    assert resp.status_code == 302
    url = resp.headers["Location"]
    assert url.startswith(f"{ISSUER}/authorize?")
    q = query(url)
    assert q["response_type"] == "code"
    assert q["client_id"] == "connexion"
    assert q["redirect_uri"] == f"{BASE}/callback"
    assert q["scope"] == f"openid profile email {API_SCOPE}"
    assert q["resource"] == API  # RFC 8707 2.1: the grant covers the Form C API
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) == 43
    assert len(q["state"]) >= 32 and len(q["nonce"]) >= 16
    assert "acr_values" not in q and "max_age" not in q
    with cx.session_transaction() as s:
        assert s["logins"][q["state"]] == {"next": "/dashboard", "acr": "", "max_age": None}
        # Authlib keeps the PKCE verifier and the nonce for the callback.
        assert any(q["state"] in key for key in s)


def test_login_passes_step_up_parameters(cx):
    url = cx.get("/login", query_string=STEP_UP).headers["Location"]
    q = query(url)
    assert q["acr_values"] == MFA and q["max_age"] == "900"
    with cx.session_transaction() as s:
        assert s["logins"][q["state"]] == {"next": "/form-c", "acr": MFA, "max_age": 900}


@pytest.mark.parametrize(
    ("next_value", "kept"),
    [
        ("/form-c", "/form-c"),
        ("/form-c?x=1", "/form-c?x=1"),
        ("//evil.example/", "/dashboard"),
        ("/\\evil.example", "/dashboard"),
        ("https://evil.example/", "/dashboard"),
        ("javascript:alert(1)", "/dashboard"),
        ("dashboard", "/dashboard"),
        ("/ok\r\nSet-Cookie: x", "/dashboard"),
    ],
)
def test_login_next_must_be_a_local_path(cx, next_value, kept):
    url = cx.get("/login", query_string={"next": next_value}).headers["Location"]
    with cx.session_transaction() as s:
        assert s["logins"][query(url)["state"]]["next"] == kept


@pytest.mark.parametrize("params", [{"max_age": "abc"}, {"max_age": "-1"}, {"acr_values": "a\tb"}])
def test_login_refuses_malformed_parameters(cx, params):
    resp = cx.get("/login", query_string=params)
    assert resp.status_code == 400
    assert 'role="alert"' in resp.get_data(as_text=True)


# -- /callback ----------------------------------------------------------------------------


def start(cx, **params) -> str:
    return query(cx.get("/login", query_string=params).headers["Location"])["state"]


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        ("access_denied", 403, "Sign-in cancelled"),
        ("unmet_authentication_requirements", 403, "A second step is needed"),
        ("server_error", 400, "server_error"),
    ],
)
def test_callback_error_responses(cx, error, status, words):
    state = start(cx)
    resp = cx.get("/callback", query_string={"error": error, "state": state})
    assert resp.status_code == status
    text = resp.get_data(as_text=True)
    assert words in text and 'role="alert"' in text
    with cx.session_transaction() as s:
        assert "user" not in s


def test_callback_with_unknown_state(cx):
    start(cx)
    resp = cx.get("/callback", query_string={"code": "c", "state": "forged", "iss": ISSUER})
    assert resp.status_code == 400


@pytest.mark.parametrize("iss", ["https://evil.example", None])
def test_callback_checks_rfc9207_iss(cx, iss):
    state = start(cx)
    params = {"code": "c", "state": state}
    if iss:
        params["iss"] = iss
    resp = cx.get("/callback", query_string=params)
    assert resp.status_code == 400
    assert "another issuer" in resp.get_data(as_text=True)


def fake_token_exchange(monkeypatch, cx_app, **claims) -> list[dict]:
    """Stand in for Authlib's verified code exchange and the refresh grant that gets the
    API's token (tested for real in test_flow); returns the refresh requests made."""
    client = cx_app.extensions["connexion"].oauth
    userinfo = {"iss": ISSUER, "sub": "user-123", "acr": AAL1, "amr": ["pwd"],
                "auth_time": int(time.time()), "nonce": "n", "at_hash": "h", **claims}  # fmt: skip
    token = {"access_token": "at", "id_token": "idt", "refresh_token": "rt1",
             "userinfo": userinfo}  # fmt: skip
    refreshes: list[dict] = []

    def refresh(**kw):
        refreshes.append(kw)
        n = len(refreshes)
        return {"access_token": f"api-at-{n}", "refresh_token": f"rt{n + 1}"}

    monkeypatch.setattr(client, "authorize_access_token", lambda **kw: token)
    monkeypatch.setattr(client, "fetch_access_token", refresh)
    monkeypatch.setattr(
        client, "userinfo", lambda **kw: {"sub": "user-123", "email": "ada@example.com"}
    )
    return refreshes


def test_callback_keeps_claims_and_goes_next(cx, cx_app, monkeypatch):
    refreshes = fake_token_exchange(monkeypatch, cx_app)
    state = start(cx, next="/dashboard")
    resp = cx.get("/callback", query_string={"code": "c", "state": state, "iss": ISSUER})
    assert resp.status_code == 302 and resp.headers["Location"] == "/dashboard"
    # The API's token comes from the refresh token, for the API's resource (RFC 8707).
    assert refreshes == [{"grant_type": "refresh_token", "refresh_token": "rt1",
                          "resource": API, "scope": API_SCOPE}]  # fmt: skip
    with cx.session_transaction() as s:
        assert s["user"]["acr"] == AAL1 and s["user"]["email"] == "ada@example.com"
        assert "nonce" not in s["user"] and "at_hash" not in s["user"]
        assert s["access_token"] == "api-at-1" and s["id_token"] == "idt"
        assert s["refresh_token"] == "rt2"  # the rotated one
        assert state not in s["logins"]
    # The state is single use.
    again = cx.get("/callback", query_string={"code": "c", "state": state, "iss": ISSUER})
    assert again.status_code == 400


def test_callback_refuses_a_lower_acr_than_requested(cx, cx_app, monkeypatch):
    """A provider may ignore acr_values; the step-up did not happen: no redirect loop."""
    fake_token_exchange(monkeypatch, cx_app, acr=AAL1)
    state = start(cx, **STEP_UP)
    resp = cx.get("/callback", query_string={"code": "c", "state": state, "iss": ISSUER})
    assert resp.status_code == 403
    text = resp.get_data(as_text=True)
    assert "second step was not confirmed" in text and 'role="alert"' in text
    assert "Password only" in text


def test_callback_refuses_an_old_auth_time_when_max_age_was_asked(cx, cx_app, monkeypatch):
    fake_token_exchange(monkeypatch, cx_app, acr=MFA, auth_time=int(time.time()) - 3600)
    state = start(cx, **STEP_UP)
    resp = cx.get("/callback", query_string={"code": "c", "state": state, "iss": ISSUER})
    assert resp.status_code == 403
    assert "not recent enough" in resp.get_data(as_text=True)


def test_callback_accepts_a_higher_acr(cx, cx_app, monkeypatch):
    fake_token_exchange(monkeypatch, cx_app, acr=PHISHING_RESISTANT)
    state = start(cx, **STEP_UP)
    resp = cx.get("/callback", query_string={"code": "c", "state": state, "iss": ISSUER})
    assert resp.status_code == 302 and resp.headers["Location"] == "/form-c"


# -- /form-c: the step-up rule ---------------------------------------------------------


@pytest.mark.parametrize(
    "session",
    [
        None,  # not signed in
        {"acr": AAL1, "amr": ("pwd",)},  # password only
        {"acr": MFA, "age": 901 + 5},  # MFA, but too long ago
        {"acr": "urn:example:unknown"},
    ],
)
def test_form_c_redirects_to_step_up(cx, session):
    if session is not None:
        sign_in(cx, **session)
    resp = cx.get("/form-c")
    assert resp.status_code == 302
    assert urlsplit(resp.headers["Location"]).path == "/login"
    assert query(resp.headers["Location"]) == STEP_UP


@pytest.mark.parametrize("acr", [MFA, AAL2, PHISHING_RESISTANT])
def test_form_c_shows_the_form_after_step_up(cx, acr):
    sign_in(cx, acr=acr, age=800)
    resp = cx.get("/form-c")
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    label, due = next_form_c_due(date.today())
    assert f"{due:%B} {due.day}, {due.year}" in text and label in text
    form = next(f for f in parse_forms(text, f"{BASE}/form-c") if f.has("supplier_number"))
    assert form.method == "POST"
    assert form.has("period", "subcontractors", "total_purchases", "certified", "csrf_token")
    assert [o.code for o in reports.periods(date.today())][0] == form.fields["period"]


def test_form_c_validation_errors_are_announced_and_linked(cx, cx_app):
    sign_in(cx)
    resp = cx.post("/form-c", data=answers(cx, supplier_number="12AB", certified=None))
    assert resp.status_code == 400
    text = resp.get_data(as_text=True)
    summary = re.search(r'<div class="[^"]*\berror-summary" role="alert".*?</div>', text, re.S)
    assert summary and 'href="#supplier_number"' in summary.group(0)
    assert 'href="#certified"' in summary.group(0)
    assert re.search(
        r'<input id="supplier_number"[^>]*aria-describedby="supplier_number-hint '
        r'supplier_number-error" aria-invalid="true"',
        text,
    )
    assert 'id="supplier_number-error"' in text and 'id="certified-error"' in text
    assert re.search(r'<input id="certified"[^>]*aria-describedby="certified-error"', text)
    # Fields without errors are not marked invalid; the answers are kept.
    assert not re.search(r'<input id="subcontractors"[^>]*aria-invalid', text)
    assert 'value="$1,000.50"' in text
    assert text.count("<title>Error: ") == 1
    with sqlite3.connect(cx_app.extensions["connexion"].database) as conn:
        assert conn.execute("SELECT count(*) FROM form_c_reports").fetchone() == (0,)


def test_form_c_post_needs_the_csrf_token(cx):
    sign_in(cx)
    resp = cx.post("/form-c", data=answers(cx, csrf_token="wrong"))
    assert resp.status_code == 400
    resp = cx.post("/form-c", data=answers(cx, csrf_token=None))
    assert resp.status_code == 400


def test_form_c_files_through_the_api(cx, cx_app, mint):
    sign_in(cx, access_token=mint())
    resp = cx.post("/form-c", data=answers(cx))
    assert resp.status_code == 302
    path = resp.headers["Location"]
    assert path.startswith("/form-c/confirmation/FC-")
    number = path.rsplit("/", 1)[1]
    page = cx.get(path)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and number in text and "$1,000.50" in text
    with sqlite3.connect(cx_app.extensions["connexion"].database) as conn:
        row = conn.execute(
            "SELECT confirmation, supplier_number, subcontractors, total_purchases_cents"
            " FROM form_c_reports"
        ).fetchone()
    assert row == (number, "1234567890", 4, 100_050)
    # Another user cannot read it.
    sign_in(cx, sub="someone-else", access_token=mint(sub="someone-else"))
    assert cx.get(path).status_code == 404


def test_form_c_steps_up_when_the_api_asks(cx, cx_app, mint):
    """The session's ID token looks fine, but the access token is password-only: the API
    answers insufficient_user_authentication and the page asks the provider for it."""
    sign_in(cx, acr=MFA, access_token=mint(acr=AAL1, amr=["pwd"]))
    resp = cx.post("/form-c", data=answers(cx))
    assert resp.status_code == 302
    assert urlsplit(resp.headers["Location"]).path == "/login"
    assert query(resp.headers["Location"]) == STEP_UP
    with cx.session_transaction() as s:
        assert s["form_c_draft"]["supplier_number"] == "1234567890"
        assert "certified" not in s["form_c_draft"]
    # After the step-up the form comes back with the answers and a notice.
    sign_in(cx, acr=MFA, access_token=mint())
    page = cx.get("/form-c").get_data(as_text=True)
    assert 'role="status"' in page and "submit the report again" in page
    assert 'value="1234567890"' in page and 'value="$1,000.50"' in page
    assert not re.search(r'<input id="certified"[^>]*checked', page)


def test_form_c_uses_the_apis_requirements(cx, mint, monkeypatch):
    """The redirect carries the acr_values and max_age of the API's challenge, not the
    page's own settings."""
    from clients.connexion import api

    real = api.bearer_challenge
    monkeypatch.setattr(
        api,
        "bearer_challenge",
        lambda error, text, **_: real(error, text, acr_values=AAL2, max_age=60),
    )
    sign_in(cx, acr=MFA, age=30, access_token=mint(acr=AAL1))
    resp = cx.post("/form-c", data=answers(cx))
    assert query(resp.headers["Location"]) == {
        "acr_values": AAL2,
        "max_age": "60",
        "next": "/form-c",
    }


def test_form_c_reauthenticates_when_the_access_token_expired(cx, mint):
    now = int(time.time())
    sign_in(cx, access_token=mint(iat=now - 900, exp=now - 300))
    resp = cx.post("/form-c", data=answers(cx))
    assert resp.status_code == 302
    assert query(resp.headers["Location"]) == STEP_UP


def test_form_c_gets_a_new_api_token_when_it_expired(cx, cx_app, mint, monkeypatch):
    """The API token lives minutes; the refresh token gets a new one for the API
    (RFC 8707 2.2) and the report is filed without another sign-in."""
    client = cx_app.extensions["connexion"].oauth
    calls = []

    def refresh(**kw):
        calls.append(kw)
        return {"access_token": mint(), "refresh_token": "rt-next"}

    monkeypatch.setattr(client, "fetch_access_token", refresh)
    now = int(time.time())
    sign_in(cx, access_token=mint(iat=now - 900, exp=now - 300))
    with cx.session_transaction() as s:
        s["refresh_token"] = "rt-now"
    resp = cx.post("/form-c", data=answers(cx))
    assert resp.status_code == 302 and "/form-c/confirmation/FC-" in resp.headers["Location"]
    assert calls == [{"grant_type": "refresh_token", "refresh_token": "rt-now",
                      "resource": API, "scope": API_SCOPE}]  # fmt: skip
    with cx.session_transaction() as s:
        assert s["refresh_token"] == "rt-next"


def test_form_c_without_the_api_scope_says_so(cx, mint):
    sign_in(cx, access_token=mint(scope="openid"))
    resp = cx.post("/form-c", data=answers(cx))
    assert resp.status_code == 403
    assert "does not allow Connexion to file Form C" in resp.get_data(as_text=True)


def test_a_new_user_does_not_see_the_previous_users_draft(cx, cx_app, monkeypatch):
    with cx.session_transaction() as s:
        s["user"] = {"sub": "someone-else"}
        s["form_c_draft"] = {"supplier_number": "9999999999"}
    fake_token_exchange(monkeypatch, cx_app)
    state = start(cx)
    cx.get("/callback", query_string={"code": "c", "state": state, "iss": ISSUER})
    with cx.session_transaction() as s:
        assert s["user"]["sub"] == "user-123" and "form_c_draft" not in s


# -- /dashboard -----------------------------------------------------------------------


def test_dashboard_needs_a_session(cx):
    resp = cx.get("/dashboard")
    assert resp.status_code == 302 and urlsplit(resp.headers["Location"]).path == "/login"


@pytest.mark.parametrize(
    ("acr", "amr", "words", "methods"),
    [
        (AAL1, ["pwd"], "Password only", ["password"]),
        (MFA, ["mfa", "otp", "pwd"], "Password and a second step (MFA)",
         ["more than one sign-in step", "authenticator app code", "password"]),
        (PHISHING_RESISTANT, ["hwk", "mfa", "pwd", "user"],
         "Phishing-resistant security key or passkey",
         ["security key", "more than one sign-in step", "password", "fingerprint, face or screen lock check"]),
        (AAL2, ["lookup", "mfa", "pwd"], "Password and a strong second step (NIST AAL2)",
         ["recovery code", "more than one sign-in step", "password"]),
    ],
)  # fmt: skip
def test_dashboard_says_how_in_plain_words(cx, acr, amr, words, methods):
    sign_in(cx, acr=acr, amr=amr, age=25 * 60 + 10)
    text = cx.get("/dashboard").get_data(as_text=True)
    assert re.search(rf'<strong id="acr-words">{re.escape(words)}</strong>', text)
    listed = re.findall(r"<li>([^<]+)</li>", re.search(r'<ul id="amr-words">(.*?)</ul>', text,
                                                       re.S).group(1))  # fmt: skip
    assert listed == methods
    assert "25 minutes ago" in text and " UTC" in text
    assert "Ada Lovelace" in text


def test_dashboard_says_when_form_c_needs_a_step_up(cx):
    sign_in(cx, acr=AAL1, amr=["pwd"])
    assert "asks only for the step you are missing" in cx.get("/dashboard").get_data(as_text=True)
    sign_in(cx, acr=MFA, age=60)
    assert "You can file it now" in cx.get("/dashboard").get_data(as_text=True)


def test_plain_words_helpers():
    assert ago(0) == "less than a minute ago"
    assert ago(61) == "1 minute ago"
    assert ago(5 * 60 + 59) == "5 minutes ago"
    assert ago(3 * 3600) == "3 hours ago"
    assert ago(None) == "at an unknown time"
    assert amr_words(["swk", "user", "x-new"]) == [
        "passkey",
        "fingerprint, face or screen lock check",
        "x-new",
    ]
    # The companion app's key (no user-presence test) is a push approval, not a passkey.
    assert amr_words(["mfa", "pwd", "swk"]) == [
        "more than one sign-in step",
        "password",
        "approval in the companion app",
    ]
    assert amr_words(["sms", "tel", "email"]) == [
        "text message code",
        "voice call code",
        "email code",
    ]
    assert amr_words("pwd") == []  # amr is an array
    assert satisfies(AAL2, MFA) and satisfies(MFA, MFA) and not satisfies(AAL1, MFA)
    assert not satisfies(None, MFA) and not satisfies("urn:other", MFA)
    assert satisfies("urn:other", "urn:other")


# -- /logout ----------------------------------------------------------------------------


def test_logout_ends_both_sessions(cx):
    sign_in(cx)
    token = csrf(cx)
    resp = cx.post("/logout", data={"csrf_token": token})
    assert resp.status_code == 302
    url = resp.headers["Location"]
    assert url.startswith(f"{ISSUER}/logout?")
    q = query(url)
    assert q["id_token_hint"] == "the.id.token"
    assert q["post_logout_redirect_uri"] == f"{BASE}/"
    assert q["state"]
    with cx.session_transaction() as s:
        assert "user" not in s and "access_token" not in s and "id_token" not in s
    # The provider sends the browser back with the state: a confirmation, once.
    assert "You are signed out" in cx.get("/", query_string={"state": q["state"]}).get_data(
        as_text=True
    )
    assert "You are signed out" not in cx.get("/", query_string={"state": q["state"]}).get_data(
        as_text=True
    )


def test_logout_needs_csrf_and_get_only_asks(cx):
    sign_in(cx)
    page = cx.get("/logout")
    assert page.status_code == 200 and "<h1>Sign out</h1>" in page.get_data(as_text=True)
    assert cx.post("/logout", data={"csrf_token": "nope"}).status_code == 400
    with cx.session_transaction() as s:
        assert "user" in s


def test_forged_logout_state_shows_nothing(cx):
    assert "You are signed out" not in cx.get("/?state=forged").get_data(as_text=True)


# -- every page -------------------------------------------------------------------------


def test_pages_are_accessible_and_locked_down(cx, mint):
    pages = [cx.get("/"), cx.get("/login?max_age=x")]
    sign_in(cx, access_token=mint())
    pages += [cx.get("/dashboard"), cx.get("/form-c"), cx.get("/logout")]
    for resp in pages:
        text = resp.get_data(as_text=True)
        assert '<html lang="en">' in text
        assert text.count("<h1>") == 1
        assert "<main" in text and "<header" in text and "<nav" in text and "<footer" in text
        assert "<script" not in text and " style=" not in text
        assert "https://" not in text.split("<body>")[0]  # no CDN in the head
        csp = resp.headers["Content-Security-Policy"]
        assert "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert f"form-action 'self' {ISSUER}" in csp
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"
        for label_for in re.findall(r'<label for="([^"]+)"', text):
            assert f'id="{label_for}"' in text
    css = cx.get("/static/connexion.css")
    assert css.status_code == 200 and "text/css" in css.headers["Content-Type"]


def test_session_cookie_has_its_own_name_and_flags(cx):
    resp = cx.get("/login")
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith("connexion_session=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" in cookie  # the base URL is https


def test_settings_from_the_environment(monkeypatch, tmp_path):
    from clients.connexion import create_app

    monkeypatch.setenv("CONNEXION_ISSUER", "https://idp.example.gov/")
    monkeypatch.setenv("CONNEXION_CLIENT_ID", "cx-prod")
    monkeypatch.setenv("CONNEXION_DATABASE", str(tmp_path / "env.sqlite3"))
    monkeypatch.setenv("CONNEXION_STEP_UP_MAX_AGE", "600")
    monkeypatch.setenv("CONNEXION_SECRET_KEY", "from-env")
    app = create_app()
    cx = app.extensions["connexion"]
    assert cx.issuer == "https://idp.example.gov" and cx.client_id == "cx-prod"
    assert cx.step_up_max_age == 600 and cx.step_up_acr == MFA
    assert cx.base_url == "http://localhost:5001"
    assert app.secret_key == "from-env"
    assert cx.oauth.client_id == "cx-prod"
    assert (tmp_path / "env.sqlite3").exists()


def test_callback_when_the_id_token_does_not_verify(cx, cx_app, monkeypatch):
    from joserfc.errors import BadSignatureError  # what Authlib's ID token check raises

    def refuse(**kw):
        raise BadSignatureError()

    monkeypatch.setattr(cx_app.extensions["connexion"].oauth, "authorize_access_token", refuse)
    state = start(cx)
    resp = cx.get("/callback", query_string={"code": "c", "state": state, "iss": ISSUER})
    assert resp.status_code == 400
    assert "could not verify" in resp.get_data(as_text=True)
    with cx.session_transaction() as s:
        assert "user" not in s


def test_the_mfa_banner_counts_the_days_to_the_deadline(cx_app):
    from datetime import date

    from clients.connexion.app import mfa_banner

    cx_app.extensions["connexion"].mfa_deadline = date(2027, 1, 3)
    with cx_app.test_request_context():
        banner = mfa_banner({"amr": ["pwd"]}, today=date(2026, 12, 4))
        assert banner["deadline"] == "January 3, 2027" and banner["days_left"] == 30
        assert banner["setup_url"].endswith("/mfa/setup?next=account")
        # Signed in with a second step: no banner.
        assert mfa_banner({"amr": ["mfa", "otp", "pwd"]}) is None


def test_the_dashboard_shows_the_banner_until_a_second_step_is_used(cx_app, cx):
    from datetime import date, timedelta

    cx_app.extensions["connexion"].mfa_deadline = date.today() + timedelta(days=12)
    sign_in(cx, acr=AAL1, amr=("pwd",))
    text = cx.get("/dashboard").get_data(as_text=True)
    assert 'id="mfa-banner"' in text and "12 days left." in text
    assert f'href="{ISSUER}/mfa/setup?next=account"' in text
    assert f'id="manage-methods" href="{ISSUER}/account/security"' in text
    sign_in(cx)  # with a second step
    text = cx.get("/dashboard").get_data(as_text=True)
    assert 'id="mfa-banner"' not in text and 'id="manage-methods"' in text
    # After the deadline the banner says it is required, with no count.
    cx_app.extensions["connexion"].mfa_deadline = date.today() - timedelta(days=1)
    sign_in(cx, acr=AAL1, amr=("pwd",))
    text = cx.get("/dashboard").get_data(as_text=True)
    assert "A second sign-in step is required" in text and "days left" not in text
