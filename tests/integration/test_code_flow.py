"""The authorization code flow end to end through the mock relying party."""

from __future__ import annotations

import pytest

from clients.mockrp import MockRP
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD

RP_CB = "https://rp.example.com/cb"


@pytest.fixture
def rp(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client()
    return MockRP(
        "http://localhost",
        client_id,
        RP_CB,
        client_secret=secret,
        transport=FlaskTransport(client),
    )


def test_sign_in_tokens_userinfo_refresh_revoke(rp):
    result = rp.sign_in("ada@example.com", PASSWORD, scope="openid profile email offline_access")
    assert result.error is None and result.code
    assert result.iss == "http://localhost"
    tokens = rp.exchange_code(result)
    claims = rp.verify_id_token(
        tokens.id_token, nonce=result.nonce, access_token=tokens.access_token
    )
    assert claims["acr"] == "http://idmanagement.gov/ns/assurance/aal/1"
    assert claims["amr"] == ["pwd"]
    assert isinstance(claims["auth_time"], int) and claims["sid"]
    at = rp.verify_access_token(tokens.access_token)
    assert at["client_id"] == rp.client_id and at["sub"] == claims["sub"]
    info = rp.userinfo(tokens.access_token)
    assert info == {
        "sub": claims["sub"],
        "email": "ada@example.com",
        "email_verified": True,
        "name": "Ada Lovelace",
        "updated_at": info["updated_at"],
    }
    refreshed = rp.refresh(tokens.refresh_token)
    assert refreshed.refresh_token != tokens.refresh_token
    again = rp.verify_id_token(refreshed.id_token, nonce=None, access_token=refreshed.access_token)
    assert again["auth_time"] == claims["auth_time"] and again["sub"] == claims["sub"]
    assert rp.introspect(refreshed.access_token)["active"] is True
    assert rp.revoke(refreshed.access_token) == 200
    assert rp.introspect(refreshed.access_token) == {"active": False}


def test_a_sign_in_transaction_yields_one_code(app, client, make_client, make_user):
    """The password step takes the authorization request on in its own response (no
    resume round trip); resuming or submitting the same transaction again (two tabs, a
    double submit) issues no second code."""
    from clients.mockrp.forms import parse_forms
    from idp.extensions import db
    from idp.models import AuthorizationCode

    make_user()
    client_id, secret = make_client(first_party=True)
    rp = MockRP("http://localhost", client_id, RP_CB, client_secret=secret,
                transport=FlaskTransport(client))  # fmt: skip
    page = rp.follow(rp.start())
    form = next(f for f in parse_forms(page.text, page.url) if "password" in f.fields)
    form.fill(email="ada@example.com", password=PASSWORD)
    first = rp.submit_form(form)
    assert first.status == 302 and first.location.startswith(RP_CB) and "code=" in first.location
    txn = form.fields["txn"]
    second = rp.transport.request("GET", f"http://localhost/authorize/resume?txn={txn}")
    assert second.status in (400, 409) and "code=" not in (second.location or "")
    # The same form submitted again: the transaction is spent, so the password only
    # signs this browser in again (to the provider's home page), with no code.
    third = rp.submit_form(form)
    assert "code=" not in (third.location or "") and not (third.location or "").startswith(RP_CB)
    with app.app_context():
        assert db.session.execute(db.select(db.func.count(AuthorizationCode.id))).scalar() == 1
