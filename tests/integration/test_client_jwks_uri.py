"""private_key_jwt clients whose keys are at a jwks_uri (RFC 7591 2): fetched under the
outbound rules, kept, fetched again for a new kid at most once a minute.

The jwks_uri is a real HTTP server on 127.0.0.1 (allowed outside production only); the
assertions are signed by jwcrypto (through the mock relying party)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from jwcrypto import jwk as jwc_jwk

from clients.mockrp import MockRP
from clients.mockrp.rp import OAuthError
from clients.mockrp.transport import FlaskTransport
from tests.support.webhook import Answer, Webhook

ISS = "http://localhost"
CB = "https://rp.example.com/cb"


def rsa(kid: str) -> jwc_jwk.JWK:
    return jwc_jwk.JWK.generate(kty="RSA", size=2048, kid=kid, alg="RS256", use="sig")


def public_set(*keys: jwc_jwk.JWK) -> dict:
    return {"keys": [json.loads(k.export_public()) for k in keys]}


def serve(hook: Webhook, document: dict | bytes, status: int = 200) -> None:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    hook.routes["/jwks.json"] = Answer(status, body, {"Content-Type": "application/json"})


@pytest.fixture
def hook():
    with Webhook() as server:
        yield server


@pytest.fixture
def key1():
    return rsa("rp-1")


@pytest.fixture
def registered(app, make_client, hook, key1):
    serve(hook, public_set(key1))
    client_id, _ = make_client(auth_method="private_key_jwt", grant_types=["client_credentials"],
                               redirect_uris=[], jwks_uri=hook.url("/jwks.json"))  # fmt: skip
    return client_id


def rp_with(app, client_id: str, key: jwc_jwk.JWK) -> MockRP:
    return MockRP(ISS, client_id, CB, auth_method="private_key_jwt",
                  private_key_jwk=json.loads(key.export_private()),
                  transport=FlaskTransport(app.test_client()))  # fmt: skip


def fetches(hook: Webhook) -> int:
    return sum(1 for r in hook.requests if r.path == "/jwks.json")


def refused(rp: MockRP) -> str:
    with pytest.raises(OAuthError) as err:
        rp.client_credentials()
    assert err.value.error == "invalid_client"
    return err.value.error_description or ""


# -- fetching and keeping ------------------------------------------------------------------


def test_the_keys_are_fetched_once_and_kept(app, registered, hook, key1):
    rp = rp_with(app, registered, key1)
    assert rp.client_credentials().access_token
    assert rp.client_credentials().access_token
    assert fetches(hook) == 1
    seen = hook.requests[0]
    assert seen.method == "GET" and "json" in seen.headers["Accept"]


def test_a_new_kid_fetches_the_keys_again(app, registered, hook, key1):
    rp_with(app, registered, key1).client_credentials()
    key2 = rsa("rp-2")
    serve(hook, public_set(key1, key2))  # the client rotated its keys
    assert rp_with(app, registered, key2).client_credentials().access_token
    assert fetches(hook) == 2


def test_made_up_kids_cannot_make_the_provider_fetch_at_every_request(app, registered, hook,
                                                                      key1):  # fmt: skip
    rp_with(app, registered, key1).client_credentials()
    stranger = rsa("made-up-1")
    refused(rp_with(app, registered, stranger))  # one fetch for the unknown kid...
    refused(rp_with(app, registered, rsa("made-up-2")))  # ...then none for a minute
    refused(rp_with(app, registered, rsa("made-up-3")))
    assert fetches(hook) == 2
    assert rp_with(app, registered, key1).client_credentials().access_token  # still fine


def test_the_kept_keys_expire(app, registered, hook, key1):
    from idp.security.crypto import hash_token

    rp_with(app, registered, key1).client_credentials()
    with app.app_context():
        store = app.extensions["idp"].store
        name = hash_token(json.dumps([registered, hook.url("/jwks.json")]))
        assert store.ttl(f"client_jwks:{name}") <= 300
        store.delete(f"client_jwks:{name}")
    rp_with(app, registered, key1).client_credentials()
    assert fetches(hook) == 2


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Answer(404), "HTTP 404"),
        (Answer(302, headers={"Location": "/elsewhere"}), "HTTP 302"),
        (Answer(200, b"<html>keys</html>"), "did not answer JSON"),
        (Answer(200, b'{"keys": []}'), "not a JWK set"),
        (Answer(200, json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).encode()),
         "private or symmetric"),
        (Answer(200, b'{"keys": [' + b" " * 70_000 + b"]}"), "larger than 65536 bytes"),
    ],
)  # fmt: skip
def test_a_jwks_uri_without_usable_keys_authenticates_nobody(app, make_client, hook, key1,
                                                             answer, why, caplog):  # fmt: skip
    hook.routes["/jwks.json"] = answer
    client_id, _ = make_client(auth_method="private_key_jwt", grant_types=["client_credentials"],
                               redirect_uris=[], jwks_uri=hook.url("/jwks.json"))  # fmt: skip
    description = refused(rp_with(app, client_id, key1))
    assert "jwks_uri" in description
    assert why in caplog.text
    assert not any(r.path == "/elsewhere" for r in hook.requests)  # no redirect followed
    refused(rp_with(app, client_id, key1))
    assert fetches(hook) == 1  # a failing jwks_uri is not asked again at once


def test_a_private_key_in_the_set_refuses_it(app, make_client, hook, key1):
    hook.routes["/jwks.json"] = Answer(
        200, json.dumps({"keys": [json.loads(key1.export_private())]}).encode()
    )
    client_id, _ = make_client(auth_method="private_key_jwt", grant_types=["client_credentials"],
                               redirect_uris=[], jwks_uri=hook.url("/jwks.json"))  # fmt: skip
    refused(rp_with(app, client_id, key1))


class TestSlowServer:
    @pytest.fixture
    def settings(self, settings):
        return replace(settings, client_keys=replace(settings.client_keys, fetch_timeout=1))

    def test_a_jwks_uri_that_hangs_is_given_up(self, app, make_client, hook, key1, caplog):
        import time

        hook.routes["/jwks.json"] = Answer("hang")
        client_id, _ = make_client(auth_method="private_key_jwt",
                                   grant_types=["client_credentials"], redirect_uris=[],
                                   jwks_uri=hook.url("/jwks.json"))  # fmt: skip
        started = time.monotonic()
        refused(rp_with(app, client_id, key1))
        assert time.monotonic() - started < 2.5


# -- where the provider may connect ------------------------------------------------------


def test_production_refuses_loopback_and_private_addresses(app, settings, hook, key1):
    """Outside production http://127.0.0.1 works (the tests above); in production every
    address the host resolves to must be public."""
    from idp.oidc.client_keys import ClientKeys, ClientKeysUnavailable

    serve(hook, public_set(key1))
    production = replace(settings, env="production")
    with app.app_context():
        store = app.extensions["idp"].store
        with pytest.raises(ClientKeysUnavailable, match="plain http"):
            ClientKeys(store, production).fetch(hook.url("/jwks.json"))

        def resolver(answers):
            return lambda host, port, **kw: [(2, 1, 6, "", (a, port)) for a in answers]

        for answers, why in (
            (["127.0.0.1"], "loopback"),
            (["93.184.216.34", "10.0.0.7"], "private"),  # one bad address is enough
            (["169.254.169.254"], "link-local"),
            (["::ffff:192.168.1.1"], "private"),
            (["fe80::1"], "link-local"),
        ):
            keys = ClientKeys(store, production, resolver=resolver(answers))
            with pytest.raises(ClientKeysUnavailable, match=why):
                keys.fetch("https://keys.example.gov/jwks.json")
    assert fetches(hook) == 0


# -- registration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({"jwks_uri": "http://keys.example.gov/jwks"}, "https"),
        ({"jwks_uri": "https://keys.example.gov/jwks#k"}, "fragment"),
        ({"jwks_uri": "https://keys.example.gov/jwks", "jwks": {"keys": [{"kty": "RSA"}]}},
         "not both"),
        ({"jwks_uri": "https://keys.example.gov/jwks", "auth_method": "client_secret_basic"},
         "only by clients that authenticate with private_key_jwt"),
    ],
)  # fmt: skip
def test_jwks_uri_rules(app, metadata, message):
    from idp.oidc.clients import ClientValidationError, create_client

    metadata = {"auth_method": "private_key_jwt", **metadata}
    with app.app_context(), pytest.raises(ClientValidationError, match=message):
        create_client(name="RP", redirect_uris=[CB], **metadata)


def test_dynamic_registration_accepts_a_jwks_uri(app, client, hook, key1):
    from idp.oidc.registration import issue_token

    serve(hook, public_set(key1))
    with app.app_context():
        token, _ = issue_token(expires_in=600, uses=2)
    auth = {"Authorization": f"Bearer {token}"}
    resp = client.post("/connect/register", json={
        "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": hook.url("/jwks.json"),
    }, headers=auth)  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["jwks_uri"] == hook.url("/jwks.json") and "jwks" not in body
    assert rp_with(app, body["client_id"], key1).client_credentials().access_token
    both = client.post("/connect/register", json={
        "grant_types": ["client_credentials"], "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": hook.url("/jwks.json"), "jwks": public_set(key1),
    }, headers=auth)  # fmt: skip
    assert both.status_code == 400 and both.get_json()["error"] == "invalid_client_metadata"


def test_switching_from_keys_to_a_jwks_uri(app, make_client, hook, key1):
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.clients import update_client

    old = rsa("old")
    client_id, _ = make_client(auth_method="private_key_jwt", grant_types=["client_credentials"],
                               redirect_uris=[], jwks=public_set(old))  # fmt: skip
    serve(hook, public_set(key1))
    with app.app_context():
        row = db.session.execute(db.select(OAuthClient).filter_by(client_id=client_id)).scalar_one()
        update_client(row, jwks=None, jwks_uri=hook.url("/jwks.json"))
    assert rp_with(app, client_id, key1).client_credentials().access_token
    refused(rp_with(app, client_id, old))
