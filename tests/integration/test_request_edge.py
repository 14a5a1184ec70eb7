"""The request edge: one place checks request text for every route (``EDGE_CHECKS`` in
idp/web.py): a bounded size, no control characters, JSON no deeper than its readers
accept. Pages, protocol endpoints and the JSON API answer alike: a 400 that names the
parameter (JSON for the JSON endpoints), and nothing written."""

from __future__ import annotations

import pytest

from tests.integration.account_helpers import form_fields

CONTROL = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f"]
ALLOWED = ["\t", "\n", "\r"]


@pytest.mark.parametrize("char", CONTROL)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/signin"), ("POST", "/register"), ("POST", "/forgot"), ("GET", "/authorize"),
     ("POST", "/token"), ("GET", "/logout"), ("POST", "/consent")],
)  # fmt: skip
def test_control_characters_are_refused_everywhere(app, client, method, path, char):
    csrf = form_fields(client.get("/signin"), "csrf_token")["csrf_token"]
    data = {"csrf_token": csrf, "email": f"ada{char}@example.com", "client_id": f"x{char}"}
    resp = client.get(path, query_string=data) if method == "GET" else client.post(path, data=data)
    assert resp.status_code == 400, (path, resp.status_code)
    body = resp.get_data(as_text=True)
    assert "control character" in body


@pytest.mark.parametrize("char", ALLOWED)
def test_tab_and_line_breaks_are_ordinary_text(client, char):
    csrf = form_fields(client.get("/signin"), "csrf_token")["csrf_token"]
    resp = client.post("/signin", data={"csrf_token": csrf, "email": "ada@example.com",
                                        "password": f"a{char}b"})  # fmt: skip
    assert resp.status_code == 200  # an ordinary failed sign-in


def test_the_json_api_answers_in_json(client):
    resp = client.post("/token", data={"grant_type": "client_credentials\x00"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"
    resp = client.post("/connect/register", json={"client_name": "a\x00b"})
    assert resp.status_code == 400 and resp.json["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("phone", "uri"),
    [("877-577-5331", "tel:+18775775331"), ("+44 20 7946 0958", "tel:+442079460958"),
     ("(202) 555-0143 ext", "tel:+12025550143"), ("", ""), ("call us", "")],
)  # fmt: skip
def test_the_help_line_is_a_tel_uri(phone, uri):
    from idp.wording import tel_uri

    assert tel_uri(phone) == uri


def test_theme_css_carries_the_configured_colour(app, client):
    from dataclasses import replace

    svc = app.extensions["idp"]
    default = client.get("/theme.css")
    assert default.status_code == 200 and default.mimetype == "text/css"
    assert "#005ea2" in default.get_data(as_text=True)
    svc.settings = replace(svc.settings, ui=replace(svc.settings.ui, primary_color="#1a4480"))
    assert "#1a4480" in client.get("/theme.css").get_data(as_text=True)


def test_dates_are_written_in_words():
    import datetime as dt

    from idp.wording import long_date

    assert long_date(dt.date(2027, 1, 3)) == "January 3, 2027"
    assert long_date("2026-12-04") == "December 4, 2026"
    moment = dt.datetime(2026, 12, 4, 15, 5, tzinfo=dt.UTC)
    assert long_date(moment, with_time=True) == "December 4, 2026, 3:05 p.m. UTC"
    assert long_date(dt.datetime(2026, 12, 4, 0, 30, tzinfo=dt.UTC), with_time=True).endswith(
        "12:30 a.m. UTC"
    )
    assert long_date(None) == ""
    assert long_date(1796396700, with_time=True) == "December 4, 2026, 3:05 p.m. UTC"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 minute"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (900, "15 minutes"),
        (89 * 60, "89 minutes"),
        (90 * 60, "2 hours"),
        (24 * 3600, "24 hours"),
        (48 * 3600, "2 days"),
        (3 * 86400, "3 days"),
        (3 * 86400 + 1, "4 days"),
    ],
)
def test_lock_durations_are_in_the_unit_people_use(seconds, words):
    from idp.wording import duration_words

    assert duration_words(seconds) == words


def test_a_sign_in_page_names_the_application_that_asks(app, client):
    """Every page of a sign-in says which application it is for, with the logo (its
    origin allowed by the page's CSP) and the links the application registered."""
    from idp.oidc.clients import create_client

    with app.app_context():
        c, _secret = create_client(
            name="Connexion", redirect_uris=["https://rp.example.gov/cb"],
            logo_uri="https://cdn.example.gov/logo.png", policy_uri="https://rp.example.gov/privacy",
        )  # fmt: skip
        client_id = c.client_id
    resp = client.get("/authorize", query_string={
        "response_type": "code", "client_id": client_id, "scope": "openid",
        "redirect_uri": "https://rp.example.gov/cb", "state": "s", "nonce": "n",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
    })  # fmt: skip
    page = client.get(resp.headers["Location"])
    html = page.get_data(as_text=True)
    assert "<strong>Connexion</strong> uses" in html
    assert 'src="https://cdn.example.gov/logo.png"' in html
    assert 'href="https://rp.example.gov/privacy"' in html and "Terms of service" not in html
    assert (
        "img-src 'self' data: https://cdn.example.gov;" in page.headers["Content-Security-Policy"]
    )
    # Without a sign-in, no application is named and no other image origin is allowed.
    plain = client.get("/signin")
    assert "uses" not in plain.get_data(as_text=True).split("<main", 1)[1].split("</h1>")[0]
    assert "img-src 'self' data:;" in plain.headers["Content-Security-Policy"]


def test_a_service_logo_on_another_origin_is_allowed_by_the_csp(app, client):
    from dataclasses import replace

    svc = app.extensions["idp"]
    svc.settings = replace(
        svc.settings, ui=replace(svc.settings.ui, logo_url="https://cdn.example.gov/cms.svg")
    )
    page = client.get("/signin")
    assert 'src="https://cdn.example.gov/cms.svg"' in page.get_data(as_text=True)
    assert "https://cdn.example.gov" in page.headers["Content-Security-Policy"]
