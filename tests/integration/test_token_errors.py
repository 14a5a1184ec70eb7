"""The token endpoint with bad input (RFC 6749 5.2, 4.1.3, 6; RFC 7636 4.6; RFC 7523).

Every refusal is a JSON error with ``Cache-Control: no-store``, issues nothing, and is
audited; replays revoke what the replayed credential had issued.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from jwcrypto import jwk

from clients.mockrp import MockRP, OAuthError
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD

ISS = "http://localhost"
RP_CB = "https://rp.example.com/cb"
RP_CB2 = "https://rp.example.com/other-cb"
SCOPE = "openid profile email offline_access"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


# -- helpers -------------------------------------------------------------------------


def new_rp(client, client_id: str, secret: str | None, redirect_uri: str = RP_CB, **kw) -> MockRP:
    return MockRP(
        ISS, client_id, redirect_uri, client_secret=secret, transport=FlaskTransport(client), **kw
    )


def count(app, model_name: str, **filters) -> int:
    from idp import models
    from idp.extensions import db

    model = getattr(models, model_name)
    with app.app_context():
        return db.session.query(model).filter_by(**filters).count()


def events(app, name: str) -> list[tuple[str, str | None, dict]]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [(r.outcome, r.client_id, dict(r.details or {})) for r in rows]


def refused(app, error: str) -> bool:
    return any(
        outcome == "failure" and details.get("error") == error
        for outcome, _, details in events(app, "token.refused")
    )


def post_token(client, data, **kw):
    return client.post("/token", data=data, **kw)


def assert_json_error(resp, status: int, error: str) -> dict:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["error"] == error
    assert "no-store" in resp.headers.get("Cache-Control", "")
    return body


def token_error(exc_info, status: int, error: str) -> OAuthError:
    exc = exc_info.value
    assert (exc.status, exc.error) == (status, error), exc
    return exc


@pytest.fixture
def rp(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client()
    return new_rp(client, client_id, secret)


@pytest.fixture
def other_rp(app, make_client):
    """Another confidential client, in its own browser."""
    client_id, secret = make_client(name="Other RP")
    return new_rp(app.test_client(), client_id, secret)


# -- client authentication --------------------------------------------------------------


def test_wrong_client_secret(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    impostor = new_rp(app.test_client(), rp.client_id, "not-the-secret")
    with pytest.raises(OAuthError) as exc_info:
        impostor.exchange_code(result)
    exc = token_error(exc_info, 401, "invalid_client")
    assert "error" in exc.body
    assert count(app, "RefreshToken") == 0
    assert refused(app, "invalid_client")
    # Nothing was consumed: the real client still redeems the code.
    tokens = rp.exchange_code(result)
    assert tokens.refresh_token and count(app, "RefreshToken") == 1


def test_wrong_client_secret_has_www_authenticate(app, client, rp):
    resp = post_token(
        client,
        {"grant_type": "authorization_code", "code": "x", "redirect_uri": RP_CB},
        auth=(rp.client_id, "wrong"),
    )
    assert_json_error(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")


def test_unknown_client(app, client, rp):
    resp = post_token(
        client,
        {"grant_type": "authorization_code", "code": "x", "redirect_uri": RP_CB},
        auth=("no-such-client", "secret"),
    )
    assert_json_error(resp, 401, "invalid_client")
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    resp = post_token(
        client,
        {
            "grant_type": "authorization_code",
            "code": "x",
            "client_id": "nope",
            "client_secret": "s",
        },
    )
    assert resp.status_code in (400, 401)
    assert resp.get_json()["error"] == "invalid_client"


def test_no_client_authentication(app, client, rp):
    resp = post_token(client, {"grant_type": "authorization_code", "code": "x"})
    assert_json_error(resp, 401, "invalid_client")


def test_confidential_client_cannot_skip_its_secret(app, client, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    resp = post_token(
        client,
        {
            "grant_type": "authorization_code",
            "code": result.code,
            "redirect_uri": RP_CB,
            "code_verifier": result.code_verifier,
            "client_id": rp.client_id,
        },
    )
    assert_json_error(resp, 401, "invalid_client")
    assert count(app, "RefreshToken") == 0


def test_client_secret_post(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client(auth_method="client_secret_post")
    rp = new_rp(client, client_id, secret, auth_method="client_secret_post")
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    tokens = rp.exchange_code(result)
    assert rp.verify_id_token(tokens.id_token, nonce=result.nonce)["aud"] == client_id
    assert rp.introspect(tokens.access_token)["active"] is True
    # The registered method only: HTTP Basic is refused for this client.
    basic = new_rp(app.test_client(), client_id, secret)
    with pytest.raises(OAuthError) as exc_info:
        basic.refresh(tokens.refresh_token)
    token_error(exc_info, 401, "invalid_client")


# -- grant types ----------------------------------------------------------------------


@pytest.mark.parametrize("grant_type", ["password", "implicit", "urn:example:nope"])
def test_unsupported_grant_type(app, client, rp, grant_type):
    resp = post_token(
        client,
        {"grant_type": grant_type, "username": "ada@example.com", "password": PASSWORD},
        auth=(rp.client_id, rp.client_secret),
    )
    assert_json_error(resp, 400, "unsupported_grant_type")
    assert count(app, "RefreshToken") == 0
    assert refused(app, "unsupported_grant_type")


@pytest.mark.parametrize("fields", [{"code": "x"}, {"grant_type": "", "code": "x"}])
def test_missing_grant_type(app, client, rp, fields):
    """RFC 6749 5.2: a missing required parameter is invalid_request."""
    resp = post_token(client, fields, auth=(rp.client_id, rp.client_secret))
    assert_json_error(resp, 400, "invalid_request")
    assert refused(app, "invalid_request")


def test_missing_code(app, client, rp):
    resp = post_token(
        client,
        {"grant_type": "authorization_code", "redirect_uri": RP_CB},
        auth=(rp.client_id, rp.client_secret),
    )
    assert_json_error(resp, 400, "invalid_request")


@pytest.mark.parametrize("code", ["", "garbage", "x" * 500])
def test_unknown_code(app, client, rp, code):
    resp = post_token(
        client,
        {"grant_type": "authorization_code", "code": code, "redirect_uri": RP_CB},
        auth=(rp.client_id, rp.client_secret),
    )
    assert_json_error(resp, 400, "invalid_grant")
    assert refused(app, "invalid_grant")


# -- authorization codes ----------------------------------------------------------------


def test_code_reuse_revokes_what_it_issued(app, rp):
    """RFC 6749 4.1.2: a code used twice is refused, and the tokens it issued revoked."""
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    tokens = rp.exchange_code(result)
    assert rp.introspect(tokens.access_token)["active"] is True
    assert rp.userinfo(tokens.access_token)["email"] == "ada@example.com"
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result)
    token_error(exc_info, 400, "invalid_grant")
    assert rp.introspect(tokens.access_token) == {"active": False}
    assert rp.introspect(tokens.refresh_token) == {"active": False}
    with pytest.raises(OAuthError) as exc_info:
        rp.userinfo(tokens.access_token)
    token_error(exc_info, 401, "invalid_token")
    with pytest.raises(OAuthError) as exc_info:
        rp.refresh(tokens.refresh_token)
    token_error(exc_info, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 1  # only the first exchange's token
    assert count(app, "RefreshToken", revoked_at=None) == 0
    assert [e[1] for e in events(app, "token.code_reuse")] == [rp.client_id]
    assert refused(app, "invalid_grant")


def _expire_codes(app) -> None:
    from idp.extensions import db
    from idp.models import AuthorizationCode
    from idp.models.base import utcnow

    with app.app_context():
        for row in db.session.query(AuthorizationCode):
            row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()


def test_expired_code(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    _expire_codes(app)
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result)
    token_error(exc_info, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 0
    assert count(app, "AuthorizationCode", used_at=None) == 1


def test_code_expires_after_code_ttl(app, rp, settings):
    from idp.extensions import db
    from idp.models import AuthorizationCode

    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with app.app_context():
        row = db.session.query(AuthorizationCode).one()
        lifetime = (row.expires_at - row.created_at).total_seconds()
    assert abs(lifetime - settings.tokens.code_ttl) < 5
    assert settings.tokens.code_ttl <= 600  # RFC 6749 4.1.2: ten minutes at most
    assert rp.exchange_code(result).access_token


def test_code_of_another_client(app, rp, other_rp):
    """RFC 6749 4.1.3: the code must have been issued to the authenticated client. The
    code is not burnt by the other client's attempt: the rightful client still redeems it."""
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with pytest.raises(OAuthError) as exc_info:
        other_rp.exchange_code(result, redirect_uri=RP_CB)
    token_error(exc_info, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 0
    assert any(
        d.get("reason") == "code_of_another_client" and c == other_rp.client_id
        for _, c, d in events(app, "token.refused")
    )
    tokens = rp.exchange_code(result)
    assert rp.verify_id_token(tokens.id_token, nonce=result.nonce)["aud"] == rp.client_id


def test_code_with_a_different_redirect_uri(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client(redirect_uris=[RP_CB, RP_CB2])
    rp = new_rp(client, client_id, secret)
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result, redirect_uri=RP_CB2)
    token_error(exc_info, 400, "invalid_grant")
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result, redirect_uri=RP_CB + "/")
    token_error(exc_info, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 0
    assert count(app, "AuthorizationCode", used_at=None) == 1


def test_code_without_redirect_uri(app, client, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    resp = post_token(
        client,
        {
            "grant_type": "authorization_code",
            "code": result.code,
            "code_verifier": result.code_verifier,
        },
        auth=(rp.client_id, rp.client_secret),
    )
    assert_json_error(resp, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 0


def test_pkce_wrong_verifier(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result, code_verifier="w" * 64)
    token_error(exc_info, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 0
    assert refused(app, "invalid_grant")


def test_pkce_missing_verifier(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result, code_verifier=None)
    token_error(exc_info, 400, "invalid_request")
    assert count(app, "RefreshToken") == 0


def test_pkce_malformed_verifier(app, rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result, code_verifier="short")
    token_error(exc_info, 400, "invalid_request")


def test_verifier_without_challenge(app, client, make_client, make_user):
    """RFC 9700 4.8.2: a code_verifier for a code requested without PKCE is refused."""
    make_user()
    client_id, secret = make_client()
    rp = new_rp(client, client_id, secret, use_pkce=False)
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result, code_verifier="v" * 43)
    token_error(exc_info, 400, "invalid_request")
    assert rp.exchange_code(result).access_token  # without a verifier it works


def test_public_client_code_flow(app, client, make_client, make_user):
    make_user()
    client_id, _ = make_client(auth_method="none")
    rp = new_rp(client, client_id, None, auth_method="none")
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    with pytest.raises(OAuthError) as exc_info:
        rp.exchange_code(result, code_verifier=None)
    token_error(exc_info, 400, "invalid_request")
    tokens = rp.exchange_code(result)
    assert tokens.id_token and tokens.refresh_token


# -- refresh tokens ----------------------------------------------------------------------


def test_refresh_token_reuse_revokes_the_family(app, rp):
    """OAuth 2.0 Security BCP (RFC 9700 4.14.2): a rotated refresh token presented
    again revokes every token of its family, the newest included."""
    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    first = rp.exchange_code(result)
    second = rp.refresh(first.refresh_token)
    third = rp.refresh(second.refresh_token)
    assert rp.introspect(third.access_token)["active"] is True
    with pytest.raises(OAuthError) as exc_info:
        rp.refresh(first.refresh_token)
    token_error(exc_info, 400, "invalid_grant")
    with pytest.raises(OAuthError) as exc_info:
        rp.refresh(third.refresh_token)
    token_error(exc_info, 400, "invalid_grant")
    for tokens in (first, second, third):
        assert rp.introspect(tokens.access_token) == {"active": False}
    with pytest.raises(OAuthError) as exc_info:
        rp.userinfo(third.access_token)
    token_error(exc_info, 401, "invalid_token")
    assert count(app, "RefreshToken") == 3
    assert count(app, "RefreshToken", revoked_at=None) == 0
    reuse = events(app, "token.refresh_reuse")
    assert len(reuse) == 1
    assert reuse[0][0] == "failure" and reuse[0][1] == rp.client_id
    assert reuse[0][2]["revoked"] == 3  # every row of the family is marked revoked


def test_refresh_token_of_another_client(app, rp, other_rp):
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE))
    with pytest.raises(OAuthError) as exc_info:
        other_rp.refresh(tokens.refresh_token)
    token_error(exc_info, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 1
    # Still the rightful client's.
    assert rp.refresh(tokens.refresh_token).refresh_token


def test_unknown_and_missing_refresh_token(app, client, rp):
    auth = (rp.client_id, rp.client_secret)
    resp = post_token(client, {"grant_type": "refresh_token", "refresh_token": "nope"}, auth=auth)
    assert_json_error(resp, 400, "invalid_grant")
    resp = post_token(client, {"grant_type": "refresh_token"}, auth=auth)
    assert_json_error(resp, 400, "invalid_request")


def test_refresh_cannot_widen_scope(app, rp):
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE))
    with pytest.raises(OAuthError) as exc_info:
        rp.refresh(tokens.refresh_token, scope="openid phone")
    token_error(exc_info, 400, "invalid_scope")
    assert rp.refresh(tokens.refresh_token, scope="openid email").scope == "openid email"


def test_expired_refresh_token(app, rp):
    from idp.extensions import db
    from idp.models import RefreshToken
    from idp.models.base import utcnow

    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE))
    with app.app_context():
        row = db.session.query(RefreshToken).one()
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    with pytest.raises(OAuthError) as exc_info:
        rp.refresh(tokens.refresh_token)
    token_error(exc_info, 400, "invalid_grant")
    assert count(app, "RefreshToken") == 1


# -- malformed requests ---------------------------------------------------------------------


def test_json_body(app, client, rp):
    """RFC 6749 3.2: parameters are form-encoded; a JSON body carries none of them."""
    from clients.mockrp.transport import basic_auth_header

    resp = client.post(
        "/token",
        data=json.dumps({"grant_type": "client_credentials"}),
        content_type="application/json",
        headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)},
    )
    assert_json_error(resp, 400, "invalid_request")


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (
            b"grant_type=authorization_code&code=%zz&&&==",
            "application/x-www-form-urlencoded",
            "invalid_grant",
        ),
        (b"\xff\xfe\x00junk", "application/x-www-form-urlencoded", "invalid_request"),
        (b"grant_type", "application/x-www-form-urlencoded", "invalid_request"),
        (b"{not json", "application/json", "invalid_request"),
        (b"grant_type=client_credentials", "text/plain", "invalid_request"),
        (b"<xml/>", "application/xml", "invalid_request"),
    ],
)
def test_junk_bodies(app, client, rp, body, content_type, error):
    from clients.mockrp.transport import basic_auth_header

    resp = client.post(
        "/token",
        data=body,
        content_type=content_type,
        headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)},
    )
    assert_json_error(resp, 400, error)
    assert count(app, "RefreshToken") == 0


def test_nul_in_a_parameter_is_invalid_request(app, client, rp):
    """A NUL byte (which PostgreSQL text cannot hold) is refused up front; it once
    reached the audit row of the refusal and made it a 500 (found by schemathesis)."""
    from clients.mockrp.transport import basic_auth_header

    resp = client.post(
        "/token",
        data={"grant_type": "refresh_token", "client_id": "\x00"},
        headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)},
    )
    assert_json_error(resp, 400, "invalid_request")
    assert "NUL" in resp.get_json()["error_description"]


def test_nul_in_the_basic_credentials_is_an_unknown_client(app, client):
    from clients.mockrp.transport import basic_auth_header

    resp = client.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": basic_auth_header("rp\x00", "secret")},
    )
    assert_json_error(resp, 401, "invalid_client")


@pytest.mark.parametrize("endpoint", ["/token", "/introspect", "/revoke"])
@pytest.mark.parametrize("credentials", [b"\xff\x00:\xfe", b"\xc0\x80:x", b"rp:\xed\xa0\x80"])
def test_basic_credentials_that_are_not_utf8(app, client, rp, endpoint, credentials):
    """RFC 6749 2.3.1: client_id:client_secret in UTF-8. Other bytes fail to
    authenticate the client (invalid_client, 401 for HTTP Basic, 5.2); Authlib raised
    UnicodeDecodeError (a 500, found by the endpoint fuzzer)."""
    import base64

    data = {"grant_type": "client_credentials", "token": "t"}
    header = "Basic " + base64.b64encode(credentials).decode()
    resp = client.post(endpoint, data=data, headers={"Authorization": header})
    assert resp.status_code == 401, resp.get_data(as_text=True)[:300]
    assert resp.get_json()["error"] == "invalid_client"


def test_get_is_not_allowed(app, client):
    resp = client.get("/token?grant_type=client_credentials")
    assert resp.status_code == 405
    assert resp.mimetype == "application/json"
    assert resp.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize("repeated", ["code", "redirect_uri", "code_verifier", "grant_type"])
def test_repeated_parameter(app, client, rp, repeated):
    """RFC 6749 3.2 and 5.2: a repeated parameter is invalid_request, and the code it
    carried is not redeemed."""
    from urllib.parse import urlencode

    from clients.mockrp.transport import basic_auth_header

    result = rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    params = {
        "grant_type": "authorization_code",
        "code": result.code,
        "redirect_uri": RP_CB,
        "code_verifier": result.code_verifier,
    }
    pairs = [*params.items(), (repeated, params[repeated])]
    resp = client.post(
        "/token",
        data=urlencode(pairs),
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)},
    )
    assert_json_error(resp, 400, "invalid_request")
    assert count(app, "RefreshToken") == 0
    assert refused(app, "invalid_request")
    assert rp.exchange_code(result).access_token  # not burnt by the bad request


# -- client credentials ---------------------------------------------------------------------


GRANTS = ["authorization_code", "refresh_token", "client_credentials"]


def test_client_credentials(app, client, make_client):
    client_id, secret = make_client(grant_types=GRANTS)
    rp = new_rp(client, client_id, secret)
    tokens = rp.client_credentials()
    assert tokens.id_token is None and tokens.refresh_token is None
    assert "refresh_token" not in tokens.raw and "id_token" not in tokens.raw
    assert tokens.token_type == "Bearer"
    claims = rp.verify_access_token(tokens.access_token)
    assert claims["sub"] == client_id
    assert "openid" not in claims["scope"].split()
    assert "offline_access" not in claims["scope"].split()
    assert rp.introspect(tokens.access_token)["active"] is True
    assert count(app, "RefreshToken") == 0
    # No user: no userinfo.
    with pytest.raises(OAuthError) as exc_info:
        rp.userinfo(tokens.access_token)
    assert exc_info.value.status == 403


def test_client_credentials_with_openid_scope(app, client, make_client):
    client_id, secret = make_client(grant_types=GRANTS)
    rp = new_rp(client, client_id, secret)
    with pytest.raises(OAuthError) as exc_info:
        rp.client_credentials(scope="openid profile")
    token_error(exc_info, 400, "invalid_scope")


def test_client_credentials_not_registered(app, rp):
    with pytest.raises(OAuthError) as exc_info:
        rp.client_credentials()
    token_error(exc_info, 400, "unauthorized_client")


def test_client_credentials_refused_for_public_client(app, client, make_client):
    """RFC 6749 4.4: confidential clients only. A public client cannot authenticate."""
    client_id, _ = make_client(auth_method="none")
    rp = new_rp(client, client_id, None, auth_method="none")
    with pytest.raises(OAuthError) as exc_info:
        rp.client_credentials()
    token_error(exc_info, 401, "invalid_client")
    assert refused(app, "invalid_client")


# -- private_key_jwt --------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_key() -> dict:
    key = jwk.JWK.generate(kty="EC", crv="P-256", kid="rp-key-1", alg="ES256", use="sig")
    return json.loads(key.export_private())


@pytest.fixture
def jwt_rp(app, client, make_client, make_user, client_key):
    make_user()
    public = {k: v for k, v in client_key.items() if k != "d"}
    client_id, secret = make_client(
        auth_method="private_key_jwt", jwks={"keys": [public]}, grant_types=GRANTS
    )
    assert secret is None
    return new_rp(
        client, client_id, None, auth_method="private_key_jwt", private_key_jwk=client_key
    )


def test_private_key_jwt(app, jwt_rp):
    result = jwt_rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE)
    tokens = jwt_rp.exchange_code(result)
    jwt_rp.verify_id_token(tokens.id_token, nonce=result.nonce, access_token=tokens.access_token)
    assert jwt_rp.refresh(tokens.refresh_token).access_token
    assert jwt_rp.client_credentials().refresh_token is None
    assert jwt_rp.introspect(tokens.access_token)["active"] is True


def _assertion_post(client, rp: MockRP, assertion: str):
    return post_token(
        client,
        {
            "grant_type": "client_credentials",
            "client_id": rp.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )


def test_private_key_jwt_replay_is_refused(app, client, jwt_rp):
    assertion = jwt_rp.client_assertion()
    assert _assertion_post(client, jwt_rp, assertion).status_code == 200
    resp = _assertion_post(client, jwt_rp, assertion)
    body = assert_json_error(resp, resp.status_code, "invalid_client")
    assert resp.status_code in (400, 401)
    assert "access_token" not in body


def test_private_key_jwt_wrong_audience(app, client, jwt_rp):
    resp = _assertion_post(client, jwt_rp, jwt_rp.client_assertion(audience="https://elsewhere"))
    assert resp.get_json()["error"] == "invalid_client"
    assert resp.status_code in (400, 401)


def test_private_key_jwt_unregistered_key(app, client, jwt_rp):
    other = json.loads(jwk.JWK.generate(kty="EC", crv="P-256", kid="rp-key-1").export_private())
    forger = new_rp(
        client, jwt_rp.client_id, None, auth_method="private_key_jwt", private_key_jwk=other
    )
    resp = _assertion_post(client, forger, forger.client_assertion())
    assert resp.get_json()["error"] == "invalid_client"
    assert resp.status_code in (400, 401)


def test_private_key_jwt_client_cannot_use_a_secret(app, client, jwt_rp):
    resp = post_token(
        client,
        {"grant_type": "client_credentials"},
        auth=(jwt_rp.client_id, "anything"),
    )
    assert_json_error(resp, 401, "invalid_client")


# -- private_key_jwt: lifetime, age and replay window (RFC 7523 3, OIDC Core 9) ----------


def _signed_assertion(key: dict, client_id: str, **claims) -> str:
    """A client assertion for *client_id* signed with *key*; a claim set to None is left
    out, any other keyword replaces the default claim."""
    import time
    import uuid

    from jwcrypto import jwt as jwc_jwt

    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": f"{ISS}/token",
            "jti": uuid.uuid4().hex, "iat": now, "exp": now + 60}  # fmt: skip
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    token = jwc_jwt.JWT(header={"alg": "ES256", "kid": key["kid"]}, claims=body)
    token.make_signed_token(jwk.JWK(**key))
    return token.serialize()


def _now() -> int:
    import time

    return int(time.time())


def assert_assertion_refused(app, resp) -> None:
    """Refused like every other failed client authentication: 400 invalid_client in
    JSON (no Authorization header was sent), no token, and audited."""
    body = assert_json_error(resp, 400, "invalid_client")
    assert "access_token" not in body
    assert refused(app, "invalid_client")


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": 10 * 365 * 86400}, id="exp-in-ten-years"),
        pytest.param({"exp": 86400}, id="exp-tomorrow"),
        pytest.param({"exp": 400}, id="exp-beyond-five-minutes"),
    ],
)
def test_private_key_jwt_far_future_exp_is_refused(app, client, jwt_rp, client_key, claims):
    """RFC 7523 3 (4): the server may refuse an exp unreasonably far in the future; here
    more than 300 s ahead, so that a captured assertion cannot be replayed for years."""
    exp = _now() + claims["exp"]
    assertion = _signed_assertion(client_key, jwt_rp.client_id, exp=exp)
    assert_assertion_refused(app, _assertion_post(client, jwt_rp, assertion))


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"iat": None}, id="no-iat"),
        pytest.param({"iat": 120}, id="iat-in-the-future"),
        pytest.param({"iat": -600}, id="iat-older-than-five-minutes"),
        pytest.param({"iat": "now"}, id="iat-not-a-number"),
        pytest.param({"iat": True}, id="iat-boolean"),
        pytest.param({"exp": "soon"}, id="exp-not-a-number"),
    ],
)
def test_private_key_jwt_bad_iat_is_refused(app, client, jwt_rp, client_key, claims):
    """RFC 7523 3 (6) and OIDC Core 9: iat is required here so the age of an assertion
    is known; one issued in the future (beyond 30 s of clock skew) or more than five
    minutes ago is refused."""
    now = _now()
    fixed = {k: (now + v if isinstance(v, int) and not isinstance(v, bool) else v)
             for k, v in claims.items()}  # fmt: skip
    assertion = _signed_assertion(client_key, jwt_rp.client_id, **fixed)
    assert_assertion_refused(app, _assertion_post(client, jwt_rp, assertion))


@pytest.mark.parametrize(
    ("iat", "exp"),
    [(0, 300), (10, 120), (-290, 60)],
    ids=["exp-at-five-minutes", "iat-within-clock-skew", "iat-almost-five-minutes-old"],
)
def test_private_key_jwt_within_the_limits_is_accepted(app, client, jwt_rp, client_key, iat, exp):
    now = _now()
    assertion = _signed_assertion(client_key, jwt_rp.client_id, iat=now + iat, exp=now + exp)
    resp = _assertion_post(client, jwt_rp, assertion)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["access_token"]


def test_private_key_jwt_jti_is_kept_until_exp(app, client, jwt_rp, client_key, monkeypatch):
    """RFC 7523 3 (7): the jti is remembered (per client) for as long as the assertion
    could be accepted, so the replay is refused until then."""
    from idp.services import services

    with app.app_context():
        store = services().store
    kept: list[tuple[str, int]] = []
    original = store.set_if_absent

    def spy(key: str, value: bytes, ttl: int) -> bool:
        if key.startswith("client_assertion:"):
            kept.append((key, ttl))
        return original(key, value, ttl)

    monkeypatch.setattr(store, "set_if_absent", spy)
    exp = _now() + 280
    assertion = _signed_assertion(client_key, jwt_rp.client_id, exp=exp)
    assert _assertion_post(client, jwt_rp, assertion).status_code == 200
    ((key, ttl),) = kept
    assert exp - _now() <= ttl <= exp - _now() + 60
    assert store.get(key) is not None
    assert_assertion_refused(app, _assertion_post(client, jwt_rp, assertion))


def test_private_key_jwt_jti_is_per_client(app, client, make_client, jwt_rp, client_key):
    """The same jti from two clients is two different assertions."""
    public = {k: v for k, v in client_key.items() if k != "d"}
    other_id, _ = make_client(name="Other JWT RP", auth_method="private_key_jwt",
                              jwks={"keys": [public]}, grant_types=GRANTS)  # fmt: skip
    other = new_rp(client, other_id, None, auth_method="private_key_jwt",
                   private_key_jwk=client_key)  # fmt: skip
    first = _signed_assertion(client_key, jwt_rp.client_id, jti="shared-jti")
    second = _signed_assertion(client_key, other_id, jti="shared-jti")
    assert _assertion_post(client, jwt_rp, first).status_code == 200
    assert _assertion_post(client, other, second).status_code == 200


def test_assertion_naming_a_client_without_keys(app, client, rp, client_key):
    """A client assertion whose iss/sub is a client that registered no JWKS (here a
    client_secret_basic client) is invalid_client, not a server error."""
    assertion = _signed_assertion(client_key, rp.client_id)
    resp = post_token(
        client,
        {"grant_type": "client_credentials", "client_id": rp.client_id,
         "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion},
    )  # fmt: skip
    assert_assertion_refused(app, resp)


@pytest.mark.parametrize("part", ["header", "payload"])
def test_deeply_nested_assertion_is_invalid_client(app, client, jwt_rp, part):
    """JSON nested deeper than the parser's recursion limit inside the assertion's
    header or payload is refused like any malformed assertion."""
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    deep = b64(b"[" * 1200)
    fine = b64(json.dumps({"alg": "ES256"}).encode())
    assertion = f"{deep}.{fine}.AAAA" if part == "header" else f"{fine}.{deep}.AAAA"
    assert_assertion_refused(app, _assertion_post(client, jwt_rp, assertion))


@pytest.mark.parametrize(
    "header",
    [{"alg": "ＥＳ２５６"}, {"alg": "ES256\n"}, {"alg": "ES256", "kid": "ｋｅｙ"},
     {"alg": "ES256", "crit": ["e\u0301"]}, {"alg": 'ES"256\\'}],
    ids=["fullwidth-alg", "newline-alg", "fullwidth-kid", "combining-crit", "quote-backslash"],
)  # fmt: skip
def test_assertion_header_echoed_in_the_error_is_invalid_client(app, client, jwt_rp, header):
    """The JOSE library quotes header values in its messages; RFC 6749 5.2 allows only
    printable ASCII without '"' and '\\' in error_description (Authlib raised
    ValueError: a 500, found by the endpoint fuzzer). Still invalid_client."""
    import base64

    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = _now()
    claims = {"iss": jwt_rp.client_id, "sub": jwt_rp.client_id, "aud": f"{ISS}/token",
              "jti": "j", "iat": now, "exp": now + 60}  # fmt: skip
    resp = _assertion_post(client, jwt_rp, f"{b64(header)}.{b64(claims)}.AAAA")
    assert_assertion_refused(app, resp)
    description = resp.get_json()["error_description"]
    assert all(" " <= c <= "~" and c not in '"\\' for c in description), description


# -- JSON nested too deeply ---------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("[" * 30_000, id="30000-open-arrays"),
        pytest.param("[" * 3000 + "]" * 3000, id="3000-closed-arrays"),
        pytest.param('{"a":' * 2000 + "1" + "}" * 2000, id="2000-nested-objects"),
        pytest.param("[" * 33 + "]" * 33, id="33-levels"),
    ],
)
def test_deeply_nested_json_body_is_invalid_request(app, client, rp, body):
    """A JSON body nested beyond the limit (32 levels) is a 400 invalid_request, never a
    500 (Python's json raises RecursionError past about 1000 levels)."""
    from clients.mockrp.transport import basic_auth_header

    resp = client.post(
        "/token",
        data=body,
        content_type="application/json",
        headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)},
    )
    assert_json_error(resp, 400, "invalid_request")
    assert "nested" in resp.get_json()["error_description"]


def test_json_body_over_the_size_limit_is_refused(app, client):
    """100,000 levels are also more than the 64 KiB a request may carry."""
    resp = client.post("/token", data="[" * 100_000, content_type="application/json")
    assert resp.status_code in (400, 413)
    assert resp.get_json()["error"] == "invalid_request"


def test_deeply_nested_form_parameter_is_invalid_request(app, client, rp):
    """A form parameter that looks like JSON and is nested beyond the limit is refused
    at the edge, whichever endpoint would parse it."""
    from clients.mockrp.transport import basic_auth_header

    resp = post_token(
        client,
        {"grant_type": "client_credentials", "scope": "[" * 1500},
        headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)},
    )
    assert_json_error(resp, 400, "invalid_request")
