"""CORS for browser applications: preflights and answers of the token, revocation, PAR and
userinfo endpoints for the origins a client allows; public documents for every origin;
nothing for the rest. The browser's side is tests/e2e/test_cors_browser.py."""

from __future__ import annotations

import base64

import pytest

from clients.mockrp import MockRP
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD

ISS = "http://localhost"
SPA = "https://app.example.gov"
OTHER = "https://evil.example"
CB = "https://app.example.gov/callback"
EMAIL = "ada@example.com"


@pytest.fixture
def spa(app, make_client, make_user):
    """A public client (no secret, PKCE) whose code runs on https://app.example.gov."""
    make_user(email=EMAIL)
    client_id, _ = make_client(auth_method="none", redirect_uris=[CB], first_party=True,
                               allowed_origins=[SPA, "http://localhost:3000"])  # fmt: skip
    return client_id


@pytest.fixture
def tokens(app, spa):
    rp = MockRP(ISS, spa, CB, auth_method="none", transport=FlaskTransport(app.test_client()))
    return rp.exchange_code(rp.sign_in(EMAIL, PASSWORD))


def preflight(client, path: str, origin: str, method: str = "POST",
              headers: str = "content-type"):  # fmt: skip
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    })  # fmt: skip


def vary(resp) -> set[str]:
    return {v.strip().lower() for v in resp.headers.get("Vary", "").split(",") if v.strip()}


# -- registration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "stored"),
    [
        ("https://App.Example.gov", "https://app.example.gov"),
        ("https://app.example.gov:443", "https://app.example.gov"),
        ("https://app.example.gov:8443", "https://app.example.gov:8443"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_origins_are_stored_as_browsers_send_them(app, origin, stored):
    from idp.oidc.clients import create_client

    with app.app_context():
        c, _ = create_client(name="SPA", redirect_uris=[CB], auth_method="none",
                             allowed_origins=[origin])  # fmt: skip
        assert c.allowed_origins == [stored]


@pytest.mark.parametrize(
    "origin",
    ["http://app.example.gov", "https://app.example.gov/", "https://app.example.gov/path",
     "https://*.example.gov", "*", "https://app.example.gov?x=1", "https://u@app.example.gov",
     "app.example.gov", "ftp://app.example.gov", "null"],
)  # fmt: skip
def test_origins_that_are_not_origins_are_refused(app, origin):
    from idp.oidc.clients import ClientValidationError, create_client

    with app.app_context(), pytest.raises(ClientValidationError, match="allowed origin"):
        create_client(name="SPA", redirect_uris=[CB], auth_method="none",
                      allowed_origins=[origin])  # fmt: skip


# -- preflights --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/token", "/revoke", "/par", "/userinfo"])
def test_preflight_for_an_allowed_origin(client, spa, path):
    resp = preflight(client, path, SPA, "POST", "authorization, content-type")
    assert resp.status_code == 204
    assert resp.headers["Access-Control-Allow-Origin"] == SPA
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    allowed = {h.strip().lower() for h in resp.headers["Access-Control-Allow-Headers"].split(",")}
    assert allowed == {"authorization", "content-type"}
    assert resp.headers["Access-Control-Max-Age"] == "600"
    assert "origin" in vary(resp)
    assert "Access-Control-Allow-Credentials" not in resp.headers


@pytest.mark.parametrize("path", ["/token", "/revoke", "/par", "/userinfo"])
def test_preflight_for_another_origin_is_refused(client, spa, path):
    resp = preflight(client, path, OTHER)
    assert resp.status_code == 403
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "origin" in vary(resp)


def test_no_preflight_for_introspection_or_registration(client, spa):
    for path in ("/introspect", "/connect/register"):
        resp = preflight(client, path, SPA)
        assert "Access-Control-Allow-Origin" not in resp.headers, path


def test_a_plain_options_request_lists_the_methods(client):
    resp = client.options("/userinfo")
    assert resp.status_code == 204
    assert {m.strip() for m in resp.headers["Allow"].split(",")} == {"GET", "POST", "OPTIONS"}


# -- answers -----------------------------------------------------------------------------


def test_token_answers_name_the_clients_origin(app, client, spa):
    rp = MockRP(ISS, spa, CB, auth_method="none", transport=FlaskTransport(app.test_client()))
    result = rp.sign_in(EMAIL, PASSWORD)
    resp = client.post("/token", data={
        "grant_type": "authorization_code", "code": result.code, "redirect_uri": CB,
        "client_id": spa, "code_verifier": rp.last_request["code_verifier"],
    }, headers={"Origin": SPA})  # fmt: skip
    assert resp.status_code == 200, resp.get_json()
    assert resp.headers["Access-Control-Allow-Origin"] == SPA
    assert "origin" in vary(resp)
    assert "Access-Control-Allow-Credentials" not in resp.headers
    # An error is readable too, so the application can say what went wrong.
    again = client.post("/token", data={
        "grant_type": "authorization_code", "code": result.code, "redirect_uri": CB,
        "client_id": spa, "code_verifier": rp.last_request["code_verifier"],
    }, headers={"Origin": SPA})  # fmt: skip
    assert again.status_code == 400 and again.headers["Access-Control-Allow-Origin"] == SPA


def test_token_answers_never_name_an_origin_the_client_does_not_allow(app, client, spa,
                                                                      make_client):  # fmt: skip
    other_id, other_secret = make_client(allowed_origins=["https://other-app.example.gov"])
    for origin, client_id in ((OTHER, spa), (SPA, other_id), ("null", spa)):
        resp = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": "x",
                                           "client_id": client_id}, headers={"Origin": origin})  # fmt: skip
        assert "Access-Control-Allow-Origin" not in resp.headers, (origin, client_id)
        assert "origin" in vary(resp)
    # HTTP Basic names the client too.
    basic = base64.b64encode(f"{other_id}:{other_secret}".encode()).decode()
    resp = client.post("/token", data={"grant_type": "client_credentials"},
                       headers={"Origin": "https://other-app.example.gov",
                                "Authorization": f"Basic {basic}"})  # fmt: skip
    assert resp.headers["Access-Control-Allow-Origin"] == "https://other-app.example.gov"


def test_userinfo_answers_the_tokens_client_origin(client, spa, tokens, make_client):
    bearer = {"Authorization": f"Bearer {tokens.access_token}"}
    resp = client.get("/userinfo", headers={**bearer, "Origin": SPA})
    assert resp.status_code == 200
    assert resp.headers["Access-Control-Allow-Origin"] == SPA
    assert resp.headers["Access-Control-Expose-Headers"] == "WWW-Authenticate"
    # An origin of another client is not this token's.
    make_client(allowed_origins=["https://other-app.example.gov"])
    resp = client.get("/userinfo", headers={**bearer, "Origin": "https://other-app.example.gov"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    # Without a valid token, an origin some client allows may read the 401.
    resp = client.get("/userinfo", headers={"Authorization": "Bearer nope", "Origin": SPA})
    assert resp.status_code == 401 and resp.headers["Access-Control-Allow-Origin"] == SPA
    resp = client.get("/userinfo", headers={"Authorization": "Bearer nope", "Origin": OTHER})
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_revocation_answers_the_clients_origin(client, spa, tokens):
    resp = client.post("/revoke", data={"token": tokens.access_token, "client_id": spa},
                       headers={"Origin": SPA})  # fmt: skip
    assert resp.status_code == 200 and resp.headers["Access-Control-Allow-Origin"] == SPA


def test_public_documents_are_open_to_every_origin(client):
    for path in ("/jwks", "/.well-known/openid-configuration"):
        resp = client.get(path, headers={"Origin": OTHER})
        assert resp.status_code == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in resp.headers
        pre = preflight(client, path, OTHER, "GET")
        assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"


def test_introspection_answers_no_browser(client, spa, tokens, make_client):
    client_id, secret = make_client(allowed_origins=[SPA])
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    resp = client.post("/introspect", data={"token": tokens.access_token},
                       headers={"Origin": SPA, "Authorization": f"Basic {basic}"})  # fmt: skip
    assert resp.status_code == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


def test_a_disabled_client_allows_no_origin(app, client, spa):
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.clients import update_client

    with app.app_context():
        row = db.session.execute(db.select(OAuthClient).filter_by(client_id=spa)).scalar_one()
        update_client(row, disabled=True)
    assert preflight(client, "/token", SPA).status_code == 403


def test_changed_origins_apply_at_once(app, client, spa):
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.clients import update_client

    assert preflight(client, "/token", SPA).status_code == 204
    with app.app_context():
        row = db.session.execute(db.select(OAuthClient).filter_by(client_id=spa)).scalar_one()
        update_client(row, allowed_origins=["https://new.example.gov"])
    assert preflight(client, "/token", SPA).status_code == 403
    assert preflight(client, "/token", "https://new.example.gov").status_code == 204
