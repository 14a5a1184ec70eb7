"""Dynamic Client Registration (RFC 7591) and management (RFC 7592), protected by
initial access tokens that administrators issue; driven with ``oic`` (pyoidc), a
relying-party library other than Authlib, which then completes a code flow."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from oic.oic import Client
from oic.oic.message import RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD

from idp.extensions import db
from idp.models import OAuthClient, RegistrationToken
from idp.models.base import utcnow
from tests.integration import test_independent_rp as independent
from tests.integration.test_admin_access import audit_events
from tests.integration.test_independent_rp import RP_CB, oic_sign_in
from tests.unit.test_audit_chain import _idp

# Served over real HTTP (pyoidc fetches the JWKS itself): the fixtures of the oic tests.
http_server = independent.http_server
settings = independent.settings
issuer = independent.issuer

REGISTER = "/connect/register"
GOOD = {"client_name": "Supplier portal", "redirect_uris": [RP_CB],
        "post_logout_redirect_uris": ["https://rp.example.com/bye"],
        "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
        "scope": "openid profile email offline_access"}  # fmt: skip


def token(app, *, uses: int = 1, expires_in: int = 600) -> str:
    from idp.oidc.registration import issue_token

    with app.app_context():
        return issue_token(expires_in=expires_in, uses=uses, created_by="test")[0]


def register(http, tok: str | None, body=None, **headers):
    if tok is not None:
        headers["Authorization"] = f"Bearer {tok}"
    return http.post(REGISTER, data=json.dumps(GOOD if body is None else body),
                     content_type="application/json", headers=headers)  # fmt: skip


def clients(app) -> list[OAuthClient]:
    with app.app_context():
        rows = list(db.session.execute(db.select(OAuthClient)).scalars())
        for r in rows:
            db.session.expunge(r)
        return rows


def test_discovery_advertises_the_registration_endpoint(app, client):
    meta = client.get("/.well-known/openid-configuration").json
    iss = app.extensions["idp"].settings.issuer
    assert meta["registration_endpoint"] == f"{iss}/connect/register"


def test_oic_registers_then_signs_in_with_the_new_client(app, issuer, make_user):
    """pyoidc discovers the endpoint, registers with an initial access token, and the
    registered client completes the code flow (consent shown: never first party)."""
    make_user()
    rp = Client(client_authn_method=CLIENT_AUTHN_METHOD, config={"code_challenge": {}})
    rp.provider_config(issuer)
    assert rp.provider_info["registration_endpoint"] == f"{issuer}/connect/register"
    reg = rp.register(rp.provider_info["registration_endpoint"], registration_token=token(app),
                      redirect_uris=[RP_CB], client_name="oic RP", response_types=["code"],
                      token_endpoint_auth_method="client_secret_basic",
                      scope="openid profile email offline_access")  # fmt: skip
    assert isinstance(reg, RegistrationResponse), reg
    assert reg["client_secret"] and reg["registration_access_token"]
    assert reg["registration_client_uri"] == f"{issuer}/connect/register/{reg['client_id']}"
    (c,) = clients(app)
    assert c.registered_dynamically and not c.first_party
    assert c.client_secret_hash != reg["client_secret"]
    assert c.registration_access_token_hash != reg["registration_access_token"]

    request, _verifier, tokens = oic_sign_in(rp, issuer)
    assert tokens["id_token"]["aud"] == [reg["client_id"]]
    assert tokens["id_token"]["nonce"] == request["nonce"]
    (event,) = audit_events(app, "client.registered")
    assert event.client_id == reg["client_id"] and event.details["registration_token"]


def test_the_initial_access_token_is_required(app, client):
    resp = register(client, None)
    assert resp.status_code == 401 and resp.json["error"] == "invalid_token"
    assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert register(client, "not-a-token").status_code == 401
    assert register(client, None, Authorization="Basic abc").status_code == 401
    assert clients(app) == []
    assert len(audit_events(app, "client.registration_refused")) == 3


def test_an_expired_token_is_refused(app, client):
    tok = token(app)
    with app.app_context():
        db.session.execute(db.update(RegistrationToken).values(
            expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
        db.session.commit()
    resp = register(client, tok)
    assert resp.status_code == 401 and resp.json["error"] == "invalid_token"
    assert clients(app) == []


def test_a_single_use_token_registers_one_client(app, client):
    tok = token(app)
    first = register(client, tok)
    assert first.status_code == 201, first.json
    assert first.headers["Cache-Control"] == "no-store"
    again = register(client, tok)
    assert again.status_code == 401 and again.json["error"] == "invalid_token"
    assert len(clients(app)) == 1


def test_a_token_with_more_uses(app, client):
    tok = token(app, uses=2)
    assert register(client, tok).status_code == 201
    assert register(client, tok).status_code == 201
    assert register(client, tok).status_code == 401
    assert len(clients(app)) == 2


def test_concurrent_registrations_with_one_token(app, backend):
    if backend == "sqlite":
        pytest.skip("concurrent writers are a PostgreSQL matter")
    tok = token(app)
    statuses: list[int] = []

    def run() -> None:
        statuses.append(register(app.test_client(), tok).status_code)

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 401, 401, 401, 401]
    assert len(clients(app)) == 1


@pytest.mark.parametrize("change,error", [
    ({"redirect_uris": ["http://rp.example.com/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://rp.example.com/cb#x"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://*.example.com/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"redirect_uris": "https://rp.example.com/cb"}, "invalid_client_metadata"),
    ({"response_types": ["token"]}, "invalid_client_metadata"),
    ({"grant_types": ["password"]}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "client_secret_jwt"}, "invalid_client_metadata"),
    ({"scope": "openid admin"}, "invalid_client_metadata"),
    ({"jwks_uri": "https://rp.example.com/jwks"}, "invalid_client_metadata"),
    ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
    ({"default_acr_values": ["urn:unknown"]}, "invalid_client_metadata"),
    ({"client_name": 42}, "invalid_client_metadata"),
])  # fmt: skip
def test_invalid_metadata(app, client, change, error):
    tok = token(app)
    resp = register(client, tok, {**GOOD, **change})
    assert resp.status_code == 400
    assert resp.json["error"] == error and resp.json["error_description"]
    assert clients(app) == []
    # Refused metadata does not use up the token.
    assert register(client, tok).status_code == 201


def test_a_body_that_is_not_a_json_object(app, client):
    tok = token(app)
    for body in ("[1, 2]", "not json"):
        resp = client.post(REGISTER, data=body, content_type="application/json",
                           headers={"Authorization": f"Bearer {tok}"})  # fmt: skip
        assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"


def nested_list(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


DEEP_BODIES = ["[" * 30_000, "[" * 3000 + "]" * 3000, '{"a":' * 2000 + "1" + "}" * 2000,
               json.dumps({**GOOD, "jwks": {"keys": nested_list(60)}})]  # fmt: skip


@pytest.mark.parametrize("body", DEEP_BODIES, ids=["open", "closed", "objects", "in-jwks"])
def test_a_deeply_nested_body_is_invalid_request(app, client, body):
    """JSON nested beyond the limit (32 levels; Python's json raises RecursionError past
    about 1000) is a 400 invalid_request in JSON, before and after the initial access
    token is checked, and does not use the token up."""
    tok = token(app)
    for headers in ({"Authorization": f"Bearer {tok}"}, {}):
        resp = client.post(REGISTER, data=body, content_type="application/json",
                           headers=headers)  # fmt: skip
        assert resp.status_code == 400, resp.get_data(as_text=True)[:300]
        assert resp.json["error"] == "invalid_request"
        assert "nested" in resp.json["error_description"]
    assert clients(app) == []
    assert register(client, tok).status_code == 201


def test_a_deeply_nested_update_is_invalid_request(app, client):
    reg = register(client, token(app)).json
    path = urlsplit(reg["registration_client_uri"]).path
    auth = {"Authorization": f"Bearer {reg['registration_access_token']}"}
    resp = client.put(path, data="[" * 30_000, content_type="application/json", headers=auth)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"
    assert _manage(client, "GET", reg["registration_client_uri"],
                   reg["registration_access_token"]).status_code == 200  # fmt: skip


def test_non_finite_numbers_are_not_json(app, client):
    """RFC 8259 6: NaN and Infinity are not JSON numbers; they would reach the stored
    JWKS (and PostgreSQL's json type refuses them)."""
    tok = token(app)
    key = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
           "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0", "extra": float("nan")}  # fmt: skip
    body = {**GOOD, "grant_types": ["authorization_code"],
            "token_endpoint_auth_method": "private_key_jwt", "jwks": {"keys": [key]}}  # fmt: skip
    resp = register(client, tok, body)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"
    assert clients(app) == []


def test_dynamic_clients_are_never_first_party(app, client):
    resp = register(client, token(app), {**GOOD, "first_party": True})
    assert resp.status_code == 201
    (c,) = clients(app)
    assert not c.first_party
    # Not through the admin pages' update path either.
    from idp.oidc.clients import update_client

    with app.app_context():
        row = db.session.get(OAuthClient, c.id)
        update_client(row, actor="test", first_party=True)
        assert not row.first_party


def test_public_client_and_default_acr(app, client):
    body = {**GOOD, "token_endpoint_auth_method": "none",
            "default_acr_values": ["urn:unknown", "urn:idp:acr:mfa"]}  # fmt: skip
    resp = register(client, token(app), body)
    assert resp.status_code == 201
    assert "client_secret" not in resp.json
    assert resp.json["default_acr_values"] == ["urn:idp:acr:mfa"]


# -- RFC 7592 ------------------------------------------------------------------------------


def _manage(http, method: str, uri: str, rat: str, body=None):
    path = urlsplit(uri).path
    kw = {"headers": {"Authorization": f"Bearer {rat}"}}
    if body is not None:
        kw.update(data=json.dumps(body), content_type="application/json")
    return http.open(path, method=method, **kw)


def test_read_update_and_delete_with_the_registration_access_token(app, client):
    reg = register(client, token(app)).json
    uri, rat = reg["registration_client_uri"], reg["registration_access_token"]

    read = _manage(client, "GET", uri, rat)
    assert read.status_code == 200
    assert read.json["client_id"] == reg["client_id"] and "client_secret" not in read.json
    assert read.json["redirect_uris"] == [RP_CB]
    assert _manage(client, "GET", uri, "wrong").status_code == 401
    assert _manage(client, "GET", uri.replace(reg["client_id"], "other"), rat).status_code == 401

    update = {**GOOD, "client_id": reg["client_id"], "client_name": "Renamed",
              "redirect_uris": ["https://rp.example.com/new"]}  # fmt: skip
    bad = [
        ({**update, "client_id": "someone-else"}, "invalid_client_metadata"),
        ({**update, "redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
        ({**update, "registration_access_token": rat}, "invalid_client_metadata"),
        ({**update, "client_secret": "not the secret"}, "invalid_client_metadata"),
        ({**update, "token_endpoint_auth_method": "none"}, "invalid_client_metadata"),
    ]
    for body, error in bad:
        resp = _manage(client, "PUT", uri, rat, body)
        assert resp.status_code == 400 and resp.json["error"] == error, body
    put = _manage(client, "PUT", uri, rat, {**update, "client_secret": reg["client_secret"]})
    assert put.status_code == 200, put.json
    assert put.json["client_name"] == "Renamed"
    assert put.json["redirect_uris"] == ["https://rp.example.com/new"]
    new_rat = put.json["registration_access_token"]
    assert new_rat != rat
    assert _manage(client, "GET", uri, rat).status_code == 401  # rotated
    assert _manage(client, "GET", uri, new_rat).json["client_name"] == "Renamed"

    assert _manage(client, "DELETE", uri, new_rat).status_code == 204
    assert clients(app) == []
    assert _manage(client, "GET", uri, new_rat).status_code == 401
    events = [e.event for e in audit_events(app, "client.updated")]
    assert events == ["client.updated"]
    assert len(audit_events(app, "client.deleted")) == 1


def test_clients_made_elsewhere_cannot_be_managed_by_api(app, client, make_client):
    client_id, _ = make_client()
    resp = client.get(f"/connect/register/{client_id}", headers={"Authorization": "Bearer x"})
    assert resp.status_code == 401 and resp.json["error"] == "invalid_token"


# -- the command ------------------------------------------------------------------------------


def test_issue_registration_token_command(tmp_path):
    assert _idp(tmp_path, "db", "upgrade").returncode == 0
    out = _idp(tmp_path, "clients", "issue-registration-token", "--expires-in", "600",
               "--uses", "2", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["uses"] == 2 and data["registration_endpoint"].endswith("/connect/register")
    with sqlite3.connect(tmp_path / "idp.sqlite3") as conn:
        stored = conn.execute("SELECT token_hash, uses_left FROM registration_tokens").fetchall()
        dump = "\n".join(conn.iterdump())
    assert len(stored) == 1 and stored[0][1] == 2
    assert data["initial_access_token"] not in dump
    bad = _idp(tmp_path, "clients", "issue-registration-token", "--uses", "0")
    assert bad.returncode == 2 and "uses must be at least 1" in bad.stderr
