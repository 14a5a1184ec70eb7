"""A sign-in with a passkey alone, seen by a relying party built on another library.

``oic`` (pyoidc) builds the authorization request, exchanges the code and verifies the
ID token against the provider's JWKS; the browser is ``requests`` with
:class:`tests.softauthn.SoftAuthenticator` answering the sign-in page's passkey request
(no email, no password). The ``acr`` and ``amr`` the relying party reads are what the
passkey earned: ``aal/2?phishing_resistant=true`` and ``hwk``/``swk``, ``user``,
``mfa`` (plus ``pin``/``fpt`` only where the authenticator reported them), never
``pwd``.

The provider is served over real HTTP on ``localhost`` (WebAuthn needs a domain name for
its RP ID, never an IP address), as in ``test_independent_rp``.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
import requests
from oic.oic.message import AccessTokenResponse, AuthorizationResponse, IdToken
from werkzeug.serving import make_server

from clients.mockrp.forms import parse_forms
from tests.conftest import make_settings
from tests.integration.test_independent_rp import RP_CB, SCOPE, oic_client
from tests.softauthn import ES256, SoftAuthenticator, b64u

EMAIL = "ada@example.com"
PR = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"


def _placeholder(environ, start_response):  # replaced by the provider once it is built
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready"]


@pytest.fixture
def http_server():
    server = make_server("127.0.0.1", 0, _placeholder)
    yield server
    server.server_close()


@pytest.fixture
def settings(tmp_path, keys_dir, http_server):
    """The issuer is the live server on ``localhost``, MFA required for everyone."""
    base = make_settings(tmp_path, keys_dir, mfa={"required": True, "enforce_from": ""})
    return replace(base, issuer=f"http://localhost:{http_server.server_port}")


@pytest.fixture
def issuer(app, http_server):
    http_server.app = app
    thread = threading.Thread(target=http_server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app.extensions["idp"].settings.issuer
    finally:
        http_server.shutdown()
        thread.join(timeout=5)


def _register_passkey(app, key: SoftAuthenticator) -> None:
    """Store *key* as the user's passkey (a discoverable credential with user
    verification), as its set-up would have."""
    from idp.extensions import db
    from idp.models import Factor, User
    from idp.models.base import utcnow

    handle = secrets.token_bytes(32)
    key.user_handle = handle
    with app.app_context():
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        user.webauthn_handle = b64u(handle)
        db.session.add(
            Factor(
                user_id=user.id,
                type="webauthn",
                label="Passkey",
                status="active",
                credential_id=b64u(key.credential_id),
                public_key=key.cose_key(),
                sign_count=0,
                transports=["internal"],
                device_type="multi_device" if key.backup_eligible else "single_device",
                activated_at=utcnow(),
                data={"alg": key.alg, "user_verified": True, "discoverable": True},
            )
        )
        db.session.commit()


def _passkey_front_channel(browser: requests.Session, url: str, key: SoftAuthenticator) -> str:
    """Act as the browser: at the sign-in page, ask for the passkey options and answer
    with *key*, then allow consent and skip the suggestions; return the redirect to the
    relying party (never requested)."""
    origin = urlsplit(url).netloc
    resp = browser.get(url, allow_redirects=False, timeout=10)
    used_passkey = False
    for _ in range(12):
        if resp.is_redirect:
            location = requests.compat.urljoin(resp.url, resp.headers["Location"])
            if location.startswith(RP_CB + "?"):
                return location
            assert urlsplit(location).netloc == origin, f"unexpected redirect to {location}"
            resp = browser.get(location, allow_redirects=False, timeout=10)
            continue
        assert resp.status_code == 200, f"HTTP {resp.status_code} at {resp.url}: {resp.text[:300]}"
        forms = parse_forms(resp.text, resp.url)
        passkey = next((f for f in forms if f.has("credential")), None)
        consent = next((f for f in forms if f.has("decision") and "/consent" in f.action), None)
        choice = next((f for f in forms if f.has("choice")), None)
        if passkey is not None and urlsplit(resp.url).path == "/signin":
            assert not used_passkey, "the sign-in page came back: the passkey was refused"
            used_passkey = True
            fields = {k: v for k, v in passkey.fields.items() if k in ("csrf_token", "txn")}
            options = browser.post(
                requests.compat.urljoin(resp.url, "/signin/passkey/options"),
                data=fields,
                timeout=10,
            )
            assert options.status_code == 200, options.text[:300]
            passkey.fill(credential=json.dumps(key.get(options.text)))
            form, data = passkey, passkey.submit_data()
        elif consent is not None:
            form, data = consent, consent.submit_data(("decision", "allow"))
        elif choice is not None:  # a suggestion (a backup method): not now
            form, data = choice, choice.submit_data(("choice", "skip"))
        else:
            raise AssertionError(f"unexpected page {resp.url}: {resp.text[:300]}")
        resp = browser.post(form.action, data=data, allow_redirects=False, timeout=10)
    raise AssertionError("the provider never redirected back to the client")


@pytest.mark.parametrize(
    ("backup_eligible", "uvm", "amr"),
    [
        pytest.param(False, (), ["hwk", "mfa", "user"], id="security-key"),
        pytest.param(True, (0x00000002,), ["fpt", "mfa", "swk", "user"], id="synced-fingerprint"),
    ],
)
def test_oic_reads_the_assurance_of_a_passkey_sign_in(
    app, issuer, make_user, make_client, backup_eligible, uvm, amr
):
    make_user()
    client_id, secret = make_client()
    key = SoftAuthenticator(ES256, backup_eligible=backup_eligible, origin=issuer, uvm=uvm)
    _register_passkey(app, key)
    rp = oic_client(issuer, client_id, secret)
    assert PR in rp.provider_info["acr_values_supported"]

    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    pkce, verifier = rp.add_code_challenge()
    url, _body, _headers, request = rp.authorization_request_info(
        request_args={
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": RP_CB,
            "state": state,
            "nonce": nonce,
            "acr_values": PR,
            **pkce,
        }
    )
    location = _passkey_front_channel(requests.Session(), url, key)
    aresp = rp.parse_response(AuthorizationResponse, info=location, sformat="urlencoded")
    assert isinstance(aresp, AuthorizationResponse), aresp.to_dict()
    tokens = rp.do_access_token_request(
        state=state,
        request_args={"code": aresp["code"], "redirect_uri": RP_CB, "code_verifier": verifier},
        authn_method="client_secret_basic",
    )
    assert isinstance(tokens, AccessTokenResponse), tokens.to_dict()

    # oic verified the signature against the JWKS, iss, aud, exp and the nonce.
    id_token = tokens["id_token"]
    assert isinstance(id_token, IdToken)
    rp.verify_id_token(id_token, request)
    assert id_token["nonce"] == nonce
    assert id_token["acr"] == PR
    assert sorted(id_token["amr"]) == amr
    assert "pwd" not in id_token["amr"]
    assert key.sign_count == 1
