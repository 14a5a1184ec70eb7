"""Relying-party libraries other than Authlib complete the code flow against the provider.

``oic`` (pyoidc) does discovery, builds the authorization request, parses the
authorization response, exchanges the code, verifies the ID token against the JWKS,
calls userinfo and refreshes. PyJWT independently verifies the ID token and the
RFC 9068 access token.

pyoidc fetches the JWKS with a module-level ``requests.get``, so instead of patching
it onto Flask's test client the real provider is served over HTTP by werkzeug on a
free 127.0.0.1 port, in a background thread, for the duration of each test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import replace
from urllib.parse import urlsplit

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from jwkest import BadSignature
from oic.oauth2.message import ErrorResponse
from oic.oic import Client
from oic.oic.message import (
    AccessTokenResponse,
    AuthorizationRequest,
    AuthorizationResponse,
    IdToken,
    OpenIDSchema,
    RegistrationResponse,
)
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from werkzeug.serving import make_server

from clients.mockrp.forms import Form, parse_forms
from tests.conftest import PASSWORD, make_settings

RP_CB = "https://rp.example.com/cb"
SCOPE = "openid profile email offline_access"


def _placeholder(environ, start_response):  # replaced by the provider once it is built
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready"]


@pytest.fixture
def http_server():
    """A bound (not yet serving) WSGI server: the port must be known to build the issuer."""
    server = make_server("127.0.0.1", 0, _placeholder)
    yield server
    server.server_close()


@pytest.fixture
def settings(tmp_path, keys_dir, http_server):
    """Overrides the conftest fixture: the issuer is the live server's address."""
    base = make_settings(tmp_path, keys_dir)
    return replace(base, issuer=f"http://127.0.0.1:{http_server.server_port}")


@pytest.fixture
def issuer(app, http_server):
    """Serve the conftest ``app`` (SQLite or PostgreSQL backend) over real HTTP."""
    http_server.app = app
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app.extensions["idp"].settings.issuer
    finally:
        http_server.shutdown()
        thread.join(timeout=5)


@pytest.fixture
def registered(issuer, make_user, make_client):
    make_user()
    client_id, secret = make_client()
    return client_id, secret


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _form_with(forms: list[Form], *names: str) -> Form | None:
    return next((f for f in forms if f.has(*names)), None)


def drive_front_channel(browser: requests.Session, url: str, issuer: str) -> str:
    """Act as the user's browser: sign in, allow consent, stop at the redirect to the RP.

    Returns the URL the provider redirected to (never requested)."""
    origin = urlsplit(issuer).netloc
    resp = browser.get(url, allow_redirects=False, timeout=10)
    signed_in = consented = False
    for _ in range(10):
        if resp.is_redirect:
            location = requests.compat.urljoin(resp.url, resp.headers["Location"])
            if location.startswith(RP_CB + "?"):
                return location
            assert urlsplit(location).netloc == origin, f"unexpected redirect to {location}"
            resp = browser.get(location, allow_redirects=False, timeout=10)
            continue
        assert resp.status_code == 200, f"HTTP {resp.status_code} at {resp.url}: {resp.text[:300]}"
        forms = parse_forms(resp.text, resp.url)
        login = _form_with(forms, "email", "password")
        consent = _form_with(forms, "decision")
        if login is not None:
            assert not signed_in, "the sign-in page came back: credentials refused"
            signed_in = True
            login.fill(email="ada@example.com", password=PASSWORD)
            data = login.submit_data()
            form = login
        elif consent is not None:
            assert not consented, "the consent page came back"
            consented = True
            data = consent.submit_data(("decision", "allow"))
            form = consent
        else:
            raise AssertionError(f"no sign-in or consent form at {resp.url}: {resp.text[:300]}")
        assert form.method == "POST"
        resp = browser.post(form.action, data=data, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never redirected back to the client")


def oic_client(issuer: str, client_id: str, secret: str) -> Client:
    rp = Client(client_authn_method=CLIENT_AUTHN_METHOD, config={"code_challenge": {}})
    rp.provider_config(issuer)
    rp.store_registration_info(
        RegistrationResponse(
            client_id=client_id,
            client_secret=secret,
            redirect_uris=[RP_CB],
            token_endpoint_auth_method="client_secret_basic",
        )
    )
    return rp


def oic_sign_in(rp: Client, issuer: str) -> tuple[AuthorizationRequest, str, AccessTokenResponse]:
    """The whole code flow with PKCE S256 driven by oic: returns (request, verifier, tokens)."""
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pkce, verifier = rp.add_code_challenge()
    assert pkce["code_challenge_method"] == "S256"
    assert pkce["code_challenge"] == _b64url(hashlib.sha256(verifier.encode()).digest())
    # request_info records state -> nonce, which oic checks against the ID token.
    url, _body, _headers, request = rp.authorization_request_info(
        request_args={
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": RP_CB,
            "state": state,
            "nonce": nonce,
            **pkce,
        }
    )
    assert isinstance(request, AuthorizationRequest)
    assert url.startswith(f"{issuer}/authorize?")
    assert rp.state2nonce[state] == nonce

    location = drive_front_channel(requests.Session(), url, issuer)

    aresp = rp.parse_response(AuthorizationResponse, info=location, sformat="urlencoded")
    assert isinstance(aresp, AuthorizationResponse), aresp.to_dict()
    assert aresp["state"] == state
    assert aresp["iss"] == issuer  # RFC 9207
    assert aresp["code"]

    tokens = rp.do_access_token_request(
        state=state,
        request_args={"code": aresp["code"], "redirect_uri": RP_CB, "code_verifier": verifier},
        authn_method="client_secret_basic",
    )
    assert isinstance(tokens, AccessTokenResponse), tokens.to_dict()
    return request, verifier, tokens


def test_oic_code_flow_with_pkce(issuer, registered):
    client_id, secret = registered
    rp = oic_client(issuer, client_id, secret)
    # Discovery went through oic: endpoints and the JWKS location come from the metadata.
    assert rp.provider_info["issuer"] == issuer
    assert rp.authorization_endpoint == f"{issuer}/authorize"
    assert rp.token_endpoint == f"{issuer}/token"
    assert "S256" in rp.provider_info["code_challenge_methods_supported"]

    request, _verifier, tokens = oic_sign_in(rp, issuer)
    state, nonce = request["state"], request["nonce"]

    # oic verified the ID token's signature against the provider's JWKS (fetched from
    # jwks_uri) and its iss/aud/exp, and replaced the JWT with the verified claims.
    id_token = tokens["id_token"]
    assert isinstance(id_token, IdToken)
    jwks = requests.get(rp.provider_info["jwks_uri"], timeout=10).json()
    assert id_token.jws_header["alg"] in ("RS256", "ES256")
    assert id_token.jws_header["kid"] in {k["kid"] for k in jwks["keys"]}
    assert id_token["nonce"] == nonce
    assert id_token["iss"] == issuer
    assert id_token["aud"] == [client_id]
    rp.verify_id_token(id_token, request)  # nonce, and alg "none" refused for the code flow
    # The same JWT with a changed payload fails oic's signature check.
    head, body, sig = tokens["id_token_jwt"].split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    forged_body = _b64url(json.dumps({**payload, "sub": "someone-else"}).encode())
    with pytest.raises(BadSignature):
        IdToken().from_jwt(f"{head}.{forged_body}.{sig}", keyjar=rp.keyjar)
    assert tokens["token_type"].lower() == "bearer"
    assert tokens["refresh_token"]

    info = rp.do_user_info_request(state=state, method="GET")
    assert isinstance(info, OpenIDSchema), info.to_dict()
    assert info["sub"] == id_token["sub"]
    assert info["email"] == "ada@example.com"
    assert info["email_verified"] is True
    assert info["name"] == "Ada Lovelace"

    refreshed = rp.do_access_token_refresh(state=state, authn_method="client_secret_basic")
    assert isinstance(refreshed, AccessTokenResponse), refreshed.to_dict()
    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    assert refreshed["id_token"]["sub"] == id_token["sub"]
    assert refreshed["id_token"]["auth_time"] == id_token["auth_time"]

    # Revoke the access token, then the refresh token (RFC 7009).
    revocation = rp.provider_info["revocation_endpoint"]
    bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert requests.get(rp.userinfo_endpoint, headers=bearer, timeout=10).status_code == 200
    revoked = requests.post(
        revocation, data={"token": refreshed["access_token"]}, auth=(client_id, secret), timeout=10
    )
    assert revoked.status_code == 200
    assert requests.get(rp.userinfo_endpoint, headers=bearer, timeout=10).status_code == 401
    revoked = requests.post(
        revocation,
        data={"token": refreshed["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(client_id, secret),
        timeout=10,
    )
    assert revoked.status_code == 200
    for old in (refreshed["refresh_token"], tokens["refresh_token"]):
        after = requests.post(
            rp.token_endpoint,
            data={"grant_type": "refresh_token", "refresh_token": old},
            auth=(client_id, secret),
            timeout=10,
        )
        assert after.status_code == 400 and after.json()["error"] == "invalid_grant"


def test_pyjwt_verifies_id_token_and_rfc9068_access_token(issuer, registered):
    client_id, secret = registered
    rp = oic_client(issuer, client_id, secret)
    request, _verifier, tokens = oic_sign_in(rp, issuer)
    id_jwt, at_jwt = tokens["id_token_jwt"], tokens["access_token"]

    meta = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
    jwks = jwt.PyJWKClient(meta["jwks_uri"], cache_keys=False)
    algs = meta["id_token_signing_alg_values_supported"]
    assert algs and "none" not in algs
    require = {"require": ["iss", "aud", "exp", "iat", "sub"]}

    header = jwt.get_unverified_header(id_jwt)
    assert header["alg"] in algs and header["kid"]
    assert header.get("typ", "JWT").lower() != "at+jwt"
    key = jwks.get_signing_key_from_jwt(id_jwt)
    claims = jwt.decode(
        id_jwt, key, algorithms=algs, audience=client_id, issuer=issuer, options=require
    )
    assert claims["nonce"] == request["nonce"]
    assert claims["exp"] > time.time() > claims["iat"] - 5
    # at_hash (OIDC Core 3.1.3.6): left half of SHA-256 of the access token.
    digest = hashlib.sha256(at_jwt.encode("ascii")).digest()
    assert claims["at_hash"] == _b64url(digest[:16])

    # RFC 9068 2.1: the access token header says typ "at+jwt".
    at_header = jwt.get_unverified_header(at_jwt)
    assert at_header["typ"].lower() == "at+jwt"
    assert at_header["alg"] in algs
    at_key = jwks.get_signing_key_from_jwt(at_jwt)
    at = jwt.decode(
        at_jwt,
        at_key,
        algorithms=algs,
        audience=client_id,
        issuer=issuer,
        options={"require": ["iss", "aud", "exp", "iat", "sub", "client_id", "jti"]},
    )
    assert at["sub"] == claims["sub"]
    assert at["client_id"] == client_id
    assert set(at["scope"].split()) == set(SCOPE.split())
    assert 0 < at["exp"] - at["iat"] <= 3600
    assert at["exp"] > time.time()

    # The checks bite: wrong audience, wrong issuer, expired, foreign key.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(at_jwt, at_key, algorithms=algs, audience="someone-else", issuer=issuer)
    with pytest.raises(jwt.InvalidIssuerError):
        jwt.decode(at_jwt, at_key, algorithms=algs, audience=client_id, issuer=f"{issuer}/other")
    with pytest.raises(jwt.ExpiredSignatureError):  # as seen once its lifetime has passed
        jwt.decode(
            at_jwt,
            at_key,
            algorithms=algs,
            audience=client_id,
            issuer=issuer,
            leeway=-(at["exp"] - int(time.time()) + 2),
            options={"verify_iat": False},
        )
    foreign = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(at_jwt, foreign, algorithms=["RS256"], audience=client_id, issuer=issuer)


def test_oic_asks_for_a_token_for_a_resource(issuer, make_user, make_client, app):
    """RFC 8707 with another library on the client side: oic sends ``resource`` in the
    authorization and token requests, and the access token it receives (verified with
    oic's key jar against the provider's JWKS) names the API as ``aud`` and carries only
    the API's scope."""
    from jwkest.jws import JWS

    from idp.oidc.resources import create_resource

    api = "https://api.example.gov/forms"
    with app.app_context():
        create_resource(api, [("forms:read", "Read your forms")], name="Forms")
    make_user()
    client_id, secret = make_client(scope=f"{SCOPE} forms:read", resources=[api])
    rp = oic_client(issuer, client_id, secret)
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pkce, verifier = rp.add_code_challenge()
    url, _body, _headers, request = rp.authorization_request_info(
        request_args={
            "response_type": "code",
            "scope": f"{SCOPE} forms:read",
            "redirect_uri": RP_CB,
            "state": state,
            "nonce": nonce,
            "resource": api,
            **pkce,
        }
    )
    assert "resource=https%3A%2F%2Fapi.example.gov%2Fforms" in url
    location = drive_front_channel(requests.Session(), url, issuer)
    aresp = rp.parse_response(AuthorizationResponse, info=location, sformat="urlencoded")
    assert isinstance(aresp, AuthorizationResponse), aresp.to_dict()
    tokens = rp.do_access_token_request(
        state=state,
        request_args={
            "code": aresp["code"],
            "redirect_uri": RP_CB,
            "code_verifier": verifier,
            "resource": api,
        },
        authn_method="client_secret_basic",
    )
    assert isinstance(tokens, AccessTokenResponse), tokens.to_dict()
    assert tokens["scope"] == ["forms:read"]
    # oic verified the ID token; the access token is verified here with its key jar.
    assert tokens["id_token"]["aud"] == [client_id]
    keys = rp.keyjar.get_verify_key(owner=issuer)
    claims = JWS().verify_compact(tokens["access_token"], keys)
    assert claims["aud"] == api and claims["scope"] == "forms:read"
    assert claims["client_id"] == client_id and claims["sub"] == tokens["id_token"]["sub"]
    # A token for the API is no token for the userinfo endpoint.
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert requests.get(rp.userinfo_endpoint, headers=bearer, timeout=10).status_code == 403
    # An API this client may not use: oic reads invalid_target (RFC 8707 2) from the
    # redirect, with its state (as a generic error response: oic's authorization error
    # class knows only the RFC 6749 4.1.2.1 codes).
    state = secrets.token_urlsafe(16)
    url, _body, _headers, _request = rp.authorization_request_info(
        request_args={
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": RP_CB,
            "state": state,
            "nonce": nonce,
            "resource": "https://payroll.example.gov/",
            **rp.add_code_challenge()[0],
        }
    )
    location = drive_front_channel(requests.Session(), url, issuer)
    refused = rp.parse_response(ErrorResponse, info=location, sformat="urlencoded")
    assert (refused["error"], refused["state"]) == ("invalid_target", state)
