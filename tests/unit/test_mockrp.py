"""Tests for clients.mockrp against a tiny fake OpenID provider built in this file.

The fake OP does not use the real provider (which is developed separately): it is
a Flask app with discovery, a JWKS holding a jwcrypto RSA key, an HTML login form
with a CSRF token kept in the session cookie, a consent page, and token, userinfo,
introspection, revocation and end-session endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import string
import threading
import time
from html import escape
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

import pytest
from flask import Flask, redirect, request, session
from jwcrypto import jwk
from jwcrypto import jwt as jwc_jwt
from werkzeug.serving import make_server

from clients.mockrp import (
    FlaskTransport,
    HTTPTransport,
    MockRP,
    MockRPError,
    OAuthError,
    Response,
    find_form,
    parse_forms,
)

ISSUER = "http://op.test"
CLIENT_ID = "rp-client"
SECRET = "rp-secret"
REDIRECT = "https://rp.test/cb"
EMAIL = "alice@example.com"
PASSWORD = "correct horse"

# RSA key generation is slow-ish: make the keys once per module.
KEY1 = jwk.JWK.generate(kty="RSA", size=2048, kid="k1", use="sig", alg="RS256")
KEY2 = jwk.JWK.generate(kty="RSA", size=2048, kid="k2", use="sig", alg="RS256")
CLIENT_KEY = jwk.JWK.generate(kty="EC", crv="P-256", kid="client-k1")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def independent_at_hash(token: str) -> str:
    return b64url(hashlib.sha256(token.encode()).digest()[:16])


def page(title: str, body: str, status: int = 200):
    html = f"<!doctype html><html><head><title>{title}</title></head><body>{body}</body></html>"
    return html, status, {"Content-Type": "text/html; charset=utf-8"}


class FakeOP:
    """A deliberately small OP; knobs on the instance change its behaviour."""

    def __init__(self, issuer: str = ISSUER):
        self.issuer = issuer
        self.discovery_issuer: str | None = None  # override to test the issuer check
        self.keys = [KEY1]
        self.signing_key = KEY1
        self.client_id = CLIENT_ID
        self.client_secret = SECRET
        self.client_public_jwk: jwk.JWK | None = None
        self.tamper_state = False
        self.codes: dict[str, dict] = {}
        self.access_tokens: dict[str, dict] = {}
        self.refresh_tokens: dict[str, dict] = {}
        self.revoked: list[str] = []
        self.token_requests: list[dict] = []
        self.client_auth: list[tuple] = []
        self.jwks_fetches = 0
        self.userinfo_calls: list[tuple[str, str]] = []
        self.app = self._make_app()

    # -- helpers -----------------------------------------------------------------

    def sign(self, claims: dict, *, key: jwk.JWK | None = None, **header) -> str:
        key = key or self.signing_key
        hdr = {"alg": "RS256", "kid": key.get("kid"), **header}
        token = jwc_jwt.JWT(header=hdr, claims=claims)
        token.make_signed_token(key)
        return token.serialize()

    def id_token_claims(self, **overrides) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "user-1",
            "aud": self.client_id,
            "exp": now + 300,
            "iat": now,
            "auth_time": now - 5,
            "nonce": "n-123",
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def _auth_client(self):
        """Returns None when the client authenticated, else an error response."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            raw = base64.b64decode(header[6:]).decode()
            user, _, pw = raw.partition(":")
            cid, secret = unquote_plus(user), unquote_plus(pw)
            self.client_auth.append(("basic", header, cid, secret))
            ok = cid == self.client_id and secret == self.client_secret
        elif "client_assertion" in request.form:
            assertion = request.form["client_assertion"]
            self.client_auth.append(("jwt", request.form["client_assertion_type"], assertion))
            try:
                verified = jwc_jwt.JWT(jwt=assertion, key=self.client_public_jwk, algs=["ES256"])
                claims = json.loads(verified.claims)
            except Exception:
                claims = {}
            ok = (
                claims.get("iss") == claims.get("sub") == self.client_id
                and claims.get("aud") == self.issuer + "/token"
            )
        elif "client_secret" in request.form:
            self.client_auth.append(("post", request.form.get("client_id")))
            ok = (request.form.get("client_id"), request.form["client_secret"]) == (
                self.client_id,
                self.client_secret,
            )
        else:
            self.client_auth.append(("none", request.form.get("client_id")))
            ok = request.form.get("client_id") == self.client_id
        if ok:
            return None
        return {"error": "invalid_client"}, 401

    def _issue(self, sub: str, scope: str, nonce: str | None, with_id_token: bool) -> dict:
        access = secrets.token_urlsafe(16)
        refresh = secrets.token_urlsafe(16)
        self.access_tokens[access] = {"sub": sub, "scope": scope}
        self.refresh_tokens[refresh] = {"sub": sub, "scope": scope}
        body = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": refresh,
            "scope": scope,
        }
        if with_id_token:
            body["id_token"] = self.sign(
                self.id_token_claims(sub=sub, nonce=nonce, at_hash=independent_at_hash(access))
            )
        return body

    # -- app -----------------------------------------------------------------------

    def _make_app(self) -> Flask:
        app = Flask("fake_op")
        app.secret_key = "fake-op-secret"
        op = self

        @app.get("/.well-known/openid-configuration")
        def discovery():
            iss = op.issuer
            return {
                "issuer": op.discovery_issuer or iss,
                "authorization_endpoint": iss + "/authorize",
                "token_endpoint": iss + "/token",
                "userinfo_endpoint": iss + "/userinfo",
                "jwks_uri": iss + "/jwks",
                "introspection_endpoint": iss + "/introspect",
                "revocation_endpoint": iss + "/revoke",
                "end_session_endpoint": iss + "/logout",
            }

        @app.get("/jwks")
        def jwks():
            op.jwks_fetches += 1
            return {"keys": [json.loads(k.export_public()) for k in op.keys]}

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize():
            args = request.values
            if args.get("client_id") != op.client_id or args.get("redirect_uri") != REDIRECT:
                return page("Error", "<h1>Unknown client</h1><p>Check client_id.</p>", 400)
            session["csrf"] = secrets.token_urlsafe(8)
            session["req"] = args.to_dict()
            return redirect("/login")  # relative Location, same origin

        @app.route("/login", methods=["GET", "POST"])
        def login():
            error = ""
            if request.method == "POST":
                f = request.form
                if f.get("csrf_token") != session.get("csrf"):
                    return page("Bad request", "<h1>CSRF check failed</h1>", 400)
                if f.get("action") != "login" or "remember" in f:
                    return page("Bad request", "<h1>Unexpected form data</h1>", 400)
                if (f.get("email"), f.get("password")) == (EMAIL, PASSWORD):
                    session["user"] = "user-1"
                    return redirect("/consent")
                error = '<p class="error">Wrong email or password</p>'
            return page(
                "Sign in",
                f"""<h1>Sign in</h1>{error}
                <form method="get" action="/search"><input name="q"></form>
                <form method="post" action="login">
                  <input type="hidden" name="csrf_token" value="{escape(session["csrf"])}">
                  <input type="email" name="email" value="">
                  <input type="password" name="password">
                  <input type="checkbox" name="remember" value="yes">
                  <button type="submit" name="action" value="login">Sign in</button>
                </form>""",
            )

        @app.route("/consent", methods=["GET", "POST"])
        def consent():
            req = session["req"]
            if request.method == "GET":
                return page(
                    "Consent",
                    f"""<h1>Allow access?</h1><form method="post">
                    <input type="hidden" name="csrf_token" value="{escape(session["csrf"])}">
                    <button name="decision" value="allow">Allow</button>
                    <button name="decision" value="deny">Deny</button></form>""",
                )
            if request.form.get("csrf_token") != session.get("csrf"):
                return page("Bad request", "<h1>CSRF check failed</h1>", 400)
            state = req.get("state")
            if op.tamper_state:
                state = "not-" + str(state)
            if request.form.get("decision") != "allow":
                params = {"error": "access_denied", "state": state, "iss": op.issuer}
            else:
                code = secrets.token_urlsafe(12)
                op.codes[code] = {**req, "sub": session["user"]}
                params = {"code": code, "state": state, "iss": op.issuer}
            return redirect(REDIRECT + "?" + urlencode(params))

        @app.post("/token")
        def token():
            op.token_requests.append(
                {"form": request.form.to_dict(), "headers": dict(request.headers)}
            )
            if err := op._auth_client():
                return err
            f = request.form
            grant = f.get("grant_type")
            if grant == "authorization_code":
                req = op.codes.pop(f.get("code", ""), None)
                if req is None or f.get("redirect_uri") != req["redirect_uri"]:
                    return {"error": "invalid_grant", "error_description": "bad code"}, 400
                verifier = f.get("code_verifier", "")
                challenge = b64url(hashlib.sha256(verifier.encode()).digest())
                if req.get("code_challenge") and challenge != req["code_challenge"]:
                    return {"error": "invalid_grant", "error_description": "PKCE failed"}, 400
                return op._issue(req["sub"], req["scope"], req.get("nonce"), True)
            if grant == "refresh_token":
                old = op.refresh_tokens.pop(f.get("refresh_token", ""), None)
                if old is None:
                    return {"error": "invalid_grant"}, 400
                return op._issue(old["sub"], f.get("scope") or old["scope"], None, False)
            if grant == "client_credentials":
                return op._issue(op.client_id, f.get("scope", ""), None, False)
            return {"error": "unsupported_grant_type"}, 400

        @app.route("/userinfo", methods=["GET", "POST"])
        def userinfo():
            auth = request.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else request.form.get("access_token")
            op.userinfo_calls.append((request.method, "header" if auth else "body"))
            info = op.access_tokens.get(token or "")
            if info is None:
                return "", 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            return {"sub": info["sub"], "email": EMAIL}

        @app.post("/introspect")
        def introspect():
            if err := op._auth_client():
                return err
            tok = request.form.get("token", "")
            info = op.access_tokens.get(tok) or op.refresh_tokens.get(tok)
            if info is None or tok in op.revoked:
                return {"active": False}
            return {"active": True, "client_id": op.client_id, **info}

        @app.post("/revoke")
        def revoke():
            if err := op._auth_client():
                return err
            op.revoked.append(request.form.get("token", ""))
            return ""

        @app.route("/logout", methods=["GET", "POST"])
        def logout():
            if request.method == "GET":
                hidden = "".join(
                    f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                    for k, v in request.args.items()
                )
                return page(
                    "Sign out",
                    f"""<h1>Sign out?</h1><form method="post" action="">{hidden}
                    <button name="decision" value="logout">Sign out</button>
                    <button name="decision" value="cancel">Stay</button></form>""",
                )
            if request.form.get("decision") != "logout" or "id_token_hint" not in request.form:
                return page("Bad request", "<h1>Bad logout</h1>", 400)
            session.clear()
            target = request.form.get("post_logout_redirect_uri")
            if target:
                return redirect(target + "?" + urlencode({"state": request.form["state"]}))
            return redirect("/logged-out")

        @app.get("/logged-out")
        def logged_out():
            return page("Signed out", "<h1>You are signed out</h1>")

        return app


@pytest.fixture
def op() -> FakeOP:
    return FakeOP()


def make_rp(op: FakeOP, **kwargs) -> MockRP:
    kwargs.setdefault("client_secret", SECRET)
    return MockRP(
        op.issuer,
        kwargs.pop("client_id", CLIENT_ID),
        REDIRECT,
        transport=FlaskTransport(op.app.test_client()),
        **kwargs,
    )


@pytest.fixture
def rp(op: FakeOP) -> MockRP:
    return make_rp(op)


# --------------------------------------------------------------------- full flow


def test_full_code_flow_over_flask_test_client(op, rp):
    result = rp.sign_in(EMAIL, PASSWORD)
    assert result.error is None
    assert result.code in op.codes
    assert result.state == rp.last_request["state"]
    assert result.iss == ISSUER
    assert result.redirect_url.startswith(REDIRECT + "?")

    tokens = rp.exchange_code(result)
    sent = op.token_requests[-1]["form"]
    assert sent["code_verifier"] == result.code_verifier
    assert sent["redirect_uri"] == REDIRECT
    assert "client_secret" not in sent  # client_secret_basic by default
    claims = rp.verify_id_token(
        tokens.id_token, nonce=result.nonce, access_token=tokens.access_token, max_age=60
    )
    assert claims["sub"] == "user-1"
    assert claims["nonce"] == result.nonce

    assert rp.userinfo(tokens.access_token, expected_sub="user-1")["email"] == EMAIL
    assert rp.userinfo(tokens.access_token, in_body=True)["sub"] == "user-1"
    assert op.userinfo_calls == [("GET", "header"), ("POST", "body")]
    with pytest.raises(MockRPError, match="^sub:"):
        rp.userinfo(tokens.access_token, expected_sub="someone-else")

    refreshed = rp.refresh(tokens.refresh_token)
    assert refreshed.access_token != tokens.access_token
    assert rp.introspect(refreshed.access_token, "access_token")["active"] is True
    assert rp.revoke(refreshed.access_token, "access_token") == 200
    assert rp.introspect(refreshed.access_token)["active"] is False

    resp = rp.logout(
        id_token_hint=tokens.id_token,
        post_logout_redirect_uri="https://rp.test/bye",
        state="s1",
    )
    assert resp.status == 302
    assert resp.location == "https://rp.test/bye?state=s1"


def test_full_flow_over_real_http():
    op = FakeOP()
    server = make_server("127.0.0.1", 0, op.app, threaded=True)
    op.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        rp = MockRP(op.issuer, CLIENT_ID, REDIRECT, client_secret=SECRET, transport=HTTPTransport())
        result = rp.sign_in(EMAIL, PASSWORD)
        assert result.code in op.codes
        tokens = rp.exchange_code(result)
        claims = rp.verify_id_token(
            tokens.id_token, nonce=result.nonce, access_token=tokens.access_token
        )
        assert claims["iss"] == op.issuer
        resp = rp.logout(id_token_hint=tokens.id_token)
        assert resp.status == 200
        assert "signed out" in resp.text
    finally:
        server.shutdown()
        thread.join(5)


def test_sign_in_state_mismatch_raises(op, rp):
    op.tamper_state = True
    with pytest.raises(MockRPError, match="state mismatch"):
        rp.sign_in(EMAIL, PASSWORD)


def test_sign_in_deny_returns_error_result(rp):
    result = rp.sign_in(EMAIL, PASSWORD, consent="deny")
    assert result.code is None
    assert result.error == "access_denied"
    with pytest.raises(MockRPError, match="access_denied"):
        rp.exchange_code(result)


def test_sign_in_wrong_password_reports_page_error(rp):
    with pytest.raises(MockRPError, match="login page shown again") as exc:
        rp.sign_in(EMAIL, "wrong")
    assert "Wrong email or password" in str(exc.value)


def test_sign_in_unknown_page_reports_status_and_title(rp):
    rp.client_id = "someone-else"
    with pytest.raises(MockRPError) as exc:
        rp.sign_in(EMAIL, PASSWORD)
    message = str(exc.value)
    assert "HTTP 400" in message
    assert "Unknown client" in message
    assert "Error" in message


def test_sign_in_via_post_and_manual_steps(op, rp):
    resp = rp.start(_method="POST", prompt="login")
    assert resp.status == 302
    resp = rp.follow(resp)
    assert resp.url == ISSUER + "/login"
    resp = rp.submit(resp, {"email": EMAIL, "password": PASSWORD})
    assert resp.location == ISSUER + "/consent"
    result = rp.resume(resp)
    assert result.code in op.codes
    assert op.codes[result.code]["prompt"] == "login"


def test_exchange_code_error_raises_oauth_error(rp):
    result = rp.sign_in(EMAIL, PASSWORD)
    rp.exchange_code(result)
    with pytest.raises(OAuthError) as exc:
        rp.exchange_code(result)  # code already used
    assert exc.value.status == 400
    assert exc.value.error == "invalid_grant"


def test_wrong_pkce_verifier_is_sent_and_rejected(rp):
    result = rp.sign_in(EMAIL, PASSWORD)
    with pytest.raises(OAuthError, match="PKCE"):
        rp.exchange_code(result, code_verifier="x" * 50)


def test_userinfo_error_parses_www_authenticate(rp):
    with pytest.raises(OAuthError) as exc:
        rp.userinfo("nope")
    assert exc.value.status == 401
    assert exc.value.error == "invalid_token"


# ------------------------------------------------------------------- discovery


def test_discovery_issuer_must_match_exactly(op, rp):
    op.discovery_issuer = ISSUER + "/"
    with pytest.raises(MockRPError, match="issuer mismatch"):
        rp.discover()


def test_jwks_refetched_once_on_unknown_kid(op, rp):
    rp.jwks()
    assert op.jwks_fetches == 1
    op.keys = [KEY1, KEY2]  # key rotation after the RP cached the JWKS
    token = op.sign(op.id_token_claims(), key=KEY2)
    assert rp.verify_id_token(token, nonce="n-123")["sub"] == "user-1"
    assert op.jwks_fetches == 2
    rp.verify_id_token(token, nonce="n-123")
    assert op.jwks_fetches == 2  # cached again


# --------------------------------------------------------------- ID token checks


def test_verify_id_token_accepts_good_token(op, rp):
    access = "access-token-value"
    token = op.sign(op.id_token_claims(at_hash=independent_at_hash(access)))
    claims = rp.verify_id_token(token, nonce="n-123", access_token=access, max_age=60)
    assert claims["sub"] == "user-1"
    assert claims["aud"] == CLIENT_ID


def _alg_none(claims: dict) -> str:
    header = b64url(json.dumps({"alg": "none", "kid": "k1"}).encode())
    return f"{header}.{b64url(json.dumps(claims).encode())}."


def _hs256_with_public_key(op: FakeOP, claims: dict) -> str:
    secret = jwk.JWK(kty="oct", k=b64url(KEY1.export_to_pem()))
    return op.sign(claims, key=secret, alg="HS256", kid="k1")


def _flip_signature(token: str) -> str:
    header, payload, sig = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4)))
    raw[10] ^= 0x01
    return f"{header}.{payload}.{b64url(bytes(raw))}"


def _swap_payload(op: FakeOP, token: str) -> str:
    header, _, sig = token.split(".")
    forged = b64url(json.dumps(op.id_token_claims(sub="admin")).encode())
    return f"{header}.{forged}.{sig}"


BAD_TOKENS = {
    "wrong_iss": ("iss:", lambda op: op.sign(op.id_token_claims(iss="http://evil.test"))),
    "iss_trailing_slash": ("iss:", lambda op: op.sign(op.id_token_claims(iss=ISSUER + "/"))),
    "wrong_aud": ("aud:", lambda op: op.sign(op.id_token_claims(aud="other-client"))),
    "multi_aud_no_azp": (
        "azp:",
        lambda op: op.sign(op.id_token_claims(aud=[CLIENT_ID, "other-client"])),
    ),
    "expired": (
        "exp:",
        lambda op: op.sign(op.id_token_claims(exp=int(time.time()) - 120)),
    ),
    "iat_in_future": (
        "iat:",
        lambda op: op.sign(op.id_token_claims(iat=int(time.time()) + 600)),
    ),
    "wrong_nonce": ("nonce:", lambda op: op.sign(op.id_token_claims(nonce="other"))),
    "missing_nonce": ("nonce:", lambda op: op.sign(op.id_token_claims(nonce=None))),
    "bad_at_hash": (
        "at_hash:",
        lambda op: op.sign(op.id_token_claims(at_hash=independent_at_hash("other-token"))),
    ),
    "alg_none": ("alg: ID token uses alg 'none'", lambda op: _alg_none(op.id_token_claims())),
    "alg_hs256_confusion": (
        "alg: ID token uses alg 'HS256'",
        lambda op: _hs256_with_public_key(op, op.id_token_claims()),
    ),
    "unknown_kid": ("kid:", lambda op: op.sign(op.id_token_claims(), key=KEY2)),
    "tampered_signature": ("signature:", lambda op: _flip_signature(op.sign(op.id_token_claims()))),
    "tampered_payload": (
        "signature:",
        lambda op: _swap_payload(op, op.sign(op.id_token_claims())),
    ),
    "old_auth_time": (
        "auth_time:",
        lambda op: op.sign(op.id_token_claims(auth_time=int(time.time()) - 3600)),
    ),
    "missing_auth_time": ("auth_time:", lambda op: op.sign(op.id_token_claims(auth_time=None))),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_verify_id_token_rejects(op, rp, case):
    check, make = BAD_TOKENS[case]  # the error message must name the failed check
    token = make(op)
    with pytest.raises(MockRPError, match=rf"^{check}"):
        rp.verify_id_token(token, nonce="n-123", access_token="access-token-value", max_age=60)


def test_unknown_kid_refetches_only_once(op, rp):
    token = op.sign(op.id_token_claims(), key=KEY2)
    with pytest.raises(MockRPError, match="^kid:"):
        rp.verify_id_token(token, nonce="n-123")
    assert op.jwks_fetches == 2


def test_verify_access_token_rfc9068(op, rp):
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "exp": now + 60,
        "aud": "https://api.test",
        "sub": "user-1",
        "client_id": CLIENT_ID,
        "iat": now,
        "jti": "j1",
    }
    good = op.sign(claims, typ="at+jwt")
    assert rp.verify_access_token(good)["client_id"] == CLIENT_ID
    with pytest.raises(MockRPError, match="^typ:"):
        rp.verify_access_token(op.sign(claims, typ="JWT"))
    with pytest.raises(MockRPError, match="^client_id:"):
        rp.verify_access_token(op.sign({**claims, "client_id": "x"}, typ="at+jwt"))
    with pytest.raises(MockRPError, match="^signature:"):
        rp.verify_access_token(_flip_signature(good))


# ------------------------------------------------------------------------ PKCE


def test_pkce_s256_challenge(rp):
    url, state = rp.authorization_url()
    query = parse_qs(urlsplit(url).query)
    verifier = state["code_verifier"]
    assert 43 <= len(verifier) <= 128
    unreserved = string.ascii_letters + string.digits + "-._~"
    assert set(verifier) <= set(unreserved)
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode()
    expected = expected.rstrip("=")
    assert query["code_challenge"] == [expected]
    assert "=" not in query["code_challenge"][0]
    assert query["code_challenge_method"] == ["S256"]


def test_pkce_rfc7636_appendix_b_vector():
    from clients.mockrp import pkce_challenge

    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_disabled(op):
    rp = make_rp(op, use_pkce=False)
    url, state = rp.authorization_url()
    assert state["code_verifier"] is None
    assert "code_challenge" not in parse_qs(urlsplit(url).query)


def test_authorization_url_extra_params(rp):
    url, state = rp.authorization_url(
        "openid",
        prompt="consent",
        max_age=0,
        login_hint=None,
        nonce=None,
        claims={"id_token": {"acr": {"essential": True}}},
    )
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(ISSUER + "/authorize?")
    assert query["prompt"] == ["consent"]
    assert query["max_age"] == ["0"]
    assert query["scope"] == ["openid"]
    assert "login_hint" not in query
    assert "nonce" not in query
    assert state["nonce"] is None
    assert json.loads(query["claims"][0]) == {"id_token": {"acr": {"essential": True}}}
    assert query["state"] == [state["state"]]


# ------------------------------------------------------------- client auth


def test_client_secret_basic_is_form_urlencoded_first(op):
    op.client_id, op.client_secret = "rp:client é", "p@ss word/+"
    rp = make_rp(op, client_id="rp:client é", client_secret="p@ss word/+")
    rp.client_credentials("api")
    kind, header, cid, secret = op.client_auth[-1]
    assert kind == "basic"
    # RFC 6749 2.3.1: application/x-www-form-urlencoded, then Basic.
    expected = base64.b64encode(b"rp%3Aclient+%C3%A9:p%40ss+word%2F%2B").decode()
    assert header == "Basic " + expected
    assert (cid, secret) == ("rp:client é", "p@ss word/+")
    assert "client_secret" not in op.token_requests[-1]["form"]


def test_client_secret_post(op):
    rp = make_rp(op, auth_method="client_secret_post")
    rp.client_credentials()
    form = op.token_requests[-1]["form"]
    assert (form["client_id"], form["client_secret"]) == (CLIENT_ID, SECRET)
    assert "Authorization" not in op.token_requests[-1]["headers"]


def test_auth_method_none_sends_only_client_id(op):
    rp = make_rp(op, auth_method="none", client_secret=None)
    result = rp.sign_in(EMAIL, PASSWORD)
    rp.exchange_code(result)
    form = op.token_requests[-1]["form"]
    assert form["client_id"] == CLIENT_ID
    assert "client_secret" not in form
    assert "Authorization" not in op.token_requests[-1]["headers"]


def test_private_key_jwt_assertion(op):
    op.client_public_jwk = jwk.JWK(**json.loads(CLIENT_KEY.export_public()))
    rp = make_rp(
        op,
        auth_method="private_key_jwt",
        client_secret=None,
        private_key_jwk=json.loads(CLIENT_KEY.export_private()),
    )
    rp.client_credentials()
    kind, assertion_type, assertion = op.client_auth[-1]
    assert kind == "jwt"
    assert assertion_type == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    verified = jwc_jwt.JWT(jwt=assertion, key=op.client_public_jwk, algs=["ES256"])
    claims = json.loads(verified.claims)
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == ISSUER + "/token"
    assert claims["exp"] - claims["iat"] == 60
    assert len(claims["jti"]) >= 16
    assert json.loads(verified.header)["kid"] == "client-k1"


# ------------------------------------------------------------------------ forms

FORM_HTML = """
<html><head><title>T</title></head><body>
<form id="a" method="post" action="../submit?x=1">
  <input type="hidden" name="csrf" value="tok&amp;en">
  <input name="email" value="pre@x">
  <input type="password" name="password">
  <input type="checkbox" name="remember" value="yes">
  <input type="checkbox" name="terms" checked>
  <input type="radio" name="color" value="red">
  <input type="radio" name="color" value="blue" checked>
  <input name="disabled_field" value="no" disabled>
  <select name="lang"><option value="en">English</option>
    <option value="fr" selected>French</option></select>
  <select name="tz"><option>UTC</option><option>CET</option></select>
  <textarea name="note">
hello</textarea>
  <input type="submit" name="go" value="Go">
  <button name="decision" value="allow">Allow</button>
  <button name="decision" value="deny">Deny</button>
  <button type="button" name="js" value="x">JS only</button>
</form>
<form><input name="q"></form>
<form action="/abs" method="GET"><button>Unnamed</button></form>
</body></html>
"""


def test_parse_forms_fields_buttons_and_actions():
    forms = parse_forms(FORM_HTML, "https://op.test/a/page?p=1")
    assert len(forms) == 3
    first, second, third = forms
    assert first.action == "https://op.test/submit?x=1"
    assert first.method == "POST"
    assert first.fields == {
        "csrf": "tok&en",
        "email": "pre@x",
        "password": "",
        "terms": "on",
        "color": "blue",
        "lang": "fr",
        "tz": "UTC",
        "note": "hello",
    }
    assert first.buttons == [("go", "Go"), ("decision", "allow"), ("decision", "deny")]
    assert second.action == "https://op.test/a/page?p=1"  # empty action = page URL
    assert second.method == "GET"
    assert third.action == "https://op.test/abs"
    assert third.buttons == []


def test_form_fill_and_submit_data():
    form = parse_forms(FORM_HTML, "https://op.test/")[0]
    form.fill(email="a@b", password="pw", remember="yes", csrf=None)
    assert form.submit_data(("decision", "deny")) == {
        "email": "a@b",
        "password": "pw",
        "remember": "yes",
        "terms": "on",
        "color": "blue",
        "lang": "fr",
        "tz": "UTC",
        "note": "hello",
        "decision": "deny",
    }
    assert form.submit_data("decision")["decision"] == "allow"
    assert form.submit_data()["go"] == "Go"  # implicit submission: first button
    assert "go" not in form.submit_data(False)
    with pytest.raises(KeyError):
        form.submit_data("missing")


def test_find_form():
    forms = parse_forms(FORM_HTML, "https://op.test/")
    assert find_form(forms, "q") is forms[1]
    assert find_form(forms, "email", "password", "decision") is forms[0]
    assert find_form(forms, "remember") is forms[0]  # unchecked checkbox still counts
    with pytest.raises(LookupError):
        find_form(forms, "email", "otp")


# -------------------------------------------------------------------- transport


def test_response_helpers():
    resp = Response(
        302,
        {"location": "../next?a=1", "content-type": "application/json; charset=latin-1"},
        '{"x": "é"}'.encode("latin-1"),
        "https://op.test/a/b/c",
    )
    assert resp.headers["Location"] == "../next?a=1"
    assert resp.location == "https://op.test/a/next?a=1"
    assert resp.json() == {"x": "é"}
    assert resp.text == '{"x": "é"}'


def test_flask_transport_keeps_host_and_cookies(op):
    transport = FlaskTransport(op.app.test_client())
    seen = {}

    @op.app.get("/echo")
    def echo():
        seen.update(host=request.host, args=request.args.to_dict(), cookie=session.get("k"))
        session["k"] = "v"
        return "ok"

    transport.request("GET", "http://op.test/echo?a=1", params={"b": "2"})
    assert seen == {"host": "op.test", "args": {"a": "1", "b": "2"}, "cookie": None}
    resp = transport.request("GET", "http://op.test/echo")
    assert resp.status == 200
    assert resp.url == "http://op.test/echo"
    assert seen["cookie"] == "v"


def test_verify_id_token_es256(op, rp):
    ec_key = jwk.JWK.generate(kty="EC", crv="P-256", kid="ec1", use="sig", alg="ES256")
    op.keys = [KEY1, ec_key]
    access = "access-token-value"
    token = op.sign(
        op.id_token_claims(at_hash=independent_at_hash(access)), key=ec_key, alg="ES256"
    )
    assert rp.verify_id_token(token, nonce="n-123", access_token=access)["sub"] == "user-1"
    with pytest.raises(MockRPError, match="^signature:"):
        rp.verify_id_token(_flip_signature(token), nonce="n-123")


def test_resume_handles_form_post_and_exact_redirect_match(rp):
    state = {"state": "st-1", "nonce": "n-1", "code_verifier": "v"}
    html = f"""<html><body onload="document.forms[0].submit()">
      <form method="post" action="{REDIRECT}">
        <input type="hidden" name="code" value="c-1">
        <input type="hidden" name="state" value="st-1"></form></body></html>"""
    resp = Response(200, {"Content-Type": "text/html"}, html.encode(), ISSUER + "/authorize")
    result = rp.resume(resp, state)
    assert (result.code, result.state, result.nonce) == ("c-1", "st-1", "n-1")

    evil = Response(302, {"Location": REDIRECT + ".evil.test/?code=x&state=st-1"}, b"", ISSUER)
    with pytest.raises(MockRPError, match="does not match redirect_uri"):
        rp.resume(evil, state)
    elsewhere = Response(302, {"Location": "https://evil.test/?code=x"}, b"", ISSUER)
    with pytest.raises(MockRPError, match="unexpected origin"):
        rp.resume(elsewhere, state)
