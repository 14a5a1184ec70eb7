"""``/admin/clients``: list, create, edit, rotate the secret (shown once), disable,
delete; redirect-URI validation with clear messages; every action audited with the
administrator's id."""

from __future__ import annotations

import base64
import re

import pytest

from idp.extensions import db
from idp.models import OAuthClient
from tests.integration import test_admin_access as access
from tests.integration.test_admin_access import audit_events, signed_in

# Fixtures shared with the other admin modules.
people = access.people
settings = access.settings

NEW = {
    "name": "Connexion",
    "redirect_uris": "https://connexion.example.gov/callback\nhttp://127.0.0.1:8000/cb",
    "post_logout_redirect_uris": "https://connexion.example.gov/",
    "grant_types": ["authorization_code", "refresh_token"],
    "auth_method": "client_secret_basic",
    "scope": ["openid", "email"],
    "require_mfa": "on",
    "default_acr": "http://idmanagement.gov/ns/assurance/aal/2",
}


def _client(app, client_id: str) -> OAuthClient:
    with app.app_context():
        c = db.session.execute(db.select(OAuthClient).filter_by(client_id=client_id)).scalar_one()
        db.session.expunge(c)
        return c


def _create(b) -> tuple[str, str]:
    resp = b.post("/admin/clients/new", NEW)
    assert resp.status_code == 200, resp.text
    client_id = re.search(r'id="client-id">([^<]+)<', resp.text).group(1)
    secret = re.search(r'id="client-secret">([^<]+)<', resp.text).group(1)
    return client_id, secret


def _token(http, client_id: str, secret: str):
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return http.post("/token", data={"grant_type": "client_credentials"},
                     headers={"Authorization": f"Basic {basic}"})  # fmt: skip


def test_create_shows_the_secret_once(app, people):
    b = signed_in(app, people["admin"])
    client_id, secret = _create(b)
    c = _client(app, client_id)
    assert c.name == "Connexion"
    assert c.redirect_uris == ["https://connexion.example.gov/callback", "http://127.0.0.1:8000/cb"]
    assert c.scope == "openid email" and c.require_mfa and not c.first_party
    assert c.default_acr == "http://idmanagement.gov/ns/assurance/aal/2"
    assert c.check_client_secret(secret) and c.client_secret_hash != secret
    page = b.get(f"/admin/clients/{client_id}")
    assert page.status_code == 200 and secret not in page.text
    assert "Connexion" in b.get("/admin/clients").text
    (event,) = audit_events(app, "client.created")
    assert event.client_id == client_id and event.details["actor"] == f"user:{people['admin']}"


@pytest.mark.parametrize("uris,message", [
    ("http://rp.example.com/cb", "must use https"),
    ("https://rp.example.com/cb#frag", "must not contain a fragment"),
    ("https://*.example.com/cb", "has a wildcard"),
    ("rp.example.com/cb", "must be a full address that starts with https://"),
    ("", "Enter at least one redirect URI"),
])  # fmt: skip
def test_invalid_redirect_uris_get_a_clear_message(app, people, uris, message):
    b = signed_in(app, people["admin"])
    resp = b.post("/admin/clients/new", {**NEW, "redirect_uris": uris})
    assert resp.status_code == 400
    assert message in resp.text.replace("&#39;", "'")
    assert 'role="alert"' in resp.text
    assert 'value="Connexion"' in resp.text  # the form keeps what was typed
    with app.app_context():
        assert db.session.execute(db.select(OAuthClient)).first() is None
    assert audit_events(app, "client.created") == []


def test_edit_validates_and_audits(app, people):
    b = signed_in(app, people["admin"])
    client_id, _ = _create(b)
    bad = b.post(f"/admin/clients/{client_id}", {**NEW, "redirect_uris": "https://a/*"})
    assert bad.status_code == 400 and "wildcard" in bad.text
    resp = b.post(f"/admin/clients/{client_id}", {
        **NEW, "name": "Connexion portal", "redirect_uris": "https://portal.example.gov/cb",
        "first_party": "on", "require_mfa": "", "default_acr": "", "scope": ["openid"],
    })  # fmt: skip
    assert resp.status_code == 302
    c = _client(app, client_id)
    assert c.name == "Connexion portal" and c.redirect_uris == ["https://portal.example.gov/cb"]
    assert c.first_party and not c.require_mfa and c.default_acr is None and c.scope == "openid"
    (event,) = audit_events(app, "client.updated")
    assert set(event.details["fields"]) >= {"name", "redirect_uris", "first_party", "default_acr"}
    assert event.details["actor"] == f"user:{people['admin']}"


def test_query_text_is_never_a_status_banner(app, people):
    b = signed_in(app, people["admin"])
    page = b.get("/admin/clients?m=Your+account+is+compromised,+call+202-555-0100")
    assert page.status_code == 200 and "compromised" not in page.text


def test_rotate_disable_enable_delete(app, people):
    b = signed_in(app, people["admin"])
    NEW_CC = {**NEW, "grant_types": ["client_credentials"], "redirect_uris": "",
              "require_mfa": "", "default_acr": ""}  # fmt: skip
    resp = b.post("/admin/clients/new", NEW_CC)
    client_id = re.search(r'id="client-id">([^<]+)<', resp.text).group(1)
    old = re.search(r'id="client-secret">([^<]+)<', resp.text).group(1)
    assert _token(b.http, client_id, old).status_code == 200

    rotated = b.post(f"/admin/clients/{client_id}/action", {"action": "rotate"})
    new = re.search(r'id="client-secret">([^<]+)<', rotated.text).group(1)
    assert new != old
    assert _token(b.http, client_id, old).status_code == 401
    assert _token(b.http, client_id, new).status_code == 200

    disabled = b.post(f"/admin/clients/{client_id}/action", {"action": "disable"})
    assert disabled.status_code == 302 and disabled.location == "/admin/clients"
    assert _client(app, client_id).disabled
    # The status message comes from the server, once (post/redirect/get).
    assert "Connexion disabled." in b.get("/admin/clients").text
    assert "Connexion disabled." not in b.get("/admin/clients").text
    assert _token(b.http, client_id, new).status_code == 401
    b.post(f"/admin/clients/{client_id}/action", {"action": "enable"})
    assert not _client(app, client_id).disabled

    confirm = b.post(f"/admin/clients/{client_id}/action", {"action": "delete"})
    assert confirm.status_code == 200 and "Type the client id" in confirm.text
    wrong = b.post(f"/admin/clients/{client_id}/action", {"action": "delete", "confirm": "x"})
    assert "Type the client id to confirm." in wrong.text
    done = b.post(f"/admin/clients/{client_id}/action",
                  {"action": "delete", "confirm": client_id})  # fmt: skip
    assert done.status_code == 302
    with app.app_context():
        assert db.session.execute(db.select(OAuthClient)).first() is None
    actor = f"user:{people['admin']}"
    for event in ("client.secret_rotated", "client.deleted"):
        assert [e.details["actor"] for e in audit_events(app, event)] == [actor]
    assert [e.details["fields"] for e in audit_events(app, "client.updated")] == [
        ["disabled"], ["disabled"]]  # fmt: skip


def test_helpdesk_cannot_manage_clients(app, people, make_client):
    client_id, _ = make_client()
    b = signed_in(app, people["helpdesk"])
    assert b.post(f"/admin/clients/{client_id}/action", {"action": "disable"}).status_code == 403
    assert not _client(app, client_id).disabled


def test_unknown_client_is_404(app, people):
    b = signed_in(app, people["admin"])
    assert b.get("/admin/clients/nope").status_code == 404
