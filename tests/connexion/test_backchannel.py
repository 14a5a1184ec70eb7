"""Connexion's back-channel logout URI (OpenID Connect Back-Channel Logout 1.0, 2.5-2.8):
the checks of a logout token, the refusal of replays, and the end of the sessions it names.

Logout tokens are signed here with the stand-in provider's key (``conftest``); the real
provider sending them is in ``test_backchannel_flow.py`` and in the browser test."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from joserfc import jws

from tests.connexion.conftest import CLIENT_ID, ISSUER

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def logout(signing_key):
    """A logout token as the provider issues it; keyword arguments override claims
    (``None`` removes one); ``header=`` and ``key=`` override those."""

    def factory(*, header: dict | None = None, key=None, **overrides) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": CLIENT_ID, "iat": now, "exp": now + 120,
                  "jti": uuid.uuid4().hex, "events": {EVENT: {}}, "sub": "user-123",
                  "sid": "sid-1"}  # fmt: skip
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        signer = key or signing_key
        head = {"alg": "RS256", "typ": "logout+jwt", "kid": signer.kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        # jws, not jwt: joserfc's jwt.encode would add "typ": "JWT" to a header without one.
        return jws.serialize_compact(head, json.dumps(claims), signer, algorithms=[head["alg"]])

    return factory


def signed_in(cx, *, sid: str | None = "sid-1", sub: str = "user-123", at: int | None = None):
    """A Connexion session as /callback leaves it (ID token issued at *at*)."""
    with cx.session_transaction() as s:
        s["user"] = {"iss": ISSUER, "sub": sub, "acr": "urn:idp:acr:mfa", "amr": ["pwd"],
                     "auth_time": int(time.time()) - 60, **({"sid": sid} if sid else {})}  # fmt: skip
        s["access_token"] = "at"
        s["id_token"] = "the.id.token"
        s["signed_in_at"] = int(time.time()) - 5 if at is None else at


def still_signed_in(cx) -> bool:
    resp = cx.get("/dashboard")
    return resp.status_code == 200


def post(cx, token: str | None):
    return cx.post("/backchannel-logout", data={} if token is None else {"logout_token": token})


def test_a_valid_logout_token_ends_the_session_of_its_sid(cx, logout, provider):
    signed_in(cx)
    assert still_signed_in(cx)
    resp = post(cx, logout())
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    assert not still_signed_in(cx)
    with cx.session_transaction() as s:
        assert "user" not in s and "access_token" not in s


def test_another_sid_of_the_same_user_stays(cx, logout, provider):
    signed_in(cx, sid="sid-2")
    assert post(cx, logout(sid="sid-1")).status_code == 200
    assert still_signed_in(cx)  # a token with a sid ends only that session (2.7)


def test_a_token_with_only_a_sub_ends_every_session_of_that_user(cx, logout, provider):
    signed_in(cx, sid="sid-2")
    assert post(cx, logout(sid=None)).status_code == 200
    assert not still_signed_in(cx)


def test_a_later_sign_in_with_the_same_sid_is_not_ended(cx, logout, provider):
    assert post(cx, logout()).status_code == 200
    signed_in(cx, at=int(time.time()) + 5)  # a newer ID token for the same sid
    assert still_signed_in(cx)


def test_a_replayed_logout_token_is_refused(cx, logout, provider):
    token = logout()
    assert post(cx, token).status_code == 200
    resp = post(cx, token)
    assert resp.status_code == 400
    assert resp.get_json() == {
        "error": "invalid_request",
        "error_description": "This logout token was already used.",
    }


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"iss": "https://other.example"}, "another issuer"),
        ({"aud": "someone-else"}, "not for Connexion"),
        ({"aud": ["someone-else", "another"]}, "not for Connexion"),
        ({"iat": None}, "iat"),
        ({"iat": int(time.time()) + 3600}, "iat"),
        ({"exp": None}, "expired"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"events": None}, "event"),
        ({"events": {"http://schemas.openid.net/event/other": {}}}, "event"),
        ({"events": {EVENT: "yes"}}, "event"),
        ({"nonce": "n-0S6"}, "nonce"),
        ({"sid": None, "sub": None}, "neither a sid nor a sub"),
        ({"jti": None}, "jti"),
    ],
)
def test_logout_tokens_that_are_refused(cx, logout, provider, overrides, words):
    signed_in(cx)
    resp = post(cx, logout(**overrides))
    assert resp.status_code == 400, overrides
    body = resp.get_json()
    assert body["error"] == "invalid_request" and words in body["error_description"]
    assert still_signed_in(cx)


def test_tokens_that_are_not_logout_tokens_are_refused(cx, logout, provider, other_key, mint):
    signed_in(cx)
    for token, words in (
        (logout(header={"typ": "JWT"}), "not a logout token"),
        (logout(header={"typ": "at+jwt"}), "not a logout token"),
        (mint(), "not a logout token"),  # an access token of the provider
        (logout(key=other_key), "signature"),
        (logout(header={"kid": "unknown"}), "unknown key"),
        ("not-a-jwt", "not a signed JWT"),
        ("a.b.c", "not a signed JWT"),
    ):
        resp = post(cx, token)
        assert resp.status_code == 400 and words in resp.get_json()["error_description"], token
    assert post(cx, None).status_code == 400
    assert still_signed_in(cx)


def test_a_logout_token_without_typ_is_accepted(cx, logout, provider):
    """Section 2.4 asks providers to type logout tokens; older ones do not."""
    signed_in(cx)
    assert post(cx, logout(header={"typ": None})).status_code == 200
    assert not still_signed_in(cx)


def test_unreachable_provider_keys_are_a_failed_logout(cx, logout, provider):
    signed_in(cx)
    provider.down = True
    resp = post(cx, logout())
    assert resp.status_code == 400  # 2.8: the provider tries again
    assert "keys" in resp.get_json()["error_description"]
