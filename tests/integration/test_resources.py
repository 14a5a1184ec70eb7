"""API resources (RFC 8707), the tokens issued for them (RFC 9068) and their
introspection by the resource server (RFC 7662 2.1), end to end through the mock
relying party, on both backends.

The world: a client allowed two APIs (Forms, with a server client of its own, and
Calendar) and not a third (Payroll); the Forms API's own client; a user.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from clients.mockrp import MockRP, OAuthError
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD, make_settings

ISS = "http://localhost"
RP_CB = "https://rp.example.com/cb"
FORMS = "https://api.example.gov/forms"
CALENDAR = "https://calendar.example.gov/"
PAYROLL = "https://payroll.example.gov/api"
OIDC = "openid profile email offline_access"
ALL = f"{OIDC} forms:read forms:write cal:read"


@pytest.fixture
def settings(tmp_path, keys_dir):
    # The passkey offer after a password sign-in is not part of these journeys.
    return make_settings(tmp_path, keys_dir, webauthn={"passkey_offer_days": 0})


def new_rp(client, client_id: str, secret: str | None) -> MockRP:
    return MockRP(ISS, client_id, RP_CB, client_secret=secret, transport=FlaskTransport(client))


@pytest.fixture
def world(app, client, make_client, make_user):
    from idp.oidc.resources import create_resource

    make_user()
    api_id, api_secret = make_client(client_id="forms-api", name="Forms API", redirect_uris=[],
                                     grant_types=["client_credentials"], scope="")  # fmt: skip
    with app.app_context():
        create_resource(FORMS, [("forms:read", "Read your forms"),
                                ("forms:write", "Change your forms")],
                        name="Forms", client_id="forms-api")  # fmt: skip
        create_resource(CALENDAR, [("cal:read", "See your calendar")], name="Calendar")
        create_resource(PAYROLL, [("payroll:read", "See your pay slips")], name="Payroll")
    rp_id, rp_secret = make_client(
        scope=f"{ALL} groups", resources=[FORMS, CALENDAR],
        grant_types=["authorization_code", "refresh_token", "client_credentials"],
    )  # fmt: skip
    return {
        "rp": new_rp(client, rp_id, rp_secret),
        "api": new_rp(app.test_client(), api_id, api_secret),
    }


def claims(rp: MockRP, token: str) -> dict:
    return rp.verify_access_token(token)


def code_row(app):
    from idp.extensions import db
    from idp.models import AuthorizationCode

    with app.app_context():
        row = (
            db.session.execute(db.select(AuthorizationCode).order_by(AuthorizationCode.id.desc()))
            .scalars()
            .first()
        )
        return row.scope, row.resources


def post_token(rp: MockRP, pairs: list[tuple[str, str]]):
    """A token request with repeated parameters (the mock RP sends each name once)."""
    return rp.transport.request("POST", f"{ISS}/token", data=pairs,
                                auth=(rp.client_id, rp.client_secret))  # fmt: skip


# -- /authorize and the code ------------------------------------------------------------


def test_a_resource_narrows_the_token_to_its_audience_and_scopes(app, world):
    rp = world["rp"]
    result = rp.sign_in("ada@example.com", PASSWORD, scope=ALL, resource=FORMS)
    # The code covers the named resource; a resource scope whose API was not named
    # (cal:read) is not granted: no token could ever carry it (RFC 8707 2).
    scope, resources = code_row(app)
    assert resources == [FORMS]
    assert set(scope.split()) == {*OIDC.split(), "forms:read", "forms:write"}

    tokens = rp.exchange_code(result, resource=FORMS)
    at = claims(rp, tokens.access_token)
    assert at["aud"] == FORMS and at["client_id"] == rp.client_id
    assert set(at["scope"].split()) == {"forms:read", "forms:write"}
    assert tokens.scope == at["scope"]
    assert at["acr"] and at["auth_time"] and at["sub"]
    # The ID token is still the client's, bound to this access token.
    id_claims = rp.verify_id_token(tokens.id_token, nonce=result.nonce,
                                   access_token=tokens.access_token)  # fmt: skip
    assert id_claims["aud"] == rp.client_id
    # A token for the API is no token for the userinfo endpoint (no OIDC scope).
    with pytest.raises(OAuthError) as exc_info:
        rp.userinfo(tokens.access_token)
    assert (exc_info.value.status, exc_info.value.error) == (403, "insufficient_scope")


def test_without_resource_at_the_token_endpoint_the_token_is_the_clients(app, world):
    rp = world["rp"]
    result = rp.sign_in("ada@example.com", PASSWORD, scope=ALL, resource=FORMS)
    tokens = rp.exchange_code(result)
    at = claims(rp, tokens.access_token)
    assert at["aud"] == rp.client_id
    assert set(at["scope"].split()) == set(OIDC.split())  # no resource scope
    assert rp.userinfo(tokens.access_token)["email"] == "ada@example.com"


def test_without_any_resource_nothing_changes(app, world):
    rp = world["rp"]
    result = rp.sign_in("ada@example.com", PASSWORD, scope=OIDC)
    assert code_row(app) == (OIDC, None)
    tokens = rp.exchange_code(result)
    at = claims(rp, tokens.access_token)
    assert at["aud"] == rp.client_id and at["scope"] == OIDC


def test_several_resources_then_one_per_token_and_the_refresh_token_keeps_them_all(app, world):
    rp = world["rp"]
    url, state = rp.authorization_url(ALL, resource=FORMS)
    url += "&" + urlencode({"resource": CALENDAR})
    result = rp.resume(rp.transport.request("GET", url), state,
                       email="ada@example.com", password=PASSWORD)  # fmt: skip
    scope, resources = code_row(app)
    assert resources == [FORMS, CALENDAR]
    assert set(scope.split()) == set(ALL.split())

    # No resource at /token: the client's own token (never a guess among the two).
    tokens = rp.exchange_code(result)
    assert claims(rp, tokens.access_token)["aud"] == rp.client_id
    # Each resource by refresh; every new refresh token is bound to the whole grant
    # (RFC 8707 2.2), so it can still be narrowed to the other one.
    cal = rp.token_request("refresh_token", refresh_token=tokens.refresh_token, resource=CALENDAR)
    at = claims(rp, cal.access_token)
    assert (at["aud"], at["scope"]) == (CALENDAR, "cal:read")
    forms = rp.token_request("refresh_token", refresh_token=cal.refresh_token, resource=FORMS)
    at = claims(rp, forms.access_token)
    assert at["aud"] == FORMS and set(at["scope"].split()) == {"forms:read", "forms:write"}
    # A scope asked for at the refresh narrows further.
    read = rp.token_request("refresh_token", refresh_token=forms.refresh_token,
                            resource=FORMS, scope="forms:read")  # fmt: skip
    assert claims(rp, read.access_token)["scope"] == "forms:read"
    # The refresh token still holds the OIDC scopes and offline_access.
    plain = rp.refresh(read.refresh_token)
    assert set(claims(rp, plain.access_token)["scope"].split()) == set(OIDC.split())
    assert plain.id_token

    # Two resources in one token request: one audience per token here.
    resp = post_token(rp, [("grant_type", "refresh_token"), ("refresh_token", plain.refresh_token),
                           ("resource", FORMS), ("resource", CALENDAR)])  # fmt: skip
    assert resp.status == 400 and resp.json()["error"] == "invalid_target"


@pytest.mark.parametrize(
    ("resource", "why"),
    [
        (PAYROLL, "registered, but not for this client"),
        ("https://unknown.example.gov/", "not registered"),
        (f"{FORMS}#part", "a fragment (RFC 8707 2)"),
        ("forms", "not an absolute URI"),
        ("", "empty"),
    ],
)
def test_authorize_answers_invalid_target_to_the_redirect_uri(app, world, resource, why):
    rp = world["rp"]
    result = rp.sign_in("ada@example.com", PASSWORD, scope=ALL, resource=resource)
    assert result.error == "invalid_target", why
    assert result.iss == ISS and result.state == rp.last_request["state"]
    from tests.integration.test_admin_access import audit_events

    assert audit_events(app, "authorization.refused")[-1].details["error"] == "invalid_target"


def test_an_invalid_target_with_a_bad_redirect_uri_is_never_redirected(app, world, client):
    rp = world["rp"]
    url, _ = rp.authorization_url(ALL, resource=PAYROLL, redirect_uri="https://evil.example/cb")
    resp = client.get(url)
    assert resp.status_code == 400 and "Location" not in resp.headers


def test_too_many_resources_is_invalid_target(app, world):
    rp = world["rp"]
    url, state = rp.authorization_url(ALL)
    url += "&" + urlencode([("resource", f"https://api{n}.example.gov/") for n in range(11)])
    resp = rp.transport.request("GET", url)
    query = parse_qs(urlsplit(resp.location).query)
    assert query["error"] == ["invalid_target"]


def test_token_endpoint_refuses_a_resource_the_code_was_not_for(app, world):
    rp = world["rp"]
    result = rp.sign_in("ada@example.com", PASSWORD, scope=ALL, resource=FORMS)
    for other in (CALENDAR, PAYROLL, "https://unknown.example.gov/", "not a uri"):
        with pytest.raises(OAuthError) as exc_info:
            rp.exchange_code(result, resource=other)
        assert (exc_info.value.status, exc_info.value.error) == (400, "invalid_target")
    resp = post_token(rp, [("grant_type", "authorization_code"), ("code", result.code),
                           ("redirect_uri", RP_CB), ("code_verifier", result.code_verifier),
                           ("resource", FORMS), ("resource", FORMS + "/x")])  # fmt: skip
    assert resp.status == 400 and resp.json()["error"] == "invalid_target"
    # The refusals did not burn the code.
    assert claims(rp, rp.exchange_code(result, resource=FORMS).access_token)["aud"] == FORMS


def test_a_resource_taken_from_the_client_is_refused_at_refresh(app, world):
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.clients import update_client

    rp = world["rp"]
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD, scope=ALL,
                                         resource=FORMS))  # fmt: skip
    with app.app_context():
        c = db.session.execute(
            db.select(OAuthClient).filter_by(client_id=rp.client_id)
        ).scalar_one()
        update_client(c, resources=[CALENDAR], scope=f"{OIDC} cal:read")
    with pytest.raises(OAuthError) as exc_info:
        rp.token_request("refresh_token", refresh_token=tokens.refresh_token, resource=FORMS)
    assert exc_info.value.error == "invalid_target"


# -- client credentials ----------------------------------------------------------------------


def test_client_credentials_never_carry_user_scopes(app, world):
    rp = world["rp"]
    # The client is registered with openid profile email ...: none of it without a user.
    plain = rp.client_credentials()
    at = claims(rp, plain.access_token)
    assert at["aud"] == rp.client_id and at["scope"] == "" and plain.scope == ""
    for scope in ("profile", "email offline_access", "groups", "openid"):
        with pytest.raises(OAuthError) as exc_info:
            rp.client_credentials(scope=scope)
        assert exc_info.value.error == "invalid_scope", scope


def test_client_credentials_for_a_resource(app, world):
    rp = world["rp"]
    tokens = rp.token_request("client_credentials", resource=FORMS)
    at = claims(rp, tokens.access_token)
    assert at["aud"] == FORMS and at["sub"] == rp.client_id
    assert set(at["scope"].split()) == {"forms:read", "forms:write"}
    narrowed = rp.token_request("client_credentials", resource=FORMS, scope="forms:write")
    assert claims(rp, narrowed.access_token)["scope"] == "forms:write"
    with pytest.raises(OAuthError) as exc_info:
        rp.token_request("client_credentials", resource=PAYROLL)
    assert exc_info.value.error == "invalid_target"


# -- introspection by the resource server (RFC 7662 2.1) ---------------------------------------


def test_the_resource_server_introspects_the_tokens_for_its_api_only(app, world, make_client):
    rp, api = world["rp"], world["api"]
    result = rp.sign_in("ada@example.com", PASSWORD, scope=ALL, resource=FORMS)
    for_forms = rp.exchange_code(result, resource=FORMS)
    body = api.introspect(for_forms.access_token)
    assert body["active"] is True and body["aud"] == FORMS
    assert body["client_id"] == rp.client_id and body["sub"]
    assert set(body["scope"].split()) == {"forms:read", "forms:write"}
    # The token's own client may still introspect it.
    assert rp.introspect(for_forms.access_token)["active"] is True
    # The API's client learns nothing of tokens not meant for its API: the client's own
    # token, a token for the Calendar API, and the refresh token.
    own = rp.refresh(for_forms.refresh_token)
    cal = rp.token_request("client_credentials", resource=CALENDAR)
    for token in (own.access_token, cal.access_token, own.refresh_token):
        assert api.introspect(token) == {"active": False}
    # Nor does any other client.
    other_id, other_secret = make_client(name="Other")
    other = new_rp(app.test_client(), other_id, other_secret)
    assert other.introspect(for_forms.access_token) == {"active": False}
    # A revoked token is inactive for the resource server too.
    assert rp.revoke(for_forms.access_token) == 200
    assert api.introspect(for_forms.access_token) == {"active": False}


def test_a_deleted_server_client_leaves_nothing_to_a_namesake(app, world, make_client):
    from idp.extensions import db
    from idp.models import ApiResource, OAuthClient
    from idp.oidc.clients import delete_client

    rp = world["rp"]
    token = rp.token_request("client_credentials", resource=FORMS).access_token
    with app.app_context():
        delete_client(db.session.execute(
            db.select(OAuthClient).filter_by(client_id="forms-api")).scalar_one())  # fmt: skip
        assert (
            db.session.execute(db.select(ApiResource.client_id).filter_by(uri=FORMS)).scalar()
            is None
        )
    again_id, again_secret = make_client(client_id="forms-api", name="Namesake", redirect_uris=[],
                                         grant_types=["client_credentials"], scope="")  # fmt: skip
    namesake = new_rp(app.test_client(), again_id, again_secret)
    assert namesake.introspect(token) == {"active": False}


# -- consent, discovery, registration ----------------------------------------------------------


def test_consent_names_each_api_and_its_scopes(app, world, client):
    rp = world["rp"]
    from clients.mockrp.forms import parse_forms

    resp = rp.follow(rp.start(ALL, resource=FORMS))
    login = next(f for f in parse_forms(resp.text, resp.url) if "password" in f.fields)
    login.fill(email="ada@example.com", password=PASSWORD)
    page = rp.submit_form(login)
    while page.status in (301, 302, 303) and "/consent" in (page.location or "") + page.url:
        page = rp.follow(page)
    assert "/consent" in page.url, page.url
    text = page.text
    assert "Your email address" in text
    assert "On your behalf, at Forms" in text and FORMS in text
    assert "Read your forms" in text and "Change your forms" in text
    assert "See your calendar" not in text  # its API was not named


def test_discovery_lists_the_resource_scopes_and_groups(app, world, client):
    meta = client.get("/.well-known/openid-configuration").get_json()
    assert meta["scopes_supported"][:6] == ["openid", "profile", "email", "phone",
                                            "offline_access", "groups"]  # fmt: skip
    assert {"forms:read", "forms:write", "cal:read", "payroll:read"} <= set(
        meta["scopes_supported"])  # fmt: skip
    assert "groups" in meta["claims_supported"]


def test_client_scopes_must_be_known_and_their_api_allowed(app, world):
    from idp.oidc.clients import ClientValidationError, create_client

    with app.app_context():
        with pytest.raises(ClientValidationError, match="not supported"):
            create_client(name="x", redirect_uris=[RP_CB], scope="openid nobody:knows")
        with pytest.raises(ClientValidationError, match="which this application may not use"):
            create_client(name="x", redirect_uris=[RP_CB], scope="openid payroll:read")
        with pytest.raises(ClientValidationError, match="no API"):
            create_client(name="x", redirect_uris=[RP_CB], resources=["https://nope.example/"])
        c, _ = create_client(name="x", redirect_uris=[RP_CB], scope="openid payroll:read",
                             resources=[PAYROLL])  # fmt: skip
        from idp.oidc.clients import describe

        assert describe(c)["resources"] == [PAYROLL]


def test_dynamic_registration_cannot_grant_itself_an_api(app, world, client):
    from idp.oidc.registration import issue_token

    with app.app_context():
        token, _ = issue_token(expires_in=600)
    resp = client.post("/connect/register", json={
        "client_name": "Self-served", "redirect_uris": [RP_CB], "scope": "openid forms:read",
    }, headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert resp.status_code == 400
    assert resp.get_json()["error"] == "invalid_client_metadata"
    assert "may not use" in resp.get_json()["error_description"]


# -- managing resources ---------------------------------------------------------------------


def test_changing_and_deleting_a_resource_takes_its_scopes_from_clients(app, world):
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.resources import (
        client_resource_uris,
        delete_resource,
        find_resource,
        update_resource,
    )
    from tests.integration.test_admin_access import audit_events

    rp = world["rp"]
    with app.app_context():
        changed = update_resource(find_resource(FORMS), scopes=[("forms:read", "Read forms")],
                                  actor="test")  # fmt: skip
        assert changed == ["scope_descriptions", "scopes"]
        c = db.session.execute(
            db.select(OAuthClient).filter_by(client_id=rp.client_id)
        ).scalar_one()
        assert "forms:write" not in c.scope.split() and "forms:read" in c.scope.split()
        delete_resource(find_resource(FORMS), actor="test")
        db.session.expire_all()
        c = db.session.execute(
            db.select(OAuthClient).filter_by(client_id=rp.client_id)
        ).scalar_one()
        assert "forms:read" not in c.scope.split()
        assert client_resource_uris(c) == [CALENDAR]
    assert [e.details["resource"] for e in audit_events(app, "resource.deleted")] == [FORMS]
    assert audit_events(app, "resource.updated")[-1].details["removed_scopes"] == ["forms:write"]
    result = rp.sign_in("ada@example.com", PASSWORD, scope=OIDC, resource=FORMS)
    assert result.error == "invalid_target"


def test_discovery_follows_every_change_of_the_scopes(app, world, client):
    """Discovery remembers the scopes between changes (on Redis, checked against the
    registrations' generation); each change, in any process, shows at the next request."""
    from idp.extensions import db
    from idp.models import ResourceScope
    from idp.oidc.client_cache import GENERATION_KEY
    from idp.oidc.resources import find_resource, update_resource

    def listed() -> set[str]:
        return set(client.get("/.well-known/openid-configuration").get_json()["scopes_supported"])

    assert "cal:read" in listed() and "cal:write" not in listed()
    with app.app_context():
        update_resource(find_resource(CALENDAR),
                        scopes=[("cal:read", "See your calendar"), ("cal:write", "Change it")])  # fmt: skip
    assert "cal:write" in listed()
    with app.app_context():  # another process's change: its commit bumps the generation
        db.session.execute(db.delete(ResourceScope).where(ResourceScope.name == "cal:write"))
        db.session.commit()
        app.extensions["idp"].store.incr(GENERATION_KEY, 60)
    assert "cal:write" not in listed()
