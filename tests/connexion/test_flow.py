"""Connexion against the REAL provider, both served over HTTP on free 127.0.0.1 ports.

One ``requests.Session`` plays the browser for both hosts (cookies for each, told apart
by name since cookies ignore ports); ``parse_forms`` fills the provider's pages.
The journey: a password-only sign-in, the Form C page and the API asking for more,
a step-up that shows only the authenticator-app challenge, filing the report, and
RP-initiated logout that ends the provider's session too. The Form C API is a resource
registered at the provider (RFC 8707): its token is requested with ``resource``, and
the API checks it offline (``aud``, RFC 9068) or at the introspection endpoint with its
own client (RFC 7662); the journey runs in both modes.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from werkzeug.serving import make_server

from clients.connexion import create_app as create_connexion
from clients.connexion.due_dates import next_form_c_due, next_form_c_period, period_code
from clients.connexion.tokens import parse_bearer_challenge
from clients.mockrp.forms import Form, parse_forms
from tests.conftest import PASSWORD, make_settings
from tests.integration.mfa_helpers import totp_code

EMAIL = "ada@example.com"
AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
MFA = "urn:idp:acr:mfa"


def _placeholder(environ, start_response):  # replaced once the apps are built
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready"]


@dataclass
class World:
    issuer: str
    base: str
    provider: object
    connexion: object
    secret: str  # the user's TOTP secret
    database: str
    api: str  # the Form C API's resource URI


API_SCOPE = "form-c:file"


def _seed(provider, base: str) -> tuple[str, str, str]:
    """Register Connexion, its Form C API (a resource with its own client) and Ada with
    an authenticator app; returns (client secret, TOTP secret, API client secret)."""
    from flask_migrate import upgrade

    from idp.extensions import db
    from idp.models import Factor, User
    from idp.models.base import utcnow
    from idp.oidc.clients import create_client
    from idp.oidc.resources import create_resource
    from idp.security import totp
    from idp.services import services

    with provider.app_context():
        upgrade()
        _api_client, api_secret = create_client(
            client_id="connexion-api", name="Connexion Form C API", redirect_uris=[],
            grant_types=["client_credentials"], scope="",
        )  # fmt: skip
        create_resource(f"{base}/api", [(API_SCOPE, "File Form C")], name="Form C API",
                        client_id="connexion-api")  # fmt: skip
        _client, client_secret = create_client(
            client_id="connexion",
            name="Connexion",
            redirect_uris=[f"{base}/callback"],
            post_logout_redirect_uris=[f"{base}/"],
            scope=f"openid profile email {API_SCOPE}",
            first_party=True,
            resources=[f"{base}/api"],
        )
        user = User(
            email=EMAIL,
            name="Ada Lovelace",
            email_verified=True,
            password_hash=services().passwords.hash(PASSWORD),
        )
        db.session.add(user)
        db.session.flush()
        secret = totp.new_secret()
        db.session.add(
            Factor(
                user_id=user.id,
                type="totp",
                label="Phone",
                status="active",
                secret_enc=services().secrets.encrypt(secret, context=f"totp:{user.id}"),
                activated_at=utcnow(),
            )
        )
        db.session.commit()
    return client_secret, secret, api_secret


@pytest.fixture(params=["jwt", "introspection"])
def world(request, tmp_path: Path, keys_dir):
    from idp.app import create_app as create_provider
    from idp.extensions import db
    from idp.store import MemoryStore

    idp_server = make_server("127.0.0.1", 0, _placeholder)
    cx_server = make_server("127.0.0.1", 0, _placeholder)
    issuer = f"http://127.0.0.1:{idp_server.server_port}"
    base = f"http://127.0.0.1:{cx_server.server_port}"
    # MFA is not required: a password alone signs in, the factor is for step-up. The
    # "add another method" recommendation (Ada has one factor) is off: the step-up shows
    # the challenge page and nothing else.
    settings = replace(
        make_settings(tmp_path, keys_dir, mfa={"recommend_second": False}), issuer=issuer
    )
    provider = create_provider(settings, store=MemoryStore(), warn=False)
    provider.config["TESTING"] = True
    client_secret, totp_secret, api_secret = _seed(provider, base)
    database = str(tmp_path / "connexion.sqlite3")
    connexion = create_connexion(
        {
            "CONNEXION_ISSUER": issuer,
            "CONNEXION_CLIENT_ID": "connexion",
            "CONNEXION_CLIENT_SECRET": client_secret,
            "CONNEXION_BASE_URL": base,
            "CONNEXION_DATABASE": database,
            "CONNEXION_SECRET_KEY": "test-secret-key",
            "CONNEXION_API_TOKEN_CHECK": request.param,
            "CONNEXION_API_CLIENT_SECRET": api_secret,
        }
    )
    idp_server.app, cx_server.app = provider, connexion
    threads = [
        threading.Thread(target=s.serve_forever, daemon=True) for s in (idp_server, cx_server)
    ]
    for t in threads:
        t.start()
    try:
        yield World(issuer, base, provider, connexion, totp_secret, database, f"{base}/api")
    finally:
        for s in (idp_server, cx_server):
            s.shutdown()
        for t in threads:
            t.join(timeout=5)
        for s in (idp_server, cx_server):
            s.server_close()
        with provider.app_context():
            db.session.remove()
            db.engine.dispose()


# -- the browser ------------------------------------------------------------------------


def get(browser: requests.Session, url: str, **kw) -> requests.Response:
    return browser.get(url, timeout=10, **kw)


def form_with(resp: requests.Response, *names: str) -> Form:
    forms = [f for f in parse_forms(resp.text, resp.url) if f.has(*names)]
    assert forms, f"no form with {names} at {resp.url}: {resp.text[:400]}"
    return forms[0]


def submit(browser: requests.Session, form: Form, **kw) -> requests.Response:
    assert form.method == "POST"
    return browser.post(form.action, data=form.submit_data(), timeout=10, **kw)


def path(url: str) -> str:
    return urlsplit(url).path


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def visited(resp: requests.Response) -> list[str]:
    return [r.url for r in resp.history] + [resp.url]


def connexion_session(world: World, browser: requests.Session) -> dict:
    """Decode Connexion's signed session cookie, as the server would."""
    value = browser.cookies.get("connexion_session", domain="127.0.0.1")
    app = world.connexion
    return app.session_interface.get_signing_serializer(app).loads(value)


def granted_resources(world: World) -> list:
    """The resources each authorization code issued so far was granted for."""
    from idp.extensions import db
    from idp.models import AuthorizationCode

    with world.provider.app_context():
        rows = db.session.execute(db.select(AuthorizationCode).order_by(AuthorizationCode.id))
        return [c.resources for c in rows.scalars()]


def claims_of(jwt: str) -> dict:
    """The payload of a JWT (already verified by whoever issued or accepted it)."""
    body = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def pushed_request(world: World, request_uri: str) -> dict[str, str]:
    """The parameters Connexion pushed to the provider under *request_uri* (RFC 9126)."""
    import json

    from idp.security.crypto import hash_token

    raw = world.provider.extensions["idp"].store.get(f"par:{hash_token(request_uri)}")
    assert raw is not None, "nothing was pushed under that request_uri"
    return json.loads(raw)["params"]


def sign_in_with_password(world: World, browser: requests.Session) -> requests.Response:
    page = get(browser, f"{world.base}/login")
    assert page.url.startswith(f"{world.issuer}/"), page.url
    login = form_with(page, "email", "password")
    login.fill(email=EMAIL, password=PASSWORD)
    return submit(browser, login)


# -- the journey ------------------------------------------------------------------------


def test_sign_in_step_up_file_form_c_and_sign_out(world: World):
    browser = requests.Session()

    # 1. Password only: the dashboard says so.
    dashboard = sign_in_with_password(world, browser)
    assert dashboard.status_code == 200
    assert dashboard.url == f"{world.base}/dashboard", visited(dashboard)
    assert "Password only" in dashboard.text
    assert "<li>password</li>" in dashboard.text
    assert "authenticator app code" not in dashboard.text
    assert "less than a minute ago" in dashboard.text or "1 minute ago" in dashboard.text
    stored = connexion_session(world, browser)
    assert stored["user"]["acr"] == AAL1 and stored["user"]["amr"] == ["pwd"]
    assert stored["user"]["email"] == EMAIL
    assert len(browser.cookies.get("connexion_session")) < 4000  # fits in a cookie
    # The session's access token is the API's (RFC 8707): for its resource, with its
    # scope only; the OpenID Connect scopes stayed with the token used for userinfo.
    at = claims_of(stored["access_token"])
    assert at["aud"] == world.api and at["scope"] == API_SCOPE
    assert at["client_id"] == "connexion" and at["acr"] == AAL1
    assert granted_resources(world) == [[world.api]]  # the code recorded the resource

    # 2. The API refuses the password-only access token (RFC 9470) ...
    api = browser.post(
        f"{world.base}/api/form-c",
        json={},
        headers={"Authorization": f"Bearer {stored['access_token']}"},
        timeout=10,
    )
    assert api.status_code == 401
    challenge = parse_bearer_challenge(api.headers["WWW-Authenticate"])
    assert challenge["error"] == "insufficient_user_authentication"
    assert challenge["acr_values"] == MFA
    assert challenge["max_age"] == "900"
    # ... and an ID token is no access token (typ), even though it is validly signed.
    api = browser.post(
        f"{world.base}/api/form-c",
        json={},
        headers={"Authorization": f"Bearer {stored['id_token']}"},
        timeout=10,
    )
    assert api.status_code == 401
    assert parse_bearer_challenge(api.headers["WWW-Authenticate"])["error"] == "invalid_token"

    # 3. The Form C page asks for the step-up level and a recent sign-in.
    resp = get(browser, f"{world.base}/form-c", allow_redirects=False)
    assert resp.status_code == 302
    assert path(resp.headers["Location"]) == "/login"
    assert query(resp.headers["Location"]) == {
        "acr_values": MFA,
        "max_age": "900",
        "next": "/form-c",
    }

    # 4. A report posted with the password-only session goes to the API, which answers
    # insufficient_user_authentication; the page steps up with what the API asked for.
    csrf = form_with(dashboard, "csrf_token").fields["csrf_token"]
    label, due = next_form_c_due(date.today())
    answers = {
        "csrf_token": csrf,
        "supplier_number": "1234567890",
        "period": period_code(next_form_c_period(date.today())),
        "subcontractors": "3",
        "total_purchases": "12,500.00",
        "certified": "yes",
    }
    resp = browser.post(f"{world.base}/form-c", data=answers, allow_redirects=False, timeout=10)
    assert resp.status_code == 302, resp.text[:300]
    login_url = requests.compat.urljoin(resp.url, resp.headers["Location"])
    assert path(login_url) == "/login"
    assert query(login_url) == {"acr_values": MFA, "max_age": "900", "next": "/form-c"}

    resp = get(browser, login_url, allow_redirects=False)
    authorize = resp.headers["Location"]
    assert authorize.startswith(f"{world.issuer}/authorize?")
    # Connexion pushed the request first (RFC 9126): the browser carries only its
    # reference; the parameters wait at the provider.
    browser_params = query(authorize)
    assert set(browser_params) == {"client_id", "request_uri"}
    params = pushed_request(world, browser_params["request_uri"])
    assert params["acr_values"] == MFA and params["max_age"] == "900"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["state"] and params["nonce"]
    assert params["scope"] == f"openid profile email {API_SCOPE}"
    assert params["redirect_uri"] == f"{world.base}/callback"

    # 5. The provider asks only for the second step: no sign-in page on the way.
    challenge_page = get(browser, authorize)
    assert path(challenge_page.url) == "/mfa/challenge", visited(challenge_page)
    assert not any(path(u) == "/signin" for u in visited(challenge_page))
    fields = {n for f in parse_forms(challenge_page.text, challenge_page.url) for n in f.fields}
    assert "password" not in fields
    code_form = form_with(challenge_page, "code")
    code_form.fill(code=totp_code(world.secret))
    form_page = submit(browser, code_form)

    # 6. Back at Form C, with the answers kept: check them and submit again.
    assert form_page.url == f"{world.base}/form-c", visited(form_page)
    assert "Thank you for confirming it is you" in form_page.text
    assert f"{due:%B} {due.day}, {due.year}" in form_page.text  # the computed due date
    report = form_with(form_page, "supplier_number", "certified")
    assert report.fields["supplier_number"] == "1234567890"
    assert report.fields["total_purchases"] == "12,500.00"
    assert "certified" not in report.fields  # certifying again is the user's own act
    report.fill(certified="yes")
    done = submit(browser, report)
    assert done.status_code == 200
    assert path(done.url).startswith("/form-c/confirmation/FC-")
    number = path(done.url).rsplit("/", 1)[1]
    assert number in done.text and label in done.text and "$12,500.00" in done.text

    with sqlite3.connect(world.database) as conn:
        rows = conn.execute(
            "SELECT confirmation, supplier_number, subcontractors, total_purchases_cents, acr"
            " FROM form_c_reports"
        ).fetchall()
    assert rows == [(number, "1234567890", 3, 1_250_000, MFA)]

    stored = connexion_session(world, browser)
    assert stored["user"]["acr"] == MFA
    assert {"pwd", "otp", "mfa"} <= set(stored["user"]["amr"])
    assert "form_c_draft" not in stored
    dashboard = get(browser, f"{world.base}/dashboard")
    assert "Password and a second step (MFA)" in dashboard.text
    assert "authenticator app code" in dashboard.text

    # 7. Sign out: RP-initiated logout ends the provider's session as well.
    logout = form_with(dashboard, "csrf_token")
    assert path(logout.action) == "/logout"
    resp = submit(browser, logout, allow_redirects=False)
    end_session = resp.headers["Location"]
    assert end_session.startswith(f"{world.issuer}/logout?")
    params = query(end_session)
    assert params["id_token_hint"] == stored["id_token"]
    assert params["post_logout_redirect_uri"] == f"{world.base}/"
    assert params["state"]
    home = get(browser, end_session)
    assert home.url.startswith(f"{world.base}/?state="), visited(home)
    assert "You are signed out" in home.text
    assert get(browser, f"{world.base}/dashboard", allow_redirects=False).status_code == 302

    # The next sign-in starts at the provider's sign-in page again.
    again = get(browser, f"{world.base}/login")
    assert path(again.url) == "/signin", visited(again)
    assert form_with(again, "email", "password")


def test_form_c_sign_in_from_scratch_asks_password_then_code(world: World):
    """Opening Form C without a session: the password, then the code, then the form."""
    browser = requests.Session()
    page = get(browser, f"{world.base}/form-c")
    assert path(page.url) == "/signin", visited(page)
    login = form_with(page, "email", "password")
    login.fill(email=EMAIL, password=PASSWORD)
    page = submit(browser, login)
    assert path(page.url) == "/mfa/challenge", visited(page)
    code = form_with(page, "code")
    code.fill(code=totp_code(world.secret))
    page = submit(browser, code)
    assert page.url == f"{world.base}/form-c", visited(page)
    assert form_with(page, "supplier_number", "period", "subcontractors", "total_purchases")
    assert "Thank you for confirming" not in page.text  # nothing was kept: nothing posted
