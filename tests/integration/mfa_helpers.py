"""Helpers to walk the provider's second-factor pages like a browser would."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import struct
import time
from urllib.parse import urlsplit

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from clients.mockrp.rp import MockRPError
from clients.mockrp.transport import FlaskTransport, Response

ISSUER = "http://localhost"
CB = "https://rp.example.com/cb"


def totp_code(secret: str, step: int | None = None) -> str:
    """RFC 6238 with SHA-1, 6 digits, 30 s: an implementation independent of pyotp."""
    if step is None:
        step = int(time.time() // 30)
    key = base64.b32decode(secret.replace(" ", ""))
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**6:06d}"


def browsers(app, client_id: str, secret: str | None, redirect_uri: str = CB):
    """A factory of browsers for one client: each call returns a MockRP with its own
    cookie jar, talking to *app* through Flask's test client."""

    def new_browser() -> MockRP:
        return MockRP(ISSUER, client_id, redirect_uri, client_secret=secret,
                      transport=FlaskTransport(app.test_client()))  # fmt: skip

    return new_browser


def path_of(resp: Response) -> str:
    return urlsplit(resp.url).path


def walk(rp: MockRP, resp: Response, *, email: str, password: str, consent: str = "allow",
         max_steps: int = 15, passkey_offer: str | None = "skip") -> Response:  # fmt: skip
    """Follow redirects and fill sign-in and consent pages; stop at a second-factor or
    account page (returned) or at the redirect to the client (the 302 is returned).
    The passkey offer after a password sign-in is answered with *passkey_offer* ("Not
    now" by default; None stops there)."""
    for _ in range(max_steps):
        if 300 <= resp.status < 400:
            loc = resp.location or ""
            if loc.startswith(rp.redirect_uri):
                return resp
            resp = rp.transport.request("GET", loc)
            continue
        path = path_of(resp)
        if path == "/mfa/passkey/offer" and passkey_offer is not None and resp.status == 200:
            resp = rp.submit(resp, button=("choice", passkey_offer))
            continue
        if path.startswith(("/mfa/", "/account")):
            return resp
        forms = parse_forms(resp.text, resp.url)
        login = next((f for f in forms if "email" in f.fields and "password" in f.fields), None)
        if login is not None:
            login.fill(email=email, password=password)
            resp = rp.submit_form(login)
            continue
        decision = next((f for f in forms if any(b[0] == "decision" for b in f.buttons)), None)
        if decision is not None:
            resp = rp.submit_form(decision, button=("decision", consent))
            continue
        raise MockRPError(f"unexpected page {resp.status} {resp.url}: {resp.text[:300]}")
    raise MockRPError(f"gave up at {resp.url}")


def get(rp: MockRP, url: str) -> Response:
    if url.startswith("/"):
        url = ISSUER + url
    return rp.transport.request("GET", url)


def link(resp: Response, href_part: str) -> str:
    """The first link on the page whose href contains *href_part* (HTML-unescaped)."""
    for href in re.findall(r'href="([^"]+)"', resp.text):
        href = href.replace("&amp;", "&")
        if href_part in href:
            return href
    raise AssertionError(f"no link with {href_part!r} on {resp.url}")


def setup_secret(resp: Response) -> str:
    m = re.search(r'<code class="secret"[^>]*>([A-Z2-7 ]+)</code>', resp.text)
    assert m, f"no TOTP key on {resp.url}"
    return m.group(1).replace(" ", "")


def submit(rp: MockRP, resp: Response, fields: dict | None = None, button=None) -> Response:
    return rp.submit(resp, fields or {}, button=button)


def webauthn_options(rp: MockRP, resp: Response, purpose: str) -> str:
    """POST to the options endpoint with the page's CSRF token, as webauthn.js does."""
    form = next(f for f in parse_forms(resp.text, resp.url) if "credential" in f.fields)
    data = {"csrf_token": form.fields["csrf_token"]}
    r = rp.transport.request("POST", f"{ISSUER}/mfa/webauthn/options/{purpose}", data=data)
    assert r.status == 200, r.text
    return r.text


def submit_credential(rp: MockRP, resp: Response, credential: dict, **fields) -> Response:
    return rp.submit(resp, {"credential": json.dumps(credential), **fields})


def shift_session(app, rp: MockRP, seconds: int, *, keep: tuple[str, ...] = ()) -> None:
    """Move the browser session's sign-in times *seconds* into the past (every method
    but those in *keep*), as if they had passed that long ago."""
    from idp.security.crypto import hash_token

    svc = app.extensions["idp"]
    cookie = rp.transport.client.get_cookie(svc.settings.session.cookie_name)
    key = f"session:{hash_token(cookie.value)}"
    data = json.loads(svc.store.get(key))
    data["methods"] = {m: t if m in keep else t - seconds for m, t in data["methods"].items()}
    if not keep:
        data["auth_time"] -= seconds
    svc.store.set(key, json.dumps(data).encode(), 600)
