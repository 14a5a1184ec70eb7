"""The README's Authlib example, run as written against the provider over HTTP, on both
backends: Authlib's Flask client signs in with the code flow and PKCE, takes the
who-and-how from the ID token and the name and email from the userinfo endpoint (they
are not in the ID token: OIDC Core 5.4), exactly as the README says.

The example's code is taken from README.md (the Python block that registers the
client), with only its addresses and credentials replaced by this test's.
"""

from __future__ import annotations

import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import requests
from werkzeug.serving import make_server

from clients.mockrp.forms import parse_forms
from tests.conftest import PASSWORD, make_settings

README = Path(__file__).resolve().parents[2] / "README.md"


def _placeholder(environ, start_response):  # replaced once the apps are built
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"not ready"]


def readme_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if "authlib.integrations.flask_client" in b]
    assert len(found) == 1, "README.md has one Authlib example"
    return found[0]


@pytest.fixture
def servers():
    idp = make_server("127.0.0.1", 0, _placeholder, threaded=True)
    rp = make_server("127.0.0.1", 0, _placeholder, threaded=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (idp, rp)]
    for t in threads:
        t.start()
    yield idp, rp
    for s in (idp, rp):
        s.shutdown()
    for t in threads:
        t.join(timeout=5)
    for s in (idp, rp):
        s.server_close()


@pytest.fixture
def settings(tmp_path, keys_dir, servers):
    # The example's client is not first party: the consent page is part of the journey.
    # The passkey offer after a password sign-in is not (docs/ACCOUNTS.md).
    s = make_settings(tmp_path, keys_dir, webauthn={"passkey_offer_days": 0})
    return replace(s, issuer=f"http://127.0.0.1:{servers[0].server_port}")


def test_the_readme_authlib_example_signs_in(app, servers, make_user, make_client):
    from flask import jsonify, session

    idp_server, rp_server = servers
    issuer = f"http://127.0.0.1:{idp_server.server_port}"
    base = f"http://127.0.0.1:{rp_server.server_port}"
    make_user()
    client_id, secret = make_client(redirect_uris=[f"{base}/callback"],
                                    scope="openid profile email")  # fmt: skip

    code = readme_example()
    for old, new in (
        ("http://localhost:5000", issuer),
        ('"demo-rp-secret-for-local-development-only"', repr(secret)),
        ('"demo-rp"', repr(client_id)),
    ):
        assert old in code, old
        code = code.replace(old, new)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    example = namespace["app"]
    example.add_url_rule("/", "home", lambda: jsonify(session.get("user")))
    idp_server.app, rp_server.app = app, example

    browser = requests.Session()
    page = browser.get(f"{base}/login", timeout=10)
    assert page.url.startswith(f"{issuer}/"), page.url
    login = next(f for f in parse_forms(page.text, page.url) if f.has("email", "password"))
    login.fill(email="ada@example.com", password=PASSWORD)
    page = browser.post(login.action, data=login.submit_data(), timeout=10)
    assert "/consent" in page.url, page.url
    consent = next(f for f in parse_forms(page.text, page.url)
                   if any(name == "decision" for name, _ in f.buttons))  # fmt: skip
    home = browser.post(consent.action, data=consent.submit_data(("decision", "allow")),
                        timeout=10)  # fmt: skip

    assert home.status_code == 200 and home.url == f"{base}/", home.url
    user = home.json()
    # From the ID token: who signed in and how.
    assert user["iss"] == issuer and user["aud"] == client_id
    assert user["sub"] and user["auth_time"] and user["acr"] and user["amr"]
    # From the userinfo endpoint: the name and the email.
    assert (user["name"], user["email"]) == ("Ada Lovelace", "ada@example.com")
    # ... and from there only: the example copies name and email, not email_verified or
    # updated_at, so these would be here only if the ID token had carried them.
    assert "email_verified" not in user and "updated_at" not in user
