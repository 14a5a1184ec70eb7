"""``/admin/clients``: the back-channel logout URI, allowed origins (CORS), keys by URL
(``jwks_uri``) and PAR fields of the client form: stored, shown again, validated with
clear messages, audited."""

from __future__ import annotations

import re

import pytest

from tests.integration import test_admin_access as access
from tests.integration.test_admin_access import audit_events, signed_in
from tests.integration.test_admin_clients import NEW, _client, _create

# Fixtures shared with the other admin modules.
people = access.people
settings = access.settings

PROTOCOL = {
    "backchannel_logout_uri": "https://connexion.example.gov/backchannel-logout",
    "backchannel_logout_session_required": "on",
    "allowed_origins": "https://App.example.gov\nhttps://other.example.gov:8443",
    "require_par": "on",
}


def test_the_fields_are_stored_and_shown_again(app, people):
    b = signed_in(app, people["admin"])
    client_id, _ = _create(b)
    resp = b.post(f"/admin/clients/{client_id}", {**NEW, **PROTOCOL})
    assert resp.status_code == 302, resp.text
    c = _client(app, client_id)
    assert c.backchannel_logout_uri == PROTOCOL["backchannel_logout_uri"]
    assert c.backchannel_logout_session_required and c.require_par
    assert c.allowed_origins == ["https://app.example.gov", "https://other.example.gov:8443"]
    page = b.get(f"/admin/clients/{client_id}").text
    assert PROTOCOL["backchannel_logout_uri"] in page and "https://other.example.gov:8443" in page
    (event,) = audit_events(app, "client.updated")
    assert set(event.details["fields"]) >= {"backchannel_logout_uri", "allowed_origins",
                                            "require_par"}  # fmt: skip

    # Unchecked and emptied, they are off again.
    resp = b.post(f"/admin/clients/{client_id}", NEW)
    assert resp.status_code == 302
    c = _client(app, client_id)
    assert c.backchannel_logout_uri is None and c.allowed_origins == []
    assert not (c.backchannel_logout_session_required or c.require_par)


def test_a_private_key_jwt_client_with_its_keys_at_a_url(app, people):
    b = signed_in(app, people["admin"])
    resp = b.post("/admin/clients/new", {
        **NEW, "auth_method": "private_key_jwt", "grant_types": ["client_credentials"],
        "redirect_uris": "", "jwks_uri": "https://connexion.example.gov/jwks.json",
    })  # fmt: skip
    assert resp.status_code == 200, resp.text
    client_id = re.search(r'id="client-id">([^<]+)<', resp.text).group(1)
    c = _client(app, client_id)
    assert c.token_endpoint_auth_method == "private_key_jwt"
    assert c.jwks_uri == "https://connexion.example.gov/jwks.json"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"backchannel_logout_uri": "http://connexion.example.gov/bcl"}, "back-channel logout URI"),
        ({"allowed_origins": "*"}, "allowed origin"),
        ({"allowed_origins": "https://app.example.gov/path"}, "allowed origin"),
        ({"jwks_uri": "http://connexion.example.gov/jwks.json"}, "jwks_uri"),
    ],
)
def test_bad_values_get_a_clear_message_and_change_nothing(app, people, fields, message):
    b = signed_in(app, people["admin"])
    client_id, _ = _create(b)
    resp = b.post(f"/admin/clients/{client_id}", {**NEW, **fields})
    assert resp.status_code == 400 and message in resp.text
    c = _client(app, client_id)
    assert c.backchannel_logout_uri is None and c.allowed_origins == [] and c.jwks_uri is None
