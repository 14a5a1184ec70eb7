"""Connexion and the REAL provider, both over HTTP: a session that ends at the provider
ends in Connexion too (OpenID Connect Back-Channel Logout 1.0), whichever way it ends."""

from __future__ import annotations

import requests

from clients.mockrp.forms import parse_forms
from tests.connexion.test_flow import (
    World,
    connexion_session,
    get,
    sign_in_with_password,
    world,  # noqa: F401 - the fixture: the provider and Connexion, both over HTTP
)


def register_logout_uri(cx: World) -> None:
    from idp.extensions import db
    from idp.models import OAuthClient
    from idp.oidc.clients import update_client

    with cx.provider.app_context():
        row = db.session.execute(
            db.select(OAuthClient).filter_by(client_id="connexion")
        ).scalar_one()
        update_client(row, backchannel_logout_uri=f"{cx.base}/backchannel-logout")


def delivered(cx: World) -> None:
    assert cx.provider.extensions["idp"].backchannel.dispatcher.drain(15)


def on_dashboard(cx: World, browser: requests.Session) -> bool:
    resp = get(browser, f"{cx.base}/dashboard", allow_redirects=False)
    return resp.status_code == 200


def test_signing_out_at_the_provider_signs_out_of_connexion(world: World):  # noqa: F811
    register_logout_uri(world)
    browser = requests.Session()
    assert sign_in_with_password(world, browser).url == f"{world.base}/dashboard"
    sid = connexion_session(world, browser)["user"]["sid"]
    assert on_dashboard(world, browser)

    # The provider's own "Sign out" button (in the header of its pages).
    home = get(browser, f"{world.issuer}/")
    [form] = [f for f in parse_forms(home.text, home.url) if f.action.endswith("/logout")]
    data = form.submit_data(("decision", "logout"))
    assert browser.post(form.action, data=data, timeout=10).status_code == 200
    delivered(world)

    resp = get(browser, f"{world.base}/dashboard", allow_redirects=False)
    assert resp.status_code == 302 and "/login" in resp.headers["Location"]
    # The session is cleared: Flask drops the emptied cookie.
    assert browser.cookies.get("connexion_session", domain="127.0.0.1") is None
    from idp.extensions import db
    from idp.models import AuditEvent

    with world.provider.app_context():
        [event] = db.session.execute(
            db.select(AuditEvent).filter_by(event="backchannel_logout.delivered")
        ).scalars()
        assert event.client_id == "connexion" and event.details["sid"] == sid


def test_an_expired_provider_session_ends_the_connexion_session(world: World):  # noqa: F811
    from idp.security.crypto import hash_token

    register_logout_uri(world)
    browser = requests.Session()
    sign_in_with_password(world, browser)
    assert on_dashboard(world, browser)
    svc = world.provider.extensions["idp"]
    cookie = browser.cookies.get(svc.settings.session.cookie_name, domain="127.0.0.1")
    with world.provider.app_context():
        svc.store.delete(f"session:{hash_token(cookie)}")  # the idle timeout passed
        assert svc.backchannel.sweep() == 1
    delivered(world)
    assert not on_dashboard(world, browser)
    # Signing in again works: the logout ended the old session only.
    assert sign_in_with_password(world, browser).url == f"{world.base}/dashboard"
    assert on_dashboard(world, browser)
