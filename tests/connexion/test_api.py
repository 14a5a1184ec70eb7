"""``POST /api/form-c``: RFC 6750 bearer tokens, RFC 9068 validation, RFC 9470 step-up.

Tokens are signed with a test key that the stand-in provider serves as its JWKS (see
``conftest.py``); the real provider is used in ``test_flow.py``.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from datetime import date

import pytest

from clients.connexion import reports
from clients.connexion.tokens import bearer_challenge, parse_bearer_challenge
from tests.connexion.conftest import (
    AAL1,
    AAL2,
    API,
    API_SCOPE,
    CLIENT_ID,
    ISSUER,
    MFA,
    PHISHING_RESISTANT,
)

pytestmark = pytest.mark.usefixtures("provider")


def body(**overrides) -> dict:
    data = {
        "supplier_number": "1234567890",
        "period": reports.periods(date.today())[0].code,
        "subcontractors": 2,
        "total_purchases": "98765.43",
        "certified": True,
    }
    data.update(overrides)
    return data


def post(cx, token: str | None, data: dict | None = None, scheme: str = "Bearer"):
    headers = {"Authorization": f"{scheme} {token}"} if token is not None else {}
    return cx.post("/api/form-c", json=body() if data is None else data, headers=headers)


def challenge(resp) -> dict[str, str]:
    assert resp.status_code == 401, resp.get_data(as_text=True)
    return parse_bearer_challenge(resp.headers["WWW-Authenticate"])


def rows(app) -> list[tuple]:
    with sqlite3.connect(app.extensions["connexion"].database) as conn:
        return conn.execute(
            "SELECT confirmation, sub, supplier_number, period, subcontractors,"
            " total_purchases_cents, acr FROM form_c_reports"
        ).fetchall()


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- invalid_token ------------------------------------------------------------------------


def test_missing_token(cx, cx_app):
    resp = post(cx, None)
    params = challenge(resp)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer ")
    assert params["error"] == "invalid_token"
    assert resp.get_json()["error"] == "invalid_token"
    assert rows(cx_app) == []


def test_other_scheme_is_no_bearer_token(cx, mint):
    assert challenge(post(cx, mint(), scheme="Basic"))["error"] == "invalid_token"


@pytest.mark.parametrize(
    "case",
    [
        "bad signature",
        "tampered payload",
        "typ JWT",
        "no typ",
        "wrong issuer",
        "expired",
        "not yet valid",
        "other audience",
        "connexion's own token",
        "no sub",
        "alg none",
        "alg HS256",
        "unknown kid",
        "garbage",
    ],
)
def test_invalid_tokens(cx, cx_app, mint, other_key, case):
    now = int(time.time())
    token = {
        "bad signature": lambda: mint(key=other_key),
        "typ JWT": lambda: mint(header={"typ": "JWT"}),
        "no typ": lambda: mint(header={"typ": None}),
        "wrong issuer": lambda: mint(iss=f"{ISSUER}/other"),
        "expired": lambda: mint(iat=now - 600, exp=now - 120),
        "not yet valid": lambda: mint(nbf=now + 600),
        "other audience": lambda: mint(aud="someone-else", client_id="someone-else"),
        # The token the provider issued to Connexion itself (for the userinfo endpoint):
        # not for the API, even though client_id is Connexion's (RFC 8707, RFC 9068 3).
        "connexion's own token": lambda: mint(aud=CLIENT_ID, scope="openid profile email"),
        "no sub": lambda: mint(sub=None),
        "unknown kid": lambda: mint(header={"kid": "never-published"}),
        "garbage": lambda: "not-a-jwt",
    }.get(case)
    if case == "tampered payload":
        head, _payload, sig = mint(acr=AAL1).split(".")
        forged = _b64({"iss": ISSUER, "sub": "user-123", "aud": API, "exp": now + 300,
                       "acr": MFA, "auth_time": now, "scope": API_SCOPE})  # fmt: skip
        value = f"{head}.{forged}.{sig}"
    elif case in ("alg none", "alg HS256"):
        alg = case.split()[1]
        head = _b64({"alg": alg, "typ": "at+jwt", "kid": "test-key-1"})
        payload = _b64({"iss": ISSUER, "sub": "u", "aud": API, "exp": now + 300,
                        "acr": MFA, "auth_time": now, "scope": API_SCOPE})  # fmt: skip
        value = f"{head}.{payload}." + ("" if alg == "none" else _b64({"x": 1}))
    else:
        value = token()
    resp = post(cx, value)
    params = challenge(resp)
    assert params["error"] == "invalid_token", params
    assert "acr_values" not in params and "max_age" not in params
    assert rows(cx_app) == []


def test_the_valid_twin_of_each_invalid_token_is_accepted(cx, mint):
    """The failures above come from the one property each case changes."""
    assert post(cx, mint()).status_code == 201
    assert post(cx, mint(header={"typ": "application/at+jwt"})).status_code == 201
    # aud may be an array that names the API among others (RFC 7519 4.1.3).
    assert post(cx, mint(aud=["https://api.example.test", API])).status_code == 201
    # Issued to another client for this API: the audience decides, not client_id.
    assert post(cx, mint(client_id="another-client")).status_code == 201


# -- insufficient_scope (RFC 6750 3.1) ---------------------------------------------------


@pytest.mark.parametrize("scope", [None, "", "form-c:read", "openid profile email"])
def test_a_token_without_the_api_scope_is_403_insufficient_scope(cx, cx_app, mint, scope):
    resp = post(cx, mint(scope=scope))
    assert resp.status_code == 403
    params = parse_bearer_challenge(resp.headers["WWW-Authenticate"])
    assert params["error"] == "insufficient_scope" and params["scope"] == API_SCOPE
    assert resp.get_json()["error"] == "insufficient_scope"
    assert rows(cx_app) == []
    assert post(cx, mint(scope=f"form-c:read {API_SCOPE}")).status_code == 201


# -- insufficient_user_authentication (RFC 9470) --------------------------------------


def test_password_only_token_needs_step_up(cx, cx_app, mint):
    resp = post(cx, mint(acr=AAL1, amr=["pwd"]))
    params = challenge(resp)
    assert params["error"] == "insufficient_user_authentication"
    assert params["acr_values"] == MFA
    assert params["max_age"] == "900"
    assert params["error_description"]
    # max_age is a bare number (RFC 9470 3), acr_values a quoted string.
    assert "max_age=900" in resp.headers["WWW-Authenticate"]
    assert f'acr_values="{MFA}"' in resp.headers["WWW-Authenticate"]
    assert resp.get_json()["error"] == "insufficient_user_authentication"
    assert rows(cx_app) == []


def test_missing_acr_needs_step_up(cx, mint):
    assert challenge(post(cx, mint(acr=None)))["error"] == "insufficient_user_authentication"


def test_old_mfa_sign_in_needs_a_fresh_one(cx, cx_app, mint):
    now = int(time.time())
    params = challenge(post(cx, mint(acr=MFA, auth_time=now - 901 - 5)))
    assert params["error"] == "insufficient_user_authentication"
    assert params["max_age"] == "900" and params["acr_values"] == MFA
    assert "15 minutes" in params["error_description"]
    assert challenge(post(cx, mint(auth_time=None)))["error"] == "insufficient_user_authentication"
    assert rows(cx_app) == []
    # Just inside the window: accepted.
    assert post(cx, mint(acr=MFA, auth_time=now - 880)).status_code == 201


@pytest.mark.parametrize("acr", [MFA, AAL2, PHISHING_RESISTANT])
def test_step_up_level_or_higher_files_the_report(cx, cx_app, mint, acr):
    resp = post(cx, mint(acr=acr))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    confirmation = resp.get_json()["confirmation"]
    assert confirmation.startswith("FC-")
    assert rows(cx_app) == [
        (confirmation, "user-123", "1234567890", body()["period"], 2, 9_876_543, acr)
    ]


def test_unknown_acr_does_not_count_as_higher(cx, mint):
    params = challenge(post(cx, mint(acr="urn:example:acr:gold")))
    assert params["error"] == "insufficient_user_authentication"


def test_step_up_level_is_configurable(tmp_path, provider, mint):
    from clients.connexion import create_app

    app = create_app({"CONNEXION_ISSUER": ISSUER, "CONNEXION_API_RESOURCE": API,
                      "CONNEXION_STEP_UP_ACR": AAL2,
                      "CONNEXION_STEP_UP_MAX_AGE": "300", "CONNEXION_SECRET_KEY": "k",
                      "CONNEXION_DATABASE": str(tmp_path / "db.sqlite3")})  # fmt: skip
    client = app.test_client()
    params = challenge(post(client, mint(acr=MFA)))
    assert params["acr_values"] == AAL2 and params["max_age"] == "300"
    assert post(client, mint(acr=PHISHING_RESISTANT)).status_code == 201


# -- the report ------------------------------------------------------------------------


def test_invalid_report_is_400_with_field_errors(cx, cx_app, mint):
    resp = post(cx, mint(), body(supplier_number="12", certified=False, subcontractors=-1))
    assert resp.status_code == 400
    fields = resp.get_json()["fields"]
    assert set(fields) == {"supplier_number", "certified", "subcontractors"}
    assert post(cx, mint(), data=None).status_code == 201  # the same token, a good body
    resp = cx.post("/api/form-c", data="[]", content_type="application/json",
                   headers={"Authorization": f"Bearer {mint()}"})  # fmt: skip
    assert resp.status_code == 400
    assert len(rows(cx_app)) == 1


# -- the key set ------------------------------------------------------------------------


def test_jwks_is_cached_and_refetched_for_a_new_kid(cx, cx_app, provider, mint):
    from joserfc.jwk import RSAKey

    jwks = cx_app.extensions["connexion"].validator.jwks
    clock = [1000.0]
    jwks.clock = lambda: clock[0]
    for _ in range(3):
        assert post(cx, mint()).status_code == 201
    assert provider.jwks_fetches == 1  # cached

    # The provider rotates: a token from the new key makes us fetch the set again.
    new_key = RSAKey.generate_key(2048, parameters={"kid": "test-key-2", "alg": "RS256"})
    provider.keys.append(new_key)
    clock[0] += 30
    assert post(cx, mint(key=new_key)).status_code == 201
    assert provider.jwks_fetches == 2
    # Made-up kids right after do not make us fetch again (at most every 10 s) ...
    for _ in range(3):
        assert challenge(post(cx, mint(header={"kid": "made-up"})))["error"] == "invalid_token"
    assert provider.jwks_fetches == 2
    # ... and the set expires after its ttl.
    clock[0] += 301
    assert post(cx, mint()).status_code == 201
    assert provider.jwks_fetches == 3


def test_provider_unreachable_is_503_not_invalid_token(cx, provider, mint):
    provider.down = True
    resp = post(cx, mint())
    assert resp.status_code == 503
    assert "WWW-Authenticate" not in resp.headers


def test_discovery_must_name_the_same_issuer(cx, provider, mint, monkeypatch):
    real = provider.fetch_json
    monkeypatch.setattr(
        "clients.connexion.tokens.fetch_json",
        lambda url: (
            {**real(url), "issuer": "https://evil.example"} if "well-known" in url else real(url)
        ),
    )
    assert post(cx, mint()).status_code == 503


# -- the header helpers -----------------------------------------------------------------


def test_challenge_header_round_trip():
    header = bearer_challenge(
        "insufficient_user_authentication", 'Say "hi", please', acr_values=MFA, max_age=900
    )
    assert header == (
        'Bearer error="insufficient_user_authentication", '
        "error_description=\"Say 'hi', please\", "
        f'acr_values="{MFA}", max_age=900'
    )
    assert parse_bearer_challenge(header) == {
        "error": "insufficient_user_authentication",
        "error_description": "Say 'hi', please",
        "acr_values": MFA,
        "max_age": "900",
    }
    # RFC 9470's own example, with a quoted escape.
    assert parse_bearer_challenge(
        'Bearer error="insufficient_user_authentication", error_description="A \\"x\\"", '
        'acr_values="myACR"'
    ) == {"error": "insufficient_user_authentication", "error_description": 'A "x"',
          "acr_values": "myACR"}  # fmt: skip
    assert parse_bearer_challenge('Basic realm="x"') == {}


# -- the second mode: introspection (RFC 7662) ----------------------------------------------

API_CLIENT = ("connexion-api", "api-secret")


class Introspection:
    """The provider's introspection endpoint as the API sees it: what it answers for each
    token (inactive for anything else) and the requests it received."""

    def __init__(self):
        self.answers: dict[str, dict] = {}
        self.calls: list[tuple[str, dict, tuple]] = []
        self.down = False

    def post_form(self, url: str, data: dict, auth: tuple) -> tuple[int, dict]:
        from clients.connexion import tokens

        self.calls.append((url, dict(data), auth))
        if self.down:
            raise tokens.requests.ConnectionError("provider down")
        if auth != API_CLIENT:
            return 401, {"error": "invalid_client"}
        return 200, self.answers.get(data["token"], {"active": False})

    def active(self, token: str, **overrides) -> str:
        now = int(time.time())
        claims = {"active": True, "iss": ISSUER, "sub": "user-123", "aud": API,
                  "client_id": CLIENT_ID, "scope": API_SCOPE, "exp": now + 300,
                  "iat": now, "acr": MFA, "auth_time": now - 60, "token_type": "Bearer"}  # fmt: skip
        claims.update(overrides)
        self.answers[token] = {k: v for k, v in claims.items() if v is not None}
        return token


@pytest.fixture
def introspection(monkeypatch) -> Introspection:
    from clients.connexion import tokens

    stand_in = Introspection()
    monkeypatch.setattr(tokens, "post_form", stand_in.post_form)
    return stand_in


def introspecting_app(tmp_path, secret: str = API_CLIENT[1]):
    from clients.connexion import create_app

    return create_app({
        "CONNEXION_ISSUER": ISSUER, "CONNEXION_BASE_URL": "https://connexion.example.test",
        "CONNEXION_SECRET_KEY": "k", "CONNEXION_DATABASE": str(tmp_path / "db.sqlite3"),
        "CONNEXION_API_TOKEN_CHECK": "introspection",
        "CONNEXION_API_CLIENT_ID": API_CLIENT[0], "CONNEXION_API_CLIENT_SECRET": secret,
    })  # fmt: skip


def test_introspection_mode_asks_the_provider_with_the_apis_credentials(tmp_path, introspection):
    app = introspecting_app(tmp_path)
    client = app.test_client()
    assert post(client, introspection.active("opaque-or-jwt")).status_code == 201
    ((url, data, auth),) = introspection.calls
    assert url == f"{ISSUER}/introspect"  # from discovery
    assert data == {"token": "opaque-or-jwt", "token_type_hint": "access_token"}
    assert auth == API_CLIENT
    assert rows(app)[0][1] == "user-123"


@pytest.mark.parametrize(
    ("case", "overrides"),
    [
        ("inactive", None),
        ("for Connexion itself", {"aud": CLIENT_ID}),
        ("another issuer", {"iss": "https://evil.example"}),
        ("expired", {"exp": int(time.time()) - 3600}),
        ("no subject", {"sub": None}),
    ],
)
def test_introspection_mode_refuses_what_the_provider_does_not_vouch_for(
    tmp_path, introspection, case, overrides
):
    app = introspecting_app(tmp_path)
    token = "t-" + case.replace(" ", "-")
    if overrides is not None:
        introspection.active(token, **overrides)
    assert challenge(post(app.test_client(), token))["error"] == "invalid_token"
    assert rows(app) == []


def test_introspection_mode_keeps_the_step_up_and_the_scope_rules(tmp_path, introspection):
    client = introspecting_app(tmp_path).test_client()
    params = challenge(post(client, introspection.active("weak", acr=AAL1)))
    assert params["error"] == "insufficient_user_authentication"
    assert params["acr_values"] == MFA and params["max_age"] == "900"
    assert post(client, introspection.active("no-scope", scope="openid")).status_code == 403


def test_introspection_mode_refused_credentials_or_no_provider_is_503(tmp_path, introspection):
    wrong = introspecting_app(tmp_path, secret="not-the-secret").test_client()
    resp = post(wrong, introspection.active("good"))
    assert resp.status_code == 503 and "WWW-Authenticate" not in resp.headers
    introspection.down = True
    assert post(introspecting_app(tmp_path).test_client(), "good").status_code == 503


def test_the_api_token_check_must_be_known(tmp_path):
    from clients.connexion import create_app

    with pytest.raises(ValueError, match="CONNEXION_API_TOKEN_CHECK"):
        create_app({"CONNEXION_API_TOKEN_CHECK": "trust-me", "CONNEXION_SECRET_KEY": "k",
                    "CONNEXION_DATABASE": str(tmp_path / "db.sqlite3")})  # fmt: skip
