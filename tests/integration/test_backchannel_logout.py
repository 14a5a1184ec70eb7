"""OpenID Connect Back-Channel Logout 1.0: logout tokens to the applications that received
tokens in a browser session, whenever and however that session ends.

The applications' back-channel logout URIs are a real HTTP server on 127.0.0.1
(:class:`tests.support.webhook.Webhook`), and every logout token it receives is
verified by the ``oic`` library (pyoidc's ``BackChannelLogoutRequest``, section 2.6:
signature against the provider's JWKS, iss, aud, iat, events, sid/sub, no nonce) and by
jwcrypto (the ``typ`` header), independently of the provider's own code.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest
from jwcrypto import jwk as jwc_jwk
from jwcrypto import jws as jwc_jws
from oic.oic.message import BackChannelLogoutRequest
from oic.utils.keyio import KeyBundle, KeyJar

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from clients.mockrp.transport import FlaskTransport
from idp.oidc.backchannel import BACKCHANNEL_EVENT
from tests.conftest import PASSWORD
from tests.support.webhook import Answer, Webhook

ISS = "http://localhost"
CB = "https://rp.example.com/cb"
EMAIL = "ada@example.com"


@pytest.fixture
def hook():
    with Webhook() as server:
        yield server


@pytest.fixture
def svc(app):
    services = app.extensions["idp"]
    yield services
    services.backchannel.dispatcher.stop()


@pytest.fixture
def user(make_user):
    return make_user(email=EMAIL)


def new_rp(app, client_id: str, secret: str | None) -> MockRP:
    return MockRP(ISS, client_id, CB, client_secret=secret,
                  transport=FlaskTransport(app.test_client()))  # fmt: skip


@pytest.fixture
def portal(app, make_client, hook, user):
    """A client with a back-channel logout URI, first party (no consent page)."""
    return make_client(first_party=True, backchannel_logout_uri=hook.url("/bcl/portal"))


def sign_in(app, client) -> tuple[MockRP, object]:
    rp = new_rp(app, *client)
    return rp, rp.exchange_code(rp.sign_in(EMAIL, PASSWORD))


def claims_of(jwt: str) -> dict:
    import base64

    body = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def verified_by_oic(app, body: bytes, client_id: str) -> dict:
    """The logout token of a back-channel logout request, verified by pyoidc."""
    jwks = app.test_client().get("/jwks").get_json()
    keyjar = KeyJar()
    keyjar.add_kb(ISS, KeyBundle(jwks["keys"]))
    request = BackChannelLogoutRequest().from_urlencoded(body.decode())
    assert request.verify(keyjar=keyjar, iss=ISS, aud=client_id)
    return request["logout_token"].to_dict()


def header_by_jwcrypto(app, token: str) -> dict:
    jwks = jwc_jwk.JWKSet.from_json(app.test_client().get("/jwks").get_data(as_text=True))
    signed = jwc_jws.JWS()
    signed.deserialize(token)
    signed.verify(jwks.get_key(signed.jose_header["kid"]))
    return signed.jose_header


def events(app, name: str) -> list[tuple[str, str | None, dict]]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(
            db.select(AuditEvent).filter_by(event=name).order_by(AuditEvent.id)
        ).scalars()
        return [(r.outcome, r.client_id, dict(r.details or {})) for r in rows]


def delivered(svc) -> None:
    assert svc.backchannel.dispatcher.drain(15), "deliveries still pending"


def session_key(app, rp: MockRP) -> str:
    from idp.security.crypto import hash_token

    svc = app.extensions["idp"]
    return hash_token(rp.transport.client.get_cookie(svc.settings.session.cookie_name).value)


# -- discovery, registration ------------------------------------------------------------


def test_discovery_advertises_back_channel_logout_with_sid(client):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["backchannel_logout_supported"] is True
    assert meta["backchannel_logout_session_supported"] is True


@pytest.mark.parametrize(
    ("uri", "accepted"),
    [
        ("https://rp.example.gov/logout/backchannel", True),
        ("https://rp.example.gov/bcl?tenant=7", True),  # section 2.2: a query is allowed
        ("http://localhost:8080/bcl", True),
        ("http://rp.example.gov/bcl", False),
        ("https://rp.example.gov/bcl#frag", False),
        ("rp.example.gov/bcl", False),
        ("https://*.example.gov/bcl", False),
    ],
)
def test_the_logout_uri_follows_the_redirect_uri_rules(app, uri, accepted):
    from idp.oidc.clients import ClientValidationError, create_client

    with app.app_context():
        if accepted:
            c, _ = create_client(name="RP", redirect_uris=[CB], backchannel_logout_uri=uri)
            assert c.backchannel_logout_uri == uri
        else:
            with pytest.raises(ClientValidationError, match="back-channel logout URI"):
                create_client(name="RP", redirect_uris=[CB], backchannel_logout_uri=uri)


def test_dynamic_registration_metadata(app, client):
    """Back-Channel Logout 1.0 2.2 metadata, and this provider's ``allowed_origins``
    extension, through RFC 7591 registration: stored, answered, and bad values refused
    with ``invalid_client_metadata``."""
    from idp.oidc.registration import issue_token

    def auth() -> dict[str, str]:  # an initial access token is good for one registration
        with app.app_context():
            token, _ = issue_token(expires_in=600)
        return {"Authorization": f"Bearer {token}"}

    resp = client.post("/connect/register", headers=auth(), json={
        "redirect_uris": [CB], "backchannel_logout_uri": "https://rp.example.gov/bcl",
        "backchannel_logout_session_required": True,
        "allowed_origins": ["https://App.example.gov"],
    })  # fmt: skip
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    assert body["backchannel_logout_uri"] == "https://rp.example.gov/bcl"
    assert body["backchannel_logout_session_required"] is True
    assert body["allowed_origins"] == ["https://app.example.gov"]
    for bad in ({"backchannel_logout_uri": "http://rp.example.gov/bcl"},
                {"backchannel_logout_uri": ["https://rp.example.gov/bcl"]},
                {"backchannel_logout_session_required": "yes"},
                {"allowed_origins": ["*"]}, {"allowed_origins": "https://app.example.gov"}):  # fmt: skip
        resp = client.post("/connect/register", headers=auth(), json={"redirect_uris": [CB], **bad})
        assert resp.status_code == 400, bad
        assert resp.get_json()["error"] == "invalid_client_metadata", bad


# -- the logout token -------------------------------------------------------------------


def test_rp_initiated_logout_sends_a_logout_token_that_oic_accepts(app, svc, hook, portal):
    rp, tokens = sign_in(app, portal)
    id_claims = claims_of(tokens.id_token)
    started = time.monotonic()
    resp = rp.logout(id_token_hint=tokens.id_token)
    assert resp.status == 200 and time.monotonic() - started < 2
    delivered(svc)

    [seen] = hook.requests
    assert seen.method == "POST" and seen.path == "/bcl/portal"
    assert seen.headers["Content-Type"] == "application/x-www-form-urlencoded"
    token = seen.form["logout_token"]
    claims = verified_by_oic(app, seen.body, portal[0])
    assert claims["iss"] == ISS and claims["aud"] in (portal[0], [portal[0]])
    assert claims["sid"] == id_claims["sid"] and claims["sub"] == id_claims["sub"]
    events_claim = claims["events"]  # pyoidc keeps this JSON member serialised
    if isinstance(events_claim, str):
        events_claim = json.loads(events_claim)
    assert events_claim == {BACKCHANNEL_EVENT: {}}
    assert claims_of(seen.form["logout_token"])["events"] == {BACKCHANNEL_EVENT: {}}
    assert "nonce" not in claims
    assert isinstance(claims["jti"], str) and len(claims["jti"]) >= 16
    raw = claims_of(token)
    assert raw["exp"] - raw["iat"] == svc.settings.backchannel_logout.token_ttl
    assert abs(raw["iat"] - time.time()) < 30
    header = header_by_jwcrypto(app, token)
    assert header["typ"] == "logout+jwt" and header["alg"] == "RS256" and header["kid"]

    [(outcome, client_id, details)] = events(app, "backchannel_logout.delivered")
    assert (outcome, client_id) == ("success", portal[0])
    assert details["attempts"] == 1 and details["reason"] == "ended"
    assert details["sid"] == id_claims["sid"]


def test_only_clients_of_that_session_hear_of_it(app, svc, hook, make_client, user):
    a = make_client(first_party=True, backchannel_logout_uri=hook.url("/a"))
    b = make_client(first_party=True, backchannel_logout_uri=hook.url("/b"))
    silent = make_client(first_party=True)  # no back-channel logout URI
    rp_a, tokens_a = sign_in(app, a)  # browser 1: client A and the silent one
    sid_1 = claims_of(tokens_a.id_token)["sid"]
    rp_silent = new_rp(app, *silent)
    rp_silent.transport = rp_a.transport  # the same browser
    rp_silent.exchange_code(rp_silent.sign_in(EMAIL, PASSWORD))
    rp_b, tokens_b = sign_in(app, b)  # browser 2: client B
    assert claims_of(tokens_b.id_token)["sid"] != sid_1

    rp_a.logout(id_token_hint=tokens_a.id_token)
    delivered(svc)
    assert [r.path for r in hook.requests] == ["/a"]
    assert claims_of(hook.requests[0].form["logout_token"])["sid"] == sid_1
    assert not rp_b.start(prompt="none").location.count("error=")  # browser 2 still in


def test_two_clients_of_one_session_each_get_their_own_token(app, svc, hook, make_client, user):
    a = make_client(first_party=True, backchannel_logout_uri=hook.url("/a"))
    b = make_client(first_party=True, backchannel_logout_uri=hook.url("/b?tenant=1"))
    rp_a, tokens = sign_in(app, a)
    rp_b = new_rp(app, *b)
    rp_b.transport = rp_a.transport
    rp_b.exchange_code(rp_b.sign_in(EMAIL, PASSWORD))
    rp_a.logout(id_token_hint=tokens.id_token)
    delivered(svc)
    by_path = {r.path: claims_of(r.form["logout_token"]) for r in hook.requests}
    assert set(by_path) == {"/a", "/b?tenant=1"}
    assert by_path["/a"]["aud"] == a[0] and by_path["/b?tenant=1"]["aud"] == b[0]
    assert by_path["/a"]["jti"] != by_path["/b?tenant=1"]["jti"]


def test_a_session_ended_twice_is_announced_once(app, svc, hook, portal):
    rp, tokens = sign_in(app, portal)
    sid = claims_of(tokens.id_token)["sid"]
    with app.app_context():
        assert svc.backchannel.clients_of(sid) == {portal[0]}
        assert svc.backchannel.sessions_ended([sid]) == 1
        assert svc.backchannel.sessions_ended([sid]) == 0  # taken already
    delivered(svc)
    assert len(hook.requests) == 1


# -- every way a session ends ---------------------------------------------------------------


def test_the_sign_out_button_on_the_providers_pages(app, svc, hook, portal):
    rp, _ = sign_in(app, portal)
    page = rp.transport.request("GET", f"{ISS}/")
    [form] = [f for f in parse_forms(page.text, page.url) if f.action.endswith("/logout")]
    resp = rp.submit_form(form, button=("decision", "logout"))
    assert resp.status == 200
    delivered(svc)
    assert len(hook.requests) == 1


def test_a_help_desk_revocation(app, svc, hook, portal):
    from idp.admin import service
    from idp.extensions import db
    from idp.models import User

    sign_in(app, portal)
    sign_in(app, portal)  # two browsers
    with app.test_request_context():
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        service.revoke_sessions(user, actor="user:0", reason="stolen laptop")
    delivered(svc)
    sids = {claims_of(r.form["logout_token"])["sid"] for r in hook.requests}
    assert len(sids) == 2


def test_a_password_reset(app, svc, hook, portal):
    from tests.integration.test_password_reset import forgot, reset_link, set_password

    sign_in(app, portal)
    browser = app.test_client()
    forgot(browser)
    assert set_password(browser, reset_link(app)).status_code == 200
    delivered(svc)
    assert len(hook.requests) == 1


def test_removing_a_factor_the_session_used(app, svc, hook, portal):
    from idp.extensions import db
    from idp.models import Factor, User
    from tests.integration.account_helpers import add_totp

    rp, tokens = sign_in(app, portal)
    add_totp(app, EMAIL)
    key = session_key(app, rp)
    with app.test_request_context():
        user = db.session.execute(db.select(User).filter_by(email=EMAIL)).scalar_one()
        factor = db.session.execute(db.select(Factor).filter_by(user_id=user.id)).scalar_one()
        raw = svc.store.get(f"session:{key}")
        data = json.loads(raw)
        data["methods"]["totp"] = int(time.time())
        data["method_factors"]["totp"] = [factor.id]  # this session passed the factor
        svc.store.set(f"session:{key}", json.dumps(data).encode(), 600)
        app.extensions["idp.mfa"].remove(user, factor, actor="user")
    delivered(svc)
    [seen] = hook.requests
    assert claims_of(seen.form["logout_token"])["sid"] == claims_of(tokens.id_token)["sid"]


def test_an_expired_session_is_found_by_the_sweep(app, svc, hook, portal):
    rp, tokens = sign_in(app, portal)
    key = session_key(app, rp)
    sid = claims_of(tokens.id_token)["sid"]
    with app.app_context():
        assert svc.backchannel.sweep() == 0  # alive: nothing to say
        # The idle timeout passes: the store forgets the session by itself.
        svc.store.expire(f"session:{key}", 1)
        time.sleep(1.2)
        assert svc.backchannel.sweep() == 0  # one sweep per interval across processes
        svc.store.delete("bcl_sweep")
        assert svc.backchannel.sweep() == 1
    delivered(svc)
    [seen] = hook.requests
    assert claims_of(seen.form["logout_token"])["sid"] == sid
    [(_, _, details)] = events(app, "backchannel_logout.delivered")
    assert details["reason"] == "expired"
    with app.app_context():
        svc.store.delete("bcl_sweep")
        assert svc.backchannel.sweep() == 0  # announced once


def test_a_session_that_rotates_is_not_swept(app, svc, hook, portal):
    """Every sign-in step replaces the session record but keeps its sid; at no moment
    does the sid look ended to a sweep."""
    rp, _ = sign_in(app, portal)
    with app.test_request_context():
        session = svc.sessions.load(
            rp.transport.client.get_cookie(svc.settings.session.cookie_name).value
        )
        _, rotated = svc.sessions.establish(session.user_id, "pwd", previous=session)
        assert rotated.sid == session.sid and svc.sessions.is_alive(session.sid)
        svc.store.delete("bcl_sweep")
        assert svc.backchannel.sweep() == 0
    assert hook.requests == []


def test_the_serving_worker_sweeps_by_itself(app, svc, hook, portal):
    rp, _ = sign_in(app, portal)
    with app.app_context():
        svc.store.delete(f"session:{session_key(app, rp)}")  # expired
    svc.backchannel.dispatcher.tick_interval = 0.2
    svc.backchannel.start()
    hook.wait_for(1, timeout=10)


# -- delivery -----------------------------------------------------------------------------


@pytest.fixture
def quick(svc):
    """Retries after 0.05, 0.1, 0.2 s instead of 2, 4, 8."""
    svc.backchannel.dispatcher.backoff = 0.05
    return svc


def test_failed_attempts_are_retried_with_a_fresh_token(app, quick, hook, portal):
    hook.answer(Answer(500, b"down"), Answer(503))
    rp, tokens = sign_in(app, portal)
    rp.logout(id_token_hint=tokens.id_token)
    delivered(quick)
    assert [r.path for r in hook.requests] == ["/bcl/portal"] * 3
    jtis = {claims_of(r.form["logout_token"])["jti"] for r in hook.requests}
    assert len(jtis) == 3
    [(outcome, _, details)] = events(app, "backchannel_logout.delivered")
    assert outcome == "success" and details["attempts"] == 3
    assert events(app, "backchannel_logout.failed") == []


def test_an_application_that_keeps_failing_is_audited_once(app, quick, hook, portal):
    hook.default = Answer(500, b"x" * 100_000)  # a large answer is not read past 4 KiB
    rp, tokens = sign_in(app, portal)
    rp.logout(id_token_hint=tokens.id_token)
    delivered(quick)
    retries = quick.settings.backchannel_logout.retries
    assert len(hook.requests) == retries + 1
    [(outcome, client_id, details)] = events(app, "backchannel_logout.failed")
    assert (outcome, client_id) == ("failure", portal[0])
    assert details["attempts"] == retries + 1
    assert details["error"].startswith("answered HTTP 500")
    assert events(app, "backchannel_logout.delivered") == []


def test_a_204_counts_as_success(app, svc, hook, portal):
    hook.default = Answer(204)
    rp, tokens = sign_in(app, portal)
    rp.logout(id_token_hint=tokens.id_token)
    delivered(svc)
    assert events(app, "backchannel_logout.delivered")


def test_redirects_are_not_followed(app, quick, hook, portal):
    hook.default = Answer(302, headers={"Location": hook.url("/elsewhere")})
    rp, tokens = sign_in(app, portal)
    rp.logout(id_token_hint=tokens.id_token)
    delivered(quick)
    assert {r.path for r in hook.requests} == {"/bcl/portal"}
    [(_, _, details)] = events(app, "backchannel_logout.failed")
    assert "HTTP 302" in details["error"]


class TestHangingApplication:
    @pytest.fixture
    def settings(self, settings):
        """One attempt of at most one second."""
        return replace(
            settings,
            backchannel_logout=replace(settings.backchannel_logout, timeout=1, retries=0),
        )

    def test_neither_sign_out_nor_the_worker_waits_for_it(self, app, svc, hook, portal):
        hook.default = Answer("hang")
        rp, tokens = sign_in(app, portal)
        started = time.monotonic()
        resp = rp.logout(id_token_hint=tokens.id_token)
        assert resp.status == 200
        assert time.monotonic() - started < 1.0  # the sign-out does not wait
        delivered(svc)
        assert time.monotonic() - started < 3.5  # one attempt, cut at its timeout
        [(_, _, details)] = events(app, "backchannel_logout.failed")
        assert "timed out" in details["error"].lower() or "took too long" in details["error"]


def test_a_full_queue_drops_the_token_and_says_so(app, svc, hook, portal):
    svc.backchannel.dispatcher.capacity = 0
    rp, tokens = sign_in(app, portal)
    resp = rp.logout(id_token_hint=tokens.id_token)
    assert resp.status == 200  # the user is signed out all the same
    [(outcome, client_id, details)] = events(app, "backchannel_logout.failed")
    assert (outcome, client_id, details["error"]) == ("failure", portal[0], "queue_full")
    assert hook.requests == []


def test_a_client_that_dropped_its_uri_gets_nothing(app, svc, hook, portal):
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.clients import update_client

    rp, tokens = sign_in(app, portal)
    with app.app_context():
        row = db.session.execute(db.select(OAuthClient).filter_by(client_id=portal[0])).scalar_one()
        update_client(row, backchannel_logout_uri=None)
    rp.logout(id_token_hint=tokens.id_token)
    delivered(svc)
    assert hook.requests == []


def test_a_private_address_is_refused_in_production_policy(app, quick, hook, portal):
    """Outside production loopback is allowed (these tests); the policy of production
    refuses it, and the failure is audited like any other."""
    svc = quick
    svc.backchannel.policy = replace(svc.backchannel.policy, allow_loopback=False)
    rp, tokens = sign_in(app, portal)
    rp.logout(id_token_hint=tokens.id_token)
    delivered(svc)
    assert hook.requests == []
    [(_, _, details)] = events(app, "backchannel_logout.failed")
    assert "plain http is allowed only to localhost" in details["error"]
