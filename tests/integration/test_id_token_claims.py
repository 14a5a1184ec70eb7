"""Which user claims travel in the ID token: none of the profile, email and phone claims
by default (they come from the userinfo endpoint, OIDC Core 5.4), those asked for by
name in the ``claims`` parameter's ``id_token`` member when their scope was granted
(OIDC Core 5.5), on both backends."""

from __future__ import annotations

import pytest

from clients.mockrp import MockRP
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD, make_settings

RP_CB = "https://rp.example.com/cb"


@pytest.fixture
def settings(tmp_path, keys_dir):
    # The passkey offer after a password sign-in is not part of these journeys.
    return make_settings(tmp_path, keys_dir, webauthn={"passkey_offer_days": 0})


@pytest.fixture
def rp(app, client, make_client, make_user):
    make_user(phone_number="+14155550100", phone_number_verified=True)
    client_id, secret = make_client(scope="openid profile email phone")
    return MockRP("http://localhost", client_id, RP_CB, client_secret=secret,
                  transport=FlaskTransport(client))  # fmt: skip


def _id_token(rp: MockRP, scope: str, **extra) -> tuple[dict, dict]:
    result = rp.sign_in("ada@example.com", PASSWORD, scope=scope, **extra)
    tokens = rp.exchange_code(result)
    claims = rp.verify_id_token(tokens.id_token, nonce=result.nonce,
                                access_token=tokens.access_token)  # fmt: skip
    return claims, tokens


def test_by_default_the_profile_and_email_come_from_userinfo_only(rp):
    claims, tokens = _id_token(rp, "openid profile email phone")
    for name in ("name", "email", "email_verified", "phone_number", "updated_at"):
        assert name not in claims, name
    info = rp.userinfo(tokens.access_token)
    assert info["sub"] == claims["sub"]
    assert (info["name"], info["email"], info["phone_number"]) == (
        "Ada Lovelace", "ada@example.com", "+14155550100")  # fmt: skip


def test_the_claims_parameter_puts_the_named_claims_in_the_id_token(rp):
    asked = {"id_token": {"email": {"essential": True}, "name": None, "nickname": None,
                          "phone_number": None}}  # fmt: skip
    claims, tokens = _id_token(rp, "openid profile email", claims=asked)
    assert claims["email"] == "ada@example.com" and claims["name"] == "Ada Lovelace"
    # Only what was named: not email_verified, updated_at or given_name.
    assert not {"email_verified", "updated_at", "given_name"} & set(claims)
    # phone was not granted (not in the scope asked for): no phone number.
    assert "phone_number" not in claims and "nickname" not in claims
    assert "phone_number" not in rp.userinfo(tokens.access_token)


def test_a_claim_whose_scope_was_not_granted_stays_out(rp):
    claims, _ = _id_token(rp, "openid", claims={"id_token": {"email": None, "name": None}})
    assert "email" not in claims and "name" not in claims


def test_the_userinfo_member_changes_nothing_in_the_id_token(rp):
    claims, _ = _id_token(rp, "openid email", claims={"userinfo": {"email": None}})
    assert "email" not in claims


def test_a_claims_parameter_that_is_not_an_object_is_refused(rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope="openid email",
                        claims='["email"]')  # fmt: skip
    assert (result.error, result.code) == ("invalid_request", None)
    assert "JSON object" in result.error_description
