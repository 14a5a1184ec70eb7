"""RP-Initiated Logout 1.0: the end-session endpoint with good and bad input."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from clients.mockrp import MockRP
from clients.mockrp.forms import find_form, page_info, parse_forms
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD

ISS = "http://localhost"
RP_CB = "https://rp.example.com/cb"
BYE = "https://rp.example.com/bye"
COOKIE = "idp_session"


def new_rp(client, client_id: str, secret: str | None) -> MockRP:
    return MockRP(ISS, client_id, RP_CB, client_secret=secret, transport=FlaskTransport(client))


@pytest.fixture
def rp(app, client, make_client, make_user):
    make_user()
    client_id, secret = make_client()
    return new_rp(client, client_id, secret)


@pytest.fixture
def id_token(rp) -> str:
    return rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD)).id_token


def session_cookie(client) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie is not None else None


def session_alive(app, cookie: str | None) -> bool:
    with app.app_context():
        return app.extensions["idp"].sessions.load(cookie) is not None


def needs_sign_in(rp: MockRP) -> bool:
    """Whether a new authorization request would show the sign-in page."""
    resp = rp.start(prompt="none")
    return dict(parse_qsl(urlsplit(resp.location).query)).get("error") == "login_required"


def logout_events(app) -> list[tuple[int | None, str | None]]:
    from idp.extensions import db
    from idp.models import AuditEvent

    with app.app_context():
        rows = db.session.execute(db.select(AuditEvent).filter_by(event="logout")).scalars()
        return [(r.user_id, r.client_id) for r in rows]


def tamper(jwt: str) -> str:
    header, payload, sig = jwt.split(".")
    return f"{header}.{payload}.{('A' if sig[0] != 'A' else 'B') + sig[1:]}"


def assert_bad_logout_page(resp) -> None:
    assert resp.status == 400
    assert resp.content_type == "text/html"
    assert "Location" not in resp.headers
    assert page_info(resp.text).title.startswith("Sign-out link not valid")


# -- the happy path ---------------------------------------------------------------------


def test_logout_with_hint_redirects_with_state(app, client, rp, id_token):
    cookie = session_cookie(client)
    assert session_alive(app, cookie) and not needs_sign_in(rp)
    resp = rp.logout(id_token_hint=id_token, post_logout_redirect_uri=BYE, state="xyz 1")
    assert resp.status == 302
    assert resp.location == BYE + "?state=xyz+1"
    set_cookie = " ".join(resp.headers.get("Set-Cookie", "").split())
    assert f"{COOKIE}=;" in set_cookie and "Expires=Thu, 01 Jan 1970" in set_cookie
    assert session_cookie(client) is None
    assert not session_alive(app, cookie)
    assert needs_sign_in(rp)
    [(user_id, client_id)] = logout_events(app)
    assert user_id is not None and client_id == rp.client_id


def test_logout_with_hint_without_state(app, client, rp, id_token):
    resp = rp.logout(id_token_hint=id_token, post_logout_redirect_uri=BYE, client_id=None)
    assert resp.status == 302 and resp.location == BYE
    assert needs_sign_in(rp)


def test_logout_with_hint_and_no_target(app, client, rp, id_token):
    resp = rp.logout(id_token_hint=id_token)
    assert resp.status == 200
    assert "You have signed out" in page_info(resp.text).h1
    assert needs_sign_in(rp)


def test_logout_with_hint_but_no_session(app, rp, id_token):
    other_browser = new_rp(app.test_client(), rp.client_id, rp.client_secret)
    resp = other_browser.logout(id_token_hint=id_token, post_logout_redirect_uri=BYE, state="s")
    assert resp.status == 302 and resp.location == BYE + "?state=s"
    assert logout_events(app) == []  # no session was ended


# -- refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.com/bye",
        "https://rp.example.com/bye/",
        "https://rp.example.com/byebye",
        "https://rp.example.com/bye?x=1",
        RP_CB,  # a redirect URI, but not a post-logout one
    ],
)
def test_unregistered_post_logout_redirect_uri(app, client, rp, id_token, target):
    cookie = session_cookie(client)
    resp = rp.logout(id_token_hint=id_token, post_logout_redirect_uri=target, state="s")
    assert_bad_logout_page(resp)
    assert session_alive(app, cookie) and not needs_sign_in(rp)
    assert logout_events(app) == []


def test_post_logout_redirect_uri_without_client(app, client, rp):
    rp.sign_in("ada@example.com", PASSWORD)
    resp = rp.logout(post_logout_redirect_uri=BYE, client_id=None)
    assert_bad_logout_page(resp)
    assert not needs_sign_in(rp)


@pytest.mark.parametrize("kind", ["tampered", "garbage", "access_token"])
def test_bad_id_token_hint(app, client, rp, kind):
    tokens = rp.exchange_code(rp.sign_in("ada@example.com", PASSWORD))
    hint = {
        "tampered": tamper(tokens.id_token),
        "garbage": "not-a-jwt",
        "access_token": tokens.access_token,  # signed by us, but not an ID token
    }[kind]
    cookie = session_cookie(client)
    resp = rp.logout(id_token_hint=hint, post_logout_redirect_uri=BYE, state="s")
    assert_bad_logout_page(resp)
    assert session_alive(app, cookie)
    assert logout_events(app) == []


def test_client_id_not_matching_the_hint(app, client, rp, id_token, make_client):
    other_id, _ = make_client(name="Other RP", post_logout_redirect_uris=[BYE])
    resp = rp.logout(id_token_hint=id_token, post_logout_redirect_uri=BYE, client_id=other_id)
    assert_bad_logout_page(resp)
    assert not needs_sign_in(rp)


# -- confirmation -----------------------------------------------------------------------


def test_logout_without_hint_asks_for_confirmation(app, client, rp):
    rp.sign_in("ada@example.com", PASSWORD)
    cookie = session_cookie(client)
    page = rp.transport.request("GET", rp.logout_url(post_logout_redirect_uri=BYE, state="s"))
    assert page.status == 200
    form = find_form(parse_forms(page.text, page.url), "decision")
    assert ("decision", "logout") in form.buttons
    assert form.method == "POST" and form.fields["csrf_token"]
    assert session_alive(app, cookie)  # nothing happened yet
    resp = rp.submit_form(form, button=("decision", "logout"))
    assert resp.status == 302 and resp.location == BYE + "?state=s"
    assert not session_alive(app, cookie)
    assert needs_sign_in(rp)
    assert len(logout_events(app)) == 1


def test_logout_confirmation_through_mock_rp(app, client, rp):
    rp.sign_in("ada@example.com", PASSWORD)
    resp = rp.logout(client_id=None)
    assert resp.status == 200 and "You have signed out" in page_info(resp.text).h1
    assert needs_sign_in(rp)


def test_hint_for_another_user_asks_for_confirmation(app, client, rp, make_user):
    make_user("grace@example.com", name="Grace Hopper")
    ada_browser = new_rp(app.test_client(), rp.client_id, rp.client_secret)
    ada_hint = ada_browser.exchange_code(ada_browser.sign_in("ada@example.com", PASSWORD)).id_token
    rp.sign_in("grace@example.com", PASSWORD)
    page = rp.transport.request("GET", rp.logout_url(id_token_hint=ada_hint))
    assert page.status == 200
    assert find_form(parse_forms(page.text, page.url), "decision")
    assert not needs_sign_in(rp)


@pytest.mark.parametrize("token", [None, "", "1700000000.deadbeef"])
def test_confirmation_without_csrf(app, client, rp, token):
    rp.sign_in("ada@example.com", PASSWORD)
    cookie = session_cookie(client)
    page = rp.transport.request("GET", rp.logout_url(post_logout_redirect_uri=BYE, state="s"))
    form = find_form(parse_forms(page.text, page.url), "decision")
    form.fill(csrf_token=token)
    resp = rp.submit_form(form, button=("decision", "logout"))
    assert resp.status == 400
    assert "Location" not in resp.headers
    assert session_alive(app, cookie) and not needs_sign_in(rp)
    assert logout_events(app) == []


def test_logout_with_nothing(app, client):
    resp = client.get("/logout")
    assert resp.status_code == 200
    assert "You have signed out" in resp.get_data(as_text=True)
