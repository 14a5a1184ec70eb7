"""Cookies behind https carry the ``__Host-`` prefix (RFC 6265bis 4.1.3.2): the browser
keeps them only from this very host, Secure, ``Path=/``, without ``Domain``, so a
sibling subdomain or a plain-http page can neither plant nor overwrite a session,
browser or device cookie."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import form_fields

HTTPS = "https://id.example.gov"


@pytest.fixture
def settings(tmp_path, keys_dir):
    return replace(make_settings(tmp_path, keys_dir), issuer=HTTPS)


def set_cookies(resp) -> dict[str, str]:
    out = {}
    for header in resp.headers.getlist("Set-Cookie"):
        name = header.split("=", 1)[0]
        out[name] = header
    return out


def test_every_cookie_has_the_host_prefix_over_https(app, make_user):
    make_user()
    client = app.test_client()
    page = client.get("/signin", base_url=HTTPS)
    cookies = set_cookies(page)
    assert set(cookies) == {"__Host-idp_browser"}
    data = form_fields(page, "csrf_token")
    data.update(email="ada@example.com", password=PASSWORD)
    resp = client.post("/signin", data=data, base_url=HTTPS)
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
    cookies = set_cookies(resp)
    assert set(cookies) == {"__Host-idp_session", "__Host-idp_device"}
    for header in cookies.values():
        attrs = [a.strip() for a in header.split(";")]
        assert "Secure" in attrs and "Path=/" in attrs and "HttpOnly" in attrs
        assert not any(a.lower().startswith("domain=") for a in attrs)
    # The prefixed cookies are the ones read back: the session works.
    home = client.get("/", base_url=HTTPS)
    assert "ada@example.com" in home.get_data(as_text=True)


def test_unprefixed_cookies_are_ignored_over_https(app, make_user):
    """A cookie planted without the prefix (by a subdomain, or over http) is not read."""
    make_user()
    victim = app.test_client()
    page = victim.get("/signin", base_url=HTTPS)
    data = form_fields(page, "csrf_token")
    data.update(email="ada@example.com", password=PASSWORD)
    victim.post("/signin", data=data, base_url=HTTPS)
    session = victim.get_cookie("__Host-idp_session", domain="id.example.gov")
    planted = app.test_client()
    planted.set_cookie("idp_session", session.value, domain="id.example.gov")
    home = planted.get("/", base_url=HTTPS)
    assert "ada@example.com" not in home.get_data(as_text=True)
