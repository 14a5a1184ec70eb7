"""Pushed Authorization Requests (RFC 9126): /par, request_uri at /authorize, clients that
must push.

Independent clients run the full flow over real HTTP: ``oic`` (pyoidc, which has no PAR
call of its own) reads the endpoint from discovery, builds the authorization request
that is pushed, parses the authorization response, redeems the code and verifies the
ID token; Authlib's *client* (``OAuth2Session``) pushes with its own PKCE and client
authentication, with the ID token verified by jwcrypto. The rest drives the provider
with raw requests.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import replace
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jwt as jwc_jwt
from werkzeug.serving import make_server

from clients.mockrp import MockRP
from clients.mockrp.rp import rfc6749_basic_credentials
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD, make_settings

ISS = "http://localhost"
CB = "https://rp.example.com/cb"
EMAIL = "ada@example.com"
URN = "urn:ietf:params:oauth:request_uri:"


@pytest.fixture
def registered(app, make_client, make_user):
    make_user(email=EMAIL)
    return make_client(first_party=True)


def new_rp(app, client_id: str, secret: str | None, **kw) -> MockRP:
    return MockRP(ISS, client_id, CB, client_secret=secret,
                  transport=FlaskTransport(app.test_client()), **kw)  # fmt: skip


def push(rp: MockRP, scope: str = "openid email", *, auth: bool = True, **extra):
    """POST the authorization request *rp* would send to /par; returns the response."""
    url, _state = rp.authorization_url(scope, **extra)
    data = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    basic = rfc6749_basic_credentials(rp.client_id, rp.client_secret) if auth else None
    return rp.transport.request("POST", f"{ISS}/par", data=data, auth=basic,
                                headers={"Accept": "application/json"})  # fmt: skip


def authorize_with(rp: MockRP, request_uri: str, client_id: str | None = None, **extra):
    query = {"client_id": client_id or rp.client_id, "request_uri": request_uri, **extra}
    return rp.transport.request("GET", f"{ISS}/authorize?{urlencode(query)}")


def pushed(rp: MockRP, scope: str = "openid email", **extra) -> str:
    resp = push(rp, scope, **extra)
    assert resp.status == 201, resp.text
    return resp.json()["request_uri"]


def events(app, name: str) -> list[dict]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(db.select(AuditEvent).filter_by(event=name)).scalars()
        return [dict(r.details or {}) | {"client_id": r.client_id} for r in rows]


# -- discovery and the endpoint ------------------------------------------------------------


def test_discovery_names_the_par_endpoint(client):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["pushed_authorization_request_endpoint"] == f"{ISS}/par"
    assert meta["require_pushed_authorization_requests"] is False


def test_a_push_returns_a_one_minute_request_uri(app, registered):
    rp = new_rp(app, *registered)
    resp = push(rp)
    assert resp.status == 201
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.json()
    assert body["expires_in"] == 60
    assert body["request_uri"].startswith(URN)
    assert len(body["request_uri"]) - len(URN) >= 43  # 256 random bits
    assert pushed(rp) != body["request_uri"]


def test_the_pushed_request_signs_in_and_yields_tokens(app, registered):
    rp = new_rp(app, *registered)
    request_uri = pushed(rp, nonce="n-0S6_WzA2Mj")
    state = rp.last_request
    resp = authorize_with(rp, request_uri)
    result = rp.resume(resp, state, email=EMAIL, password=PASSWORD)
    assert result.code and result.iss == ISS
    tokens = rp.exchange_code(result)  # MockRP checks the nonce, at_hash, signature...
    assert rp.verify_id_token(tokens.id_token, nonce="n-0S6_WzA2Mj")


def test_a_request_uri_is_used_once(app, registered):
    rp = new_rp(app, *registered)
    request_uri = pushed(rp)
    state = rp.last_request
    assert rp.resume(authorize_with(rp, request_uri), state, email=EMAIL, password=PASSWORD).code
    again = authorize_with(rp, request_uri)
    assert again.status == 400 and "Location" not in again.headers
    assert "expired or was already used" in again.text
    assert events(app, "authorization.refused")[-1]["error"] == "invalid_request_uri"


def test_a_request_uri_belongs_to_the_client_that_pushed_it(app, registered, make_client):
    other_id, _ = make_client()
    rp = new_rp(app, *registered)
    request_uri = pushed(rp)
    state = rp.last_request
    refused = authorize_with(rp, request_uri, client_id=other_id)
    assert refused.status == 400 and "not issued to this client" in refused.text
    missing = rp.transport.request(
        "GET", f"{ISS}/authorize?{urlencode({'request_uri': request_uri})}"
    )
    assert missing.status == 400 and "client_id is required" in missing.text
    # Neither burned it: the client that pushed it still can use it.
    assert rp.resume(authorize_with(rp, request_uri), state, email=EMAIL, password=PASSWORD).code


def test_an_expired_request_uri_is_refused(app, registered):
    from idp.security.crypto import hash_token

    rp = new_rp(app, *registered)
    request_uri = pushed(rp)
    with app.app_context():
        app.extensions["idp"].store.expire(f"par:{hash_token(request_uri)}", 1)
    time.sleep(1.2)
    resp = authorize_with(rp, request_uri)
    assert resp.status == 400 and "expired or was already used" in resp.text


@pytest.mark.parametrize(
    "request_uri",
    ["https://rp.example.com/request.jwt", f"{URN}made-up", "urn:ietf:params:oauth:request_uri"],
)
def test_other_request_uris_are_refused(app, registered, request_uri):
    resp = authorize_with(new_rp(app, *registered), request_uri)
    assert resp.status == 400 and "Location" not in resp.headers


def test_parameters_beside_the_request_uri_are_ignored(app, registered):
    """RFC 9126 4 (as RFC 9101 6.3 for request objects): the pushed parameters are the
    request; a redirect_uri or scope added in the browser changes nothing."""
    rp = new_rp(app, *registered)
    request_uri = pushed(rp, "openid email")
    state = rp.last_request
    resp = authorize_with(rp, request_uri, redirect_uri="https://evil.example/cb",
                          scope="openid email phone offline_access", state="forged")  # fmt: skip
    result = rp.resume(resp, state, email=EMAIL, password=PASSWORD)
    assert result.redirect_url.startswith(CB + "?") and result.state == state["state"]
    assert rp.exchange_code(result).scope == "openid email"


# -- what /par refuses ---------------------------------------------------------------------


def test_client_authentication_is_required_as_at_the_token_endpoint(app, registered):
    rp = new_rp(app, registered[0], "not the secret")
    resp = push(rp)
    assert resp.status == 401 and resp.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in resp.headers
    resp = push(new_rp(app, registered[0], None, auth_method="none"), auth=False)
    assert resp.status == 401 and resp.json()["error"] == "invalid_client"
    assert events(app, "par.refused")


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "email"}, "invalid_scope"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"max_age": "soon"}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"request_uri": f"{URN}abc"}, "invalid_request"),
        ({"client_id": "someone-else"}, "invalid_request"),
    ],
)
def test_a_push_is_validated_as_an_authorization_request(app, registered, extra, error):
    resp = push(new_rp(app, *registered), **extra)
    assert resp.status == 400, resp.text
    assert resp.json()["error"] == error
    assert resp.headers["Content-Type"].startswith("application/json")


def test_a_public_client_pushes_with_pkce(app, make_client, make_user):
    make_user(email=EMAIL)
    client_id, _ = make_client(auth_method="none", first_party=True)
    rp = new_rp(app, client_id, None, auth_method="none")
    url, state = rp.authorization_url("openid")
    data = dict(parse_qsl(urlsplit(url).query))
    resp = rp.transport.request("POST", f"{ISS}/par", data=data)
    assert resp.status == 201, resp.text
    result = rp.resume(authorize_with(rp, resp.json()["request_uri"]), state, email=EMAIL,
                       password=PASSWORD)  # fmt: skip
    assert rp.exchange_code(result).id_token
    data.pop("code_challenge"), data.pop("code_challenge_method")
    resp = rp.transport.request("POST", f"{ISS}/par", data=data)
    assert resp.status == 400 and "PKCE" in resp.json()["error_description"]


def test_repeated_parameters_are_refused(app, registered):
    rp = new_rp(app, *registered)
    resp = rp.transport.request(
        "POST", f"{ISS}/par", data=[("scope", "openid"), ("scope", "openid email")],
        auth=rfc6749_basic_credentials(*registered),
    )  # fmt: skip
    assert resp.status == 400 and resp.json()["error"] == "invalid_request"


# -- clients that must push ----------------------------------------------------------------


@pytest.fixture
def strict(app, make_client, make_user):
    """A third-party client (consent page) registered with require_par."""
    make_user(email=EMAIL)
    return make_client(require_par=True)


def test_a_client_that_must_push_is_refused_a_plain_request(app, strict):
    rp = new_rp(app, *strict)
    resp = rp.start()
    assert resp.status == 302 and resp.location.startswith(CB + "?")
    query = dict(parse_qsl(urlsplit(resp.location).query))
    assert query["error"] == "invalid_request" and "push" in query["error_description"]


def test_a_client_that_must_push_signs_in_through_every_step(app, strict):
    """Sign-in page, then consent, then the code: the pushed request survives the
    steps (it is resumed from the sign-in transaction)."""
    rp = new_rp(app, *strict)
    request_uri = pushed(rp)
    state = rp.last_request
    result = rp.resume(authorize_with(rp, request_uri), state, email=EMAIL, password=PASSWORD)
    assert result.code, (result.error, result.error_description)
    assert rp.exchange_code(result).id_token


def test_registration_metadata_round_trip(app, client):
    from idp.oidc.registration import issue_token

    with app.app_context():
        token, _ = issue_token(expires_in=600)
    resp = client.post("/connect/register", json={
        "redirect_uris": [CB], "require_pushed_authorization_requests": True,
    }, headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["require_pushed_authorization_requests"] is True
    rp = new_rp(app, body["client_id"], body["client_secret"])
    assert "error=invalid_request" in rp.start().location
    resp = client.post("/connect/register", json={
        "redirect_uris": [CB], "require_pushed_authorization_requests": "yes",
    }, headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert resp.status_code in (400, 401)


def test_private_key_jwt_assertions_may_name_the_par_endpoint(app, make_client, make_user):
    key = jwc_jwk.JWK.generate(kty="RSA", size=2048, kid="rp-1", alg="RS256", use="sig")
    make_user(email=EMAIL)
    client_id, _ = make_client(auth_method="private_key_jwt", first_party=True,
                               jwks={"keys": [json.loads(key.export_public())]})  # fmt: skip
    rp = new_rp(app, client_id, None, auth_method="private_key_jwt",
                private_key_jwk=json.loads(key.export_private()))  # fmt: skip
    url, _ = rp.authorization_url("openid")
    data = dict(parse_qsl(urlsplit(url).query))
    data.update(client_assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                client_assertion=rp.client_assertion(audience=f"{ISS}/par"))  # fmt: skip
    resp = rp.transport.request("POST", f"{ISS}/par", data=data)
    assert resp.status == 201, resp.text


# -- Authlib's client, over real HTTP --------------------------------------------------------


def _placeholder(environ, start_response):
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready"]


class TestIndependentClients:
    @pytest.fixture
    def http_server(self):
        server = make_server("127.0.0.1", 0, _placeholder)
        yield server
        server.server_close()

    @pytest.fixture
    def settings(self, tmp_path, keys_dir, http_server):
        base = make_settings(tmp_path, keys_dir)
        return replace(base, issuer=f"http://127.0.0.1:{http_server.server_port}")

    @pytest.fixture
    def issuer(self, app, http_server):
        http_server.app = app
        thread = threading.Thread(target=http_server.serve_forever, daemon=True)
        thread.start()
        try:
            yield app.extensions["idp"].settings.issuer
        finally:
            http_server.shutdown()
            thread.join(timeout=5)

    def test_oic_pushes_signs_in_and_redeems_the_code(self, app, issuer, make_client,
                                                      make_user):  # fmt: skip
        from oic.oic.message import AccessTokenResponse, AuthorizationResponse, IdToken

        from tests.integration.test_independent_rp import drive_front_channel, oic_client

        make_user(email=EMAIL)
        client_id, secret = make_client(require_par=True)
        rp = oic_client(issuer, client_id, secret)
        par_endpoint = rp.provider_info["pushed_authorization_request_endpoint"]
        assert par_endpoint == f"{issuer}/par"
        assert rp.provider_info["require_pushed_authorization_requests"] is False
        state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        pkce, verifier = rp.add_code_challenge()
        url, _body, _headers, request = rp.authorization_request_info(request_args={
            "response_type": "code", "scope": "openid email", "redirect_uri": CB,
            "state": state, "nonce": nonce, **pkce,
        })  # fmt: skip
        # The client must push: the request oic built, sent through the browser, is refused.
        plain = requests.get(url, allow_redirects=False, timeout=10)
        assert plain.status_code == 302
        assert dict(parse_qsl(urlsplit(plain.headers["Location"]).query))["error"] == (
            "invalid_request"
        )
        resp = requests.post(par_endpoint, data=request.to_dict(), auth=(client_id, secret),
                             timeout=10)  # fmt: skip
        assert resp.status_code == 201, resp.text
        browser_url = f"{rp.authorization_endpoint}?" + urlencode(
            {"client_id": client_id, "request_uri": resp.json()["request_uri"]}
        )
        location = drive_front_channel(requests.Session(), browser_url, issuer)
        aresp = rp.parse_response(AuthorizationResponse, info=location, sformat="urlencoded")
        assert isinstance(aresp, AuthorizationResponse), aresp.to_dict()
        assert (aresp["state"], aresp["iss"]) == (state, issuer)
        tokens = rp.do_access_token_request(
            state=state,
            request_args={"code": aresp["code"], "redirect_uri": CB, "code_verifier": verifier},
            authn_method="client_secret_basic",
        )
        assert isinstance(tokens, AccessTokenResponse), tokens.to_dict()
        # oic verified the ID token's signature, iss, aud and the nonce of this state.
        assert isinstance(tokens["id_token"], IdToken)
        assert tokens["id_token"]["nonce"] == nonce
        rp.verify_id_token(tokens["id_token"], request)

    def test_authlib_pushes_signs_in_and_redeems_the_code(self, app, issuer, make_client,
                                                          make_user):  # fmt: skip
        from tests.integration.test_independent_rp import drive_front_channel

        make_user(email=EMAIL)
        client_id, secret = make_client(require_par=True)
        meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        session = OAuth2Session(client_id, secret, scope="openid email", redirect_uri=CB,
                                code_challenge_method="S256")  # fmt: skip
        verifier = secrets.token_urlsafe(48)
        nonce = secrets.token_urlsafe(16)
        url, state = session.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce
        )
        params = dict(parse_qsl(urlsplit(url).query))
        resp = requests.post(meta["pushed_authorization_request_endpoint"], data=params,
                             auth=session.client_auth("client_secret_basic"), timeout=10)  # fmt: skip
        assert resp.status_code == 201, resp.text
        request_uri = resp.json()["request_uri"]
        browser_url = (f"{meta['authorization_endpoint']}?"
                       + urlencode({"client_id": client_id, "request_uri": request_uri}))  # fmt: skip
        location = drive_front_channel(requests.Session(), browser_url, issuer)
        token = session.fetch_token(meta["token_endpoint"], authorization_response=location,
                                    code_verifier=verifier, state=state)  # fmt: skip
        keys = jwc_jwk.JWKSet.from_json(requests.get(meta["jwks_uri"], timeout=10).text)
        id_token = jwc_jwt.JWT(jwt=token["id_token"], key=keys, check_claims={
            "iss": issuer, "aud": client_id, "nonce": nonce, "exp": None,
        })  # fmt: skip
        assert json.loads(id_token.claims)["nonce"] == nonce


def test_a_push_may_name_several_resources(app, make_client, make_user):
    """RFC 8707 2.1: one resource parameter per API, repeated in the pushed request; the
    grant covers both, and each token request narrows to one of them (RFC 8707 2.2)."""
    from idp.oidc.resources import create_resource

    make_user(email=EMAIL)
    with app.app_context():
        create_resource("https://api.example.gov/a", [("a:read", "Read A")], name="A")
        create_resource("https://api.example.gov/b", [("b:read", "Read B")], name="B")
    client_id, secret = make_client(
        first_party=True, scope="openid email a:read b:read",
        resources=["https://api.example.gov/a", "https://api.example.gov/b"],
    )  # fmt: skip
    rp = new_rp(app, client_id, secret)
    url, state = rp.authorization_url("openid a:read b:read")
    data = list(parse_qsl(urlsplit(url).query)) + [
        ("resource", "https://api.example.gov/a"), ("resource", "https://api.example.gov/b"),
    ]  # fmt: skip
    resp = rp.transport.request("POST", f"{ISS}/par", data=data,
                                auth=rfc6749_basic_credentials(client_id, secret))  # fmt: skip
    assert resp.status == 201, resp.text
    result = rp.resume(authorize_with(rp, resp.json()["request_uri"]), state, email=EMAIL,
                       password=PASSWORD)  # fmt: skip
    tokens = rp.exchange_code(result, resource="https://api.example.gov/a")
    claims = rp.verify_access_token(tokens.access_token)
    assert (claims["aud"], claims["scope"]) == ("https://api.example.gov/a", "a:read")
    other = rp.token_request("refresh_token", refresh_token=tokens.refresh_token,
                             resource="https://api.example.gov/b")  # fmt: skip
    claims = rp.verify_access_token(other.access_token)
    assert (claims["aud"], claims["scope"]) == ("https://api.example.gov/b", "b:read")
    unknown = push(rp, resource="https://api.example.gov/unknown")
    assert unknown.status == 400 and unknown.json()["error"] == "invalid_target"
