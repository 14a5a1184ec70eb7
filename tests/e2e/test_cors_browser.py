"""A browser application on another origin signs in with the code flow and PKCE, and calls
the token and userinfo endpoints with fetch(): Chromium enforces CORS, not the test.

Two static pages are served by plain ``http.server`` processes' worth of threads on
127.0.0.1, each on a port of its own (so each is an origin of its own):

- ``app`` (allowed): its origin is registered for a public client (``idp clients create
  --public --allowed-origin``). ``start.html`` makes a PKCE verifier and challenge with
  WebCrypto and goes to the provider's authorization endpoint; ``callback.html`` checks
  the state, POSTs the code and the verifier to /token with fetch() (a simple request),
  then GETs /userinfo with ``Authorization: Bearer`` (which needs a preflight), and
  writes what it got into the page.
- ``other`` (not allowed): the same calls from an origin no client registered; Chromium
  refuses to hand the answers to the page (fetch() rejects with a TypeError).
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .conftest import BrowserLog, LiveServer, _run_cli, new_user, run_provider

pytestmark = pytest.mark.browser

START = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>App</title></head>
<body><h1>App</h1><p id="status">starting</p>
<script>
const CONFIG = __CONFIG__;
const b64url = (bytes) => btoa(String.fromCharCode(...new Uint8Array(bytes)))
  .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
(async () => {
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  const challenge = b64url(await crypto.subtle.digest("SHA-256",
    new TextEncoder().encode(verifier)));
  sessionStorage.setItem("pkce", JSON.stringify({verifier, state}));
  const query = new URLSearchParams({
    response_type: "code", client_id: CONFIG.client_id, redirect_uri: CONFIG.redirect_uri,
    scope: "openid email", state, nonce: state, code_challenge: challenge,
    code_challenge_method: "S256"});
  location.assign(`${CONFIG.issuer}/authorize?${query}`);
})();
</script></body></html>
"""

CALLBACK = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Callback</title></head>
<body><h1>Callback</h1><pre id="result">working</pre>
<script>
const CONFIG = __CONFIG__;
const show = (value) => { document.getElementById("result").textContent = JSON.stringify(value); };
(async () => {
  const params = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem("pkce") || "{}");
  if (params.get("state") !== saved.state) { show({error: "state mismatch"}); return; }
  const result = {};
  try {
    const resp = await fetch(`${CONFIG.issuer}/token`, {method: "POST", body: new URLSearchParams({
      grant_type: "authorization_code", code: params.get("code"),
      redirect_uri: CONFIG.redirect_uri, client_id: CONFIG.client_id,
      code_verifier: saved.verifier})});
    result.token_status = resp.status;
    const tokens = await resp.json();
    result.token_type = tokens.token_type;
    result.has_id_token = Boolean(tokens.id_token);
    const info = await fetch(`${CONFIG.issuer}/userinfo`,
      {headers: {Authorization: `Bearer ${tokens.access_token}`}});
    result.userinfo_status = info.status;
    result.userinfo = await info.json();
  } catch (e) { result.error = `${e.name}: ${e.message}`; }
  show(result);
})();
</script></body></html>
"""

FOREIGN = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Other</title></head>
<body><h1>Other</h1><pre id="result">working</pre>
<script>
const CONFIG = __CONFIG__;
(async () => {
  const out = {};
  for (const [name, run] of [
    ["token", () => fetch(`${CONFIG.issuer}/token`, {method: "POST", body: new URLSearchParams({
      grant_type: "authorization_code", code: "x", redirect_uri: CONFIG.redirect_uri,
      client_id: CONFIG.client_id, code_verifier: "y".repeat(43)})})],
    ["userinfo", () => fetch(`${CONFIG.issuer}/userinfo`,
      {headers: {Authorization: "Bearer not-a-token"}})],
    ["jwks", () => fetch(`${CONFIG.issuer}/jwks`)],
  ]) {
    try { const resp = await run(); out[name] = `read ${resp.status}`; }
    catch (e) { out[name] = `refused ${e.name}`; }
  }
  document.getElementById("result").textContent = JSON.stringify(out);
})();
</script></body></html>
"""


class StaticSite:
    """Files from a directory, over HTTP on 127.0.0.1, in a thread."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _write(directory: Path, name: str, template: str, config: dict) -> None:
    (directory / name).write_text(template.replace("__CONFIG__", json.dumps(config)))


@pytest.fixture(scope="module")
def sites(tmp_path_factory, keys_dir) -> Iterator[tuple[LiveServer, StaticSite, StaticSite, str]]:
    app_dir, other_dir = tmp_path_factory.mktemp("app"), tmp_path_factory.mktemp("other")
    app, other = StaticSite(app_dir), StaticSite(other_dir)
    try:
        with run_provider(tmp_path_factory, keys_dir, {"IDP_MFA_REQUIRED": "false"}) as live:
            client = json.loads(_run_cli(
                live.env, live.workdir, "clients", "create", "--name", "Browser app",
                "--public", "--redirect-uri", f"{app.origin}/callback.html",
                "--allowed-origin", app.origin, "--scope", "openid email",
                "--first-party", "--json",
            ))  # fmt: skip
            assert client["allowed_origins"] == [app.origin]
            config = {"issuer": live.issuer, "client_id": client["client_id"],
                      "redirect_uri": f"{app.origin}/callback.html"}  # fmt: skip
            _write(app_dir, "start.html", START, config)
            _write(app_dir, "callback.html", CALLBACK, config)
            _write(other_dir, "other.html", FOREIGN, config)
            yield live, app, other, client["client_id"]
    finally:
        app.stop()
        other.stop()


def test_an_allowed_origin_completes_code_pkce_token_and_userinfo(
    browser_page: Page, sites, browser_log: BrowserLog
):
    live, app, _other, _client_id = sites
    user = new_user(live)
    page = browser_page
    page.goto(f"{app.origin}/start.html")
    expect(page).to_have_url(re.compile(rf"^{re.escape(live.issuer)}/signin\?"))
    page.get_by_label("Email address").fill(user.email)
    page.get_by_label("Password").fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(rf"^{re.escape(app.origin)}/callback\.html\?code="))
    result = page.locator("#result")
    expect(result).not_to_have_text("working", timeout=10_000)
    data = json.loads(result.inner_text())
    assert data.get("error") is None, data
    assert data["token_status"] == 200 and data["token_type"] == "Bearer"
    assert data["has_id_token"] is True
    assert data["userinfo_status"] == 200
    assert data["userinfo"]["email"] == user.email
    assert browser_log.page_errors == []
    assert [m for m in browser_log.console_errors if "CORS" in m["text"]] == []


def test_a_page_on_another_origin_is_refused_by_the_browser(
    browser_page: Page, sites, browser_log: BrowserLog
):
    _live, _app, other, _client_id = sites
    page = browser_page
    page.goto(f"{other.origin}/other.html")
    result = page.locator("#result")
    expect(result).not_to_have_text("working", timeout=10_000)
    data = json.loads(result.inner_text())
    # The token request reached the provider (a simple request needs no preflight), but
    # its answer names no origin, so the page may not read it; userinfo's preflight is
    # refused, so the request itself is never sent. The key set is public.
    assert data == {"token": "refused TypeError", "userinfo": "refused TypeError",
                    "jwks": "read 200"}  # fmt: skip
    assert any("CORS" in m["text"] for m in browser_log.console_errors)
