"""What the pages say about the application that asks: the client's logo, home page,
privacy policy and terms (RFC 7591 section 2), registrable from the command line, the
admin pages and dynamic registration."""

from __future__ import annotations

import json

import pytest

from idp.oidc.clients import ClientValidationError

INFO = {
    "logo_uri": "https://connexion.example.gov/logo.png",
    "client_uri": "https://connexion.example.gov/",
    "policy_uri": "https://connexion.example.gov/privacy",
    "tos_uri": "https://connexion.example.gov/terms",
}


def test_created_and_updated_with_its_context(app, make_client):
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.clients import describe, update_client

    client_id, _ = make_client(name="Connexion", **INFO)
    with app.app_context():
        client = db.session.execute(
            db.select(OAuthClient).filter_by(client_id=client_id)
        ).scalar_one()
        assert {k: describe(client)[k] for k in INFO} == INFO
        changed = update_client(client, policy_uri="https://connexion.example.gov/privacy-2",
                                tos_uri="")  # fmt: skip
        assert set(changed) == {"policy_uri", "tos_uri"}
        assert client.tos_uri is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("logo_uri", "http://connexion.example.gov/logo.png", "must start with https://"),
        ("client_uri", "javascript:alert(1)", "web address"),
        ("policy_uri", "https://user:pw@example.gov/", "web address"),
        ("tos_uri", "https://" + "x" * 2000 + ".gov/", "longer than 2000"),
        # A host that is not a host name: it would add a directive to the page's CSP.
        ("logo_uri", "https://cdn.example.gov;script-src https:/l.png", "web address"),
        ("logo_uri", "https://cdn.example.gov script-src:443/l.png", "web address"),
    ],
)
def test_only_plain_https_addresses(app, make_client, field, value, message):
    with pytest.raises(ClientValidationError, match=message):
        make_client(name="X", **{field: value})


def test_cli(app, tmp_path):
    from click.testing import CliRunner

    from idp.cli import main

    runner = CliRunner()
    env = {"IDP_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
           "IDP_KEYS_DIRECTORY": app.extensions["idp"].settings.keys.directory}  # fmt: skip
    result = runner.invoke(main, ["clients", "create", "--name", "Connexion",
                                  "--redirect-uri", "https://connexion.example.gov/cb",
                                  "--logo-uri", INFO["logo_uri"], "--client-uri",
                                  INFO["client_uri"], "--json"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    assert created["logo_uri"] == INFO["logo_uri"] and created["policy_uri"] is None
    result = runner.invoke(main, ["clients", "update", created["client_id"], "--logo-uri", "",
                                  "--tos-uri", INFO["tos_uri"], "--json"], env=env)  # fmt: skip
    assert result.exit_code == 0, result.output
    updated = json.loads(result.output)
    assert updated["logo_uri"] is None and updated["tos_uri"] == INFO["tos_uri"]


def test_dynamic_registration(app, client):
    from idp.oidc.registration import issue_token

    with app.app_context():
        tok = issue_token(expires_in=600, uses=1, created_by="test")[0]
    body = {"client_name": "Connexion", "redirect_uris": ["https://connexion.example.gov/cb"],
            **INFO}  # fmt: skip
    resp = client.post("/connect/register", data=json.dumps(body), content_type="application/json",
                       headers={"Authorization": f"Bearer {tok}"})  # fmt: skip
    assert resp.status_code == 201, resp.json
    assert {k: resp.json[k] for k in INFO} == INFO
    bad = {**body, "logo_uri": "http://example.org/x.png"}
    with app.app_context():
        tok = issue_token(expires_in=600, uses=1, created_by="test")[0]
    resp = client.post("/connect/register", data=json.dumps(bad), content_type="application/json",
                       headers={"Authorization": f"Bearer {tok}"})  # fmt: skip
    assert resp.status_code == 400 and resp.json["error"] == "invalid_client_metadata"


def test_a_logo_never_writes_anything_but_an_origin_into_the_csp(app):
    """The logo's origin goes into the page's Content-Security-Policy img-src: only a
    scheme, a host name and a port, whatever the stored address holds."""
    from idp.web import allow_img_src

    with app.test_request_context("/"):
        assert allow_img_src("https://cdn.example.gov:8443/logo.png") is not None
        assert allow_img_src("https://cdn.example.gov;script-src https:/l.png") is None
        assert allow_img_src("https://a.gov script-src 'unsafe-inline'/x") is None
        assert allow_img_src("data:image/png;base64,AAAA") is None
        from flask import g

        assert g.img_src == ["https://cdn.example.gov:8443"]
