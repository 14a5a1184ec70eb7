"""``/admin/resources`` (APIs, RFC 8707) and the APIs and information URLs of the admin
client form: administrators only, CSRF, plain-language field errors that keep what was
typed, post/redirect/get, a confirmation before deleting, every change audited."""

from __future__ import annotations

import re

import pytest

from idp.extensions import db
from idp.models import ApiResource, OAuthClient
from tests.integration import test_admin_access as access
from tests.integration.test_admin_access import audit_events, signed_in

people = access.people
settings = access.settings

URI = "https://api.example.gov/forms"
NEW = {"uri": URI, "name": "Forms API",
       "scopes": "forms:read=Read your forms\nforms:write = Change  your forms\n", "client_id": ""}  # fmt: skip


def _resource(app, uri: str = URI) -> dict | None:
    from idp.oidc.resources import describe_resource, find_resource

    with app.app_context():
        found = find_resource(uri)
        return describe_resource(found) if found else None


def _rid(app, uri: str = URI) -> int:
    with app.app_context():
        return db.session.execute(db.select(ApiResource.id).filter_by(uri=uri)).scalar_one()


def test_only_administrators_manage_apis(app, people):
    for who in ("helpdesk", "user"):
        browser = signed_in(app, people[who])
        assert browser.get("/admin/resources").status_code == 403
        assert browser.post("/admin/resources/new", NEW).status_code == 403
    assert _resource(app) is None
    assert "/admin/resources" not in signed_in(app, people["helpdesk"]).get("/admin/").text
    assert "/admin/resources" in signed_in(app, people["admin"]).get("/admin/").text


def test_register_edit_and_delete_an_api(app, people, make_client):
    root = signed_in(app, people["admin"])
    server_id, _ = make_client(client_id="forms-api", name="Forms API client", redirect_uris=[],
                               grant_types=["client_credentials"], scope="")  # fmt: skip
    form = root.get("/admin/resources/new")
    assert form.status_code == 200 and 'name="scopes"' in form.text

    resp = root.post("/admin/resources/new", {**NEW, "client_id": server_id})
    assert resp.status_code == 302 and resp.location == "/admin/resources"
    assert _resource(app)["scopes"] == [
        {"name": "forms:read", "description": "Read your forms"},
        {"name": "forms:write", "description": "Change your forms"},
    ]
    assert _resource(app)["client_id"] == "forms-api"
    listing = root.get("/admin/resources").text
    assert "Registered the API Forms API." in listing and URI in listing
    assert "Registered the API" not in root.get("/admin/resources").text  # shown once
    (created,) = audit_events(app, "resource.created")
    assert created.details["actor"] == f"user:{people['admin']}"

    rid = _rid(app)
    edit = root.get(f"/admin/resources/{rid}")
    assert "forms:write=Change your forms" in edit.text
    resp = root.post(f"/admin/resources/{rid}", {"uri": URI, "name": "Forms",
                                                  "scopes": "forms:read=Read forms",
                                                  "client_id": ""})  # fmt: skip
    assert resp.status_code == 302
    data = _resource(app)
    assert data["name"] == "Forms" and data["client_id"] is None
    assert [s["name"] for s in data["scopes"]] == ["forms:read"]
    assert audit_events(app, "resource.updated")[-1].details["removed_scopes"] == ["forms:write"]

    # Deleting asks first; without confirm=yes nothing changes.
    ask = root.post(f"/admin/resources/{rid}/delete")
    assert ask.status_code == 200 and "Yes, delete the API" in ask.text
    assert _resource(app) is not None
    done = root.post(f"/admin/resources/{rid}/delete", {"confirm": "yes"})
    assert done.status_code == 302 and _resource(app) is None
    assert "Deleted the API Forms." in root.get("/admin/resources").text
    assert root.get(f"/admin/resources/{rid}").status_code == 404


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"uri": "http://api.example.gov/"}, "uri", "must use https"),
    ({"uri": "https://api.example.gov/#x"}, "uri", "fragment"),
    ({"uri": "https://api.example.gov/?v=1"}, "uri", "query"),
    ({"uri": ""}, "uri", "Enter the API"),
    ({"scopes": "openid=Who you are"}, "scopes", "OpenID Connect scope"),
    ({"scopes": "has space"}, "scopes", "is not valid"),
    ({"scopes": "a:b=x\na:b=y"}, "scopes", "listed twice"),
    ({"client_id": "no-such-client"}, "client_id", "There is no client"),
    ({"name": "n" * 201}, "name", "at most 200"),
])  # fmt: skip
def test_a_refused_form_says_which_field_and_keeps_what_was_typed(
    app, people, fields, field, words
):
    root = signed_in(app, people["admin"])
    resp = root.post("/admin/resources/new", {**NEW, **fields})
    assert resp.status_code == 400
    message = re.search(rf'<span class="usa-error-message" id="{field}-error">([^<]+)<',
                        resp.text)  # fmt: skip
    assert message and words in message.group(1), resp.text[:2000]
    assert f'aria-describedby="{field}' in resp.text and 'aria-invalid="true"' in resp.text
    assert 'role="alert"' in resp.text
    assert "forms:read=Read your forms" in resp.text or "scopes" in fields
    assert _resource(app, fields.get("uri", URI)) is None


def test_a_scope_name_taken_by_another_api_is_refused(app, people):
    root = signed_in(app, people["admin"])
    assert root.post("/admin/resources/new", NEW).status_code == 302
    resp = root.post("/admin/resources/new", {**NEW, "uri": "https://other.example.gov/"})
    assert resp.status_code == 400 and "already belongs to the API" in resp.text
    resp = root.post("/admin/resources/new", {**NEW, "scopes": "other:x"})
    assert resp.status_code == 400 and "already registered" in resp.text


def test_resource_forms_need_the_csrf_token(app, people):
    root = signed_in(app, people["admin"])
    assert root.post("/admin/resources/new", NEW, csrf=False).status_code in (400, 403)
    assert _resource(app) is None


# -- the client form: APIs and information URLs --------------------------------------------

CLIENT = {
    "name": "Supplier portal",
    "redirect_uris": "https://portal.example.gov/cb",
    "post_logout_redirect_uris": "",
    "grant_types": ["authorization_code", "refresh_token"],
    "auth_method": "client_secret_basic",
    "scope": ["openid", "email", "forms:read"],
    "logo_uri": "https://portal.example.gov/logo.svg",
    "client_uri": "https://portal.example.gov/",
    "policy_uri": "https://portal.example.gov/privacy",
    "tos_uri": "https://portal.example.gov/terms",
}


def _client(app, name: str) -> OAuthClient:
    with app.app_context():
        c = db.session.execute(db.select(OAuthClient).filter_by(name=name)).scalar_one()
        db.session.expunge(c)
        return c


def test_the_client_form_allows_apis_and_keeps_information_urls(app, people):
    from idp.oidc.resources import client_resource_uris

    root = signed_in(app, people["admin"])
    assert root.post("/admin/resources/new", NEW).status_code == 302
    form = root.get("/admin/clients/new").text
    assert f'value="{URI}"' in form and 'value="forms:read"' in form
    for key in ("logo_uri", "client_uri", "policy_uri", "tos_uri"):
        assert f'name="{key}"' in form

    # A scope of an API the client may not call is refused, in words.
    refused = root.post("/admin/clients/new", CLIENT)
    assert refused.status_code == 400 and "which this application may not use" in refused.text
    assert 'value="https://portal.example.gov/privacy"' in refused.text  # kept

    created = root.post("/admin/clients/new", {**CLIENT, "resources": [URI]})
    assert created.status_code == 200 and 'id="client-secret"' in created.text
    c = _client(app, "Supplier portal")
    assert c.policy_uri == "https://portal.example.gov/privacy"
    assert c.tos_uri == "https://portal.example.gov/terms"
    assert c.logo_uri and c.client_uri and "forms:read" in c.scope.split()
    with app.app_context():
        assert client_resource_uris(c) == [URI]

    edit = root.get(f"/admin/clients/{c.client_id}").text
    assert re.search(rf'value="{re.escape(URI)}" checked', edit)
    assert 'value="https://portal.example.gov/terms"' in edit
    # Unticking the API without its scope is refused; both together are saved.
    kept = {**CLIENT, "tos_uri": ""}
    assert root.post(f"/admin/clients/{c.client_id}", kept).status_code == 400
    saved = root.post(f"/admin/clients/{c.client_id}", {**kept, "scope": ["openid", "email"]})
    assert saved.status_code == 302
    c = _client(app, "Supplier portal")
    assert c.tos_uri is None and "forms:read" not in c.scope.split()
    with app.app_context():
        assert client_resource_uris(c) == []
    assert audit_events(app, "client.resources_changed")[-1].details["resources"] == []
    bad = root.post(f"/admin/clients/{c.client_id}", {**CLIENT, "scope": ["openid"],
                                                       "policy_uri": "ftp://x.example/"})  # fmt: skip
    assert bad.status_code == 400 and "privacy policy URL must start with https" in bad.text
