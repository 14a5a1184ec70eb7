"""UserInfo (OIDC Core 5.3, RFC 6750), introspection (RFC 7662) and revocation
(RFC 7009) with bad input."""

from __future__ import annotations

import pytest

from clients.mockrp import MockRP, OAuthError
from clients.mockrp.transport import FlaskTransport, basic_auth_header
from tests.conftest import PASSWORD

ISS = "http://localhost"
RP_CB = "https://rp.example.com/cb"
SCOPE = "openid profile email offline_access"


def new_rp(client, client_id: str, secret: str | None, **kw) -> MockRP:
    return MockRP(
        ISS, client_id, RP_CB, client_secret=secret, transport=FlaskTransport(client), **kw
    )


@pytest.fixture
def rp(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client()
    return new_rp(client, client_id, secret)


@pytest.fixture
def tokens(rp):
    return rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE))


@pytest.fixture
def other_rp(app, make_client):
    client_id, secret = make_client(name="Other RP")
    return new_rp(app.test_client(), client_id, secret)


def events(app, name: str) -> list[tuple[str, str | None, dict]]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [(r.outcome, r.client_id, dict(r.details or {})) for r in rows]


def live_refresh_tokens(app) -> int:
    from idp.extensions import db
    from idp.models import RefreshToken

    with app.app_context():
        return db.session.query(RefreshToken).filter_by(revoked_at=None).count()


def tamper(jwt: str) -> str:
    header, payload, sig = jwt.split(".")
    return f"{header}.{payload}.{('A' if sig[0] != 'A' else 'B') + sig[1:]}"


# -- userinfo ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_userinfo_without_token(app, client, method):
    resp = client.open("/userinfo", method=method)
    assert resp.status_code == 401
    challenge = resp.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    # RFC 6750 3.1: no error code when the request has no authentication at all.
    assert "error=" not in challenge
    assert resp.headers["Cache-Control"] == "no-store"
    # The body's code agrees with the 401 (invalid_request would mean a 400).
    assert resp.get_json()["error"] == "invalid_token"


@pytest.mark.parametrize("header", ["Basic eDp5", "Bearer", "Bearer ", "bearer"])
def test_userinfo_with_unusable_authorization_header(app, client, header):
    resp = client.get("/userinfo", headers={"Authorization": header})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("bad", ["garbage", "a.b.c", "x" * 9000, "tampered", "id_token", "expired"])
def test_userinfo_with_bad_token(app, rp, tokens, bad):
    if bad == "tampered":
        bad = tamper(tokens.access_token)
    elif bad == "id_token":
        bad = tokens.id_token  # signed by us, but not an access token (typ)
    elif bad == "expired":
        with app.app_context():
            from idp.oidc.tokens import TokenService
            from idp.services import services

            svc = services()
            now = 1_000_000_000
            bad = svc.keys.sign_jwt(
                {
                    "iss": ISS,
                    "sub": "s",
                    "aud": rp.client_id,
                    "client_id": rp.client_id,
                    "iat": now,
                    "exp": now + 60,
                    "jti": "old",
                    "scope": "openid",
                },
                typ="at+jwt",
            )
            assert TokenService(svc).validate_access_token(bad) is None
    with pytest.raises(OAuthError) as exc_info:
        rp.userinfo(bad)
    exc = exc_info.value
    assert (exc.status, exc.error) == (401, "invalid_token")


def test_userinfo_bad_token_challenge(app, client):
    resp = client.get("/userinfo", headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert resp.get_json()["error"] == "invalid_token"


def test_userinfo_token_in_header_and_body(app, client, tokens):
    resp = client.post(
        "/userinfo",
        data={"access_token": tokens.access_token},
        headers={"Authorization": f"Bearer {tokens.access_token}"},
    )
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"
    assert 'error="invalid_request"' in resp.headers["WWW-Authenticate"]


def test_userinfo_token_in_body(app, rp, tokens):
    info = rp.userinfo(tokens.access_token, in_body=True)
    assert info["email"] == "ada@example.com"
    header = rp.userinfo(tokens.access_token)
    assert info == header


def test_userinfo_token_in_query_is_not_accepted(app, client, tokens):
    """RFC 6750 2.3 is not supported (tokens in URLs leak into logs)."""
    resp = client.get("/userinfo", query_string={"access_token": tokens.access_token})
    assert resp.status_code == 401


def test_userinfo_with_revoked_token(app, rp, tokens):
    assert rp.revoke(tokens.access_token) == 200
    with pytest.raises(OAuthError) as exc_info:
        rp.userinfo(tokens.access_token)
    assert (exc_info.value.status, exc_info.value.error) == (401, "invalid_token")


def test_userinfo_for_disabled_user(app, rp, tokens):
    from idp.extensions import db
    from idp.models import User

    with app.app_context():
        db.session.execute(db.select(User)).scalar_one().status = "disabled"
        db.session.commit()
    with pytest.raises(OAuthError) as exc_info:
        rp.userinfo(tokens.access_token)
    assert (exc_info.value.status, exc_info.value.error) == (401, "invalid_token")


def test_userinfo_releases_claims_by_scope(app, rp):
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD, scope="openid email"))
    info = rp.userinfo(tokens.access_token)
    assert set(info) == {"sub", "email", "email_verified"}


# -- introspection ---------------------------------------------------------------------


def test_introspection_of_access_and_refresh_tokens(app, rp, tokens):
    at = rp.introspect(tokens.access_token)
    assert at["active"] is True and at["client_id"] == rp.client_id and at["iss"] == ISS
    assert at["token_type"] == "Bearer" and at["scope"] == SCOPE
    rt = rp.introspect(tokens.refresh_token, "refresh_token")
    assert rt["active"] is True and rt["token_type"] == "refresh_token" and rt["sub"] == at["sub"]
    assert rp.introspect(tokens.refresh_token)["active"] is True  # no hint needed


def test_introspection_by_another_client(app, rp, tokens, other_rp):
    """RFC 7662 2.2: a client may not learn about another client's tokens."""
    assert other_rp.introspect(tokens.access_token) == {"active": False}
    assert other_rp.introspect(tokens.refresh_token) == {"active": False}
    assert other_rp.introspect(tokens.refresh_token, "refresh_token") == {"active": False}
    assert rp.introspect(tokens.access_token)["active"] is True


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 300])
def test_introspection_of_unknown_token(app, rp, token):
    assert rp.introspect(token) == {"active": False}
    assert rp.introspect(token, "refresh_token") == {"active": False}


def test_introspection_without_client_authentication(app, client, tokens):
    resp = client.post("/introspect", data={"token": tokens.access_token})
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert "active" not in resp.get_json()
    assert events(app, "client.auth_failed")[-1][2] == {
        "endpoint": "introspection",
        "error": "invalid_client",
    }


def test_introspection_with_wrong_secret(app, client, rp, tokens):
    resp = client.post(
        "/introspect",
        data={"token": tokens.access_token},
        headers={"Authorization": basic_auth_header(rp.client_id, "wrong")},
    )
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"


def test_introspection_refused_for_public_clients(app, client, make_client, tokens):
    """Public clients cannot authenticate, so they cannot introspect (RFC 7662 2.1)."""
    client_id, _ = make_client(name="Public", auth_method="none")
    resp = client.post("/introspect", data={"token": tokens.access_token, "client_id": client_id})
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"


def test_introspection_without_token(app, client, rp):
    resp = client.post(
        "/introspect", headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)}
    )
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"


# -- revocation ------------------------------------------------------------------------


def test_revoke_access_token(app, rp, tokens):
    assert rp.revoke(tokens.access_token, "access_token") == 200
    assert rp.introspect(tokens.access_token) == {"active": False}
    # The refresh token is independent of one access token.
    assert rp.introspect(tokens.refresh_token)["active"] is True
    assert events(app, "token.revoked")[-1][2]["kind"] == "access_token"


@pytest.mark.parametrize("hint", ["refresh_token", "__not_a_token_type__"])
def test_a_wrong_or_unknown_hint_is_only_a_hint(app, rp, tokens, hint):
    """RFC 7009 2.1: the server looks beyond a hint that does not match, and ignores one
    it does not know (the OpenAPI description no longer lists the hint as an enum)."""
    assert rp.revoke(tokens.access_token, hint) == 200
    assert rp.introspect(tokens.access_token) == {"active": False}


@pytest.mark.parametrize("token", ["unknown", "a.b.c", "x" * 300])
def test_revoke_unknown_token(app, rp, tokens, token):
    """RFC 7009 2.2: invalid tokens do not cause an error response."""
    assert rp.revoke(token) == 200
    assert rp.introspect(tokens.access_token)["active"] is True
    assert live_refresh_tokens(app) == 1


def test_revoke_refresh_token_kills_its_family(app, rp, tokens):
    """RFC 7009 2.1: revoking a refresh token also invalidates the access tokens of the
    same grant; rotated siblings go too."""
    refreshed = rp.refresh(tokens.refresh_token)
    assert rp.revoke(refreshed.refresh_token, "refresh_token") == 200
    for t in (tokens, refreshed):
        assert rp.introspect(t.access_token) == {"active": False}
        assert rp.introspect(t.refresh_token) == {"active": False}
    with pytest.raises(OAuthError) as exc_info:
        rp.refresh(refreshed.refresh_token)
    assert exc_info.value.error == "invalid_grant"
    with pytest.raises(OAuthError):
        rp.userinfo(refreshed.access_token)
    assert live_refresh_tokens(app) == 0
    kinds = [d["kind"] for _, _, d in events(app, "token.revoked")]
    assert kinds == ["refresh_token"]
    # A reuse of the old one is not a "reuse" after revocation: just invalid.
    with pytest.raises(OAuthError):
        rp.refresh(tokens.refresh_token)


def test_revoke_by_another_client_is_ignored(app, rp, tokens, other_rp):
    assert other_rp.revoke(tokens.access_token) == 200
    assert other_rp.revoke(tokens.refresh_token) == 200
    assert rp.introspect(tokens.access_token)["active"] is True
    assert rp.introspect(tokens.refresh_token)["active"] is True
    assert live_refresh_tokens(app) == 1
    assert events(app, "token.revoked") == []


def test_revoke_without_client_authentication(app, client, tokens):
    resp = client.post("/revoke", data={"token": tokens.access_token})
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"


def test_revoke_without_token(app, client, rp):
    resp = client.post(
        "/revoke", headers={"Authorization": basic_auth_header(rp.client_id, rp.client_secret)}
    )
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_request"


def test_public_client_can_revoke(app, client, make_client, make_user):
    make_user()
    client_id, _ = make_client(auth_method="none")
    rp = new_rp(client, client_id, None, auth_method="none")
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD, scope=SCOPE))
    assert rp.revoke(tokens.refresh_token) == 200
    with pytest.raises(OAuthError) as exc_info:
        rp.refresh(tokens.refresh_token)
    assert exc_info.value.error == "invalid_grant"
    assert live_refresh_tokens(app) == 0
