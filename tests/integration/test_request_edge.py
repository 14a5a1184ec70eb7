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
