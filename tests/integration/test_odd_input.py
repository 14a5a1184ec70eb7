"""Odd characters where the code expected plain ones: never a 500.

Three classes of bug, each found by the endpoint fuzzer and each fixed in one place:

* ``str.isdigit()`` is true for "²" and "٣", which ``int()`` refuses: numbers are read
  with :func:`idp.security.text.ascii_int`;
* ``hmac.compare_digest`` raises ``TypeError`` on text with non-ASCII characters: secrets
  are compared with :func:`idp.security.crypto.equal`;
* Authlib raises ``ValueError`` when an error description it builds from a request
  value holds a character RFC 6749 forbids there (a quote, a backslash, non-ASCII):
  those characters are replaced (:func:`idp.oidc.server.safe_error_description`).
"""

from __future__ import annotations

import ast
import base64
from pathlib import Path

import pytest

from tests.integration.test_admin_access import people, settings, signed_in  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
CB = "https://rp.example.com/cb"


@pytest.fixture
def client_id(make_client):
    return make_client()[0]


def authorize(client, client_id: str, **params):
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": CB,
             "scope": "openid", "state": "s", "nonce": "n", **params}  # fmt: skip
    return client.post("/authorize", data=query)


@pytest.mark.parametrize(
    "params",
    [
        {"response_type": "ｘ́"},
        {"response_type": 'co"de'},
        {"prompt": "ｘ́"},
        {"prompt": 'x"\\'},
        {"max_age": "²"},
        {"max_age": "٣٠"},
        {"redirect_uri": "https://rp.example.com/ｃｂ"},
        {"redirect_uri": 'https://rp.example.com/"cb'},
        {"code_challenge_method": "ß", "code_challenge": "x" * 43},
    ],
)
def test_odd_authorization_parameters_are_refused_cleanly(client, client_id, params):
    resp = authorize(client, client_id, **params)
    assert resp.status_code in (302, 400), resp.status_code
    if resp.status_code == 302:
        assert "error=" in resp.location and "code=" not in resp.location


@pytest.mark.parametrize("grant_type", ["ｘ́", 'a"b', "authorization_code\\"])
def test_odd_grant_types_are_refused_cleanly(client, make_client, grant_type):
    client_id, secret = make_client()
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    resp = client.post("/token", data={"grant_type": grant_type},
                       headers={"Authorization": f"Basic {basic}"})  # fmt: skip
    assert resp.status_code == 400 and resp.json["error"] == "unsupported_grant_type"


@pytest.mark.parametrize("value", ["²", "٣", "1²"])
def test_unicode_digits_in_admin_parameters(app, people, value):  # noqa: F811
    admin = signed_in(app, people["admin"])
    assert admin.get(f"/admin/audit?before={value}").status_code == 200
    assert admin.get(f"/admin/audit?user={value}").status_code == 200
    assert admin.post("/admin/mfa/remind", {"sent_so_far": value}).status_code == 200


def test_unicode_digits_in_tokens_and_cookies(app, client, make_user):
    """Email links and device cookies carry numbers; a forged one is simply invalid."""
    from tests.integration.account_helpers import signin

    assert client.get("/verify/²3.abc.def").status_code == 400
    assert client.get("/reset/٣.abc.def").status_code == 400
    make_user()
    client.set_cookie("idp_device", "²1.nonce.٣.sig")
    assert signin(client, "ada@example.com", "a perfectly fine passphrase").status_code == 302


def test_a_deeply_nested_push_signature_is_refused(client):
    deep = base64.urlsafe_b64encode(b"[" * 1200).rstrip(b"=").decode()
    resp = client.get(
        "/push/v1/challenges", headers={"Authorization": f"Device {deep}.{deep}.AAAA"}
    )
    assert resp.status_code == 401


def _calls(name: str) -> list[str]:
    found = []
    for path in (ROOT / "idp").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == name
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_secrets_are_compared_in_one_place():
    """hmac.compare_digest only inside idp.security.crypto.equal (bytes, never text)."""
    assert _calls("compare_digest") == ["idp/security/crypto.py:" + _line("compare_digest")]


def test_digits_are_checked_in_one_place():
    """str.isdigit only inside idp.security.text (ASCII digits) and on ASCII-only text."""
    allowed = {"idp/security/text.py", "idp/security/email_address.py"}
    assert [c for c in _calls("isdigit") if c.split(":")[0] not in allowed] == []


def _line(name: str) -> str:
    text = (ROOT / "idp/security/crypto.py").read_text().splitlines()
    return str(next(i for i, line in enumerate(text, 1) if f"hmac.{name}(" in line))
