"""Helpers for push approval tests: the companion app against an in-process provider,
and the browser side walked with the mock relying party."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import urlsplit

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from clients.mockrp.transport import Response
from clients.verify import api as verify_api
from tests.integration.mfa_helpers import get, link, path_of, submit


def app_transport(app):
    """A :data:`clients.verify.api.Transport` over Flask's test client (no cookies)."""
    client = app.test_client()

    def send(method: str, url: str, headers: dict[str, str], timeout: float):
        parts = urlsplit(url)
        resp = client.open(
            parts.path,
            method=method,
            base_url=f"{parts.scheme}://{parts.netloc}",
            query_string=parts.query,
            headers=headers,
        )
        return resp.status_code, resp.get_json(silent=True) or {}

    return send


def enroll_uri(page: Response) -> str:
    m = re.search(r'<code class="secret" id="enroll-uri">([^<]+)</code>', page.text)
    assert m, f"no enrollment link on {page.url}"
    return html.unescape(m.group(1))


def number_on(page: Response) -> int:
    m = re.search(r'<strong id="push-number">(\d+)</strong>', page.text)
    assert m, f"no number on {page.url}: {page.text[:2000]}"
    return int(m.group(1))


def continue_form(page: Response):
    forms = parse_forms(page.text, page.url)
    return next(
        f for f in forms if "data-push-wait" in f.attrs or "data-push-autosubmit" in f.attrs
    )


def enroll_push(app, rp: MockRP, setup_page: Response, *, name: str = "Pixel", alg: str = "ES256"):
    """From the set-up list: open push set-up, enroll the app, finish in the browser.
    Returns ``(app account, response after finishing)``."""
    page = get(rp, link(setup_page, "/mfa/setup/push"))
    assert page.status == 200, page.text
    account = verify_api.enroll(enroll_uri(page), name=name, alg=alg, transport=app_transport(app))
    resp = submit(rp, page)
    return account, resp


def send_push(rp: MockRP, challenge_page: Response) -> Response:
    """Press "Send request" and follow to the page showing the number."""
    resp = submit(rp, challenge_page, button=("action", "send"))
    assert resp.status == 302, resp.text
    return rp.transport.request("GET", resp.location)


def open_push_challenge(rp: MockRP, page: Response) -> Response:
    """From any challenge page, open the push variant."""
    if 'name="kind" value="push"' in page.text:
        return page
    return get(rp, link(page, "kind=push"))


def status(rp: MockRP, **params: Any) -> dict:
    r = rp.transport.request("GET", "http://localhost/mfa/push/status", params=params)
    return r.json()


__all__ = ["continue_form", "enroll_push", "number_on", "path_of", "send_push", "status"]
