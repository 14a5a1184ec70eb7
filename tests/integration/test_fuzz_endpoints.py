"""Fuzzing of every route, forms included: no request may end in a 5xx.

tests/system/test_fuzz.py fuzzes the JSON endpoints against docs/openapi.yaml; this
module covers everything else too. The routes come from ``app.url_map``, so a route
added later is fuzzed without touching this file. Each method of each route gets:

- path arguments with odd values (NUL, invalid UTF-8, CR/LF, fullwidth letters, very
  long, out-of-range integers), besides real values where the argument name is known;
- query strings and form fields (urlencoded and multipart) from a fixed table of
  known-nasty values: NUL, CR/LF, strings just above and far above
  ``[security] max_parameter_length``, invalid UTF-8 percent-escapes (``%ff``),
  NFKC-sensitive Unicode, repeated keys, JSON-looking values (``[[[[…``,
  ``{"a":{"a":…}}``), numbers out of range;
- JSON bodies (deeply nested, huge, wrong types, not JSON), wrong content types,
  odd credentials (Bearer, Basic, the companion app's ``Device`` signatures) and, where
  a client assertion is read, JWT-shaped assertions with odd headers and claims;
- then requests drawn by hypothesis (bounded and derandomized, so every run sends the
  same requests) that mix all of the above.

Three identities, each with a valid CSRF token (so forms get past the CSRF check and
reach their validation): anonymous, a user signed in through the sign-in form, and an
administrator with a recent second factor. A route gets the whole table as the least
privileged identity that gets past its sign-in and role checks (and signed in too when
an anonymous browser gets through, since a session changes what /authorize or /logout
do), and a short table as the others. Field names come from the forms on the route's
pages, from the parameters its view function reads and, for the protocol endpoints,
the OAuth/OIDC parameter names; their values start from the page's hidden fields or a
valid protocol request, so that one odd field at a time reaches the later checks.

Nothing here causes a 503 on purpose, so any 5xx fails the test; the report names the
request and the server's traceback.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import itertools
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from clients.mockrp import MockRP
from clients.mockrp.forms import parse_forms
from clients.mockrp.transport import FlaskTransport
from tests.conftest import PASSWORD, make_settings
from tests.integration.account_helpers import form_fields, signin
from tests.integration.test_admin_access import signed_in

IDENTITIES = ("anonymous", "user", "admin")
USER_EMAIL = "fuzz.user@example.com"
ADMIN_EMAIL = "fuzz.admin@example.com"
VICTIM_EMAIL = "fuzz.victim@example.com"
RP_CB = "https://rp.example.com/cb"
RP_BYE = "https://rp.example.com/bye"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
METHODS_WITH_BODY = ("POST", "PUT", "PATCH", "DELETE")
# Hypothesis examples per identity (each one request, in a fresh browser).
EXAMPLES = 150

# Parameter names of the protocol endpoints, which Authlib reads (not the views).
OAUTH_NAMES = (
    "client_id", "client_secret", "redirect_uri", "response_type", "scope", "state",
    "nonce", "code", "code_verifier", "code_challenge", "code_challenge_method",
    "grant_type", "refresh_token", "client_assertion", "client_assertion_type", "claims",
    "prompt", "max_age", "acr_values", "id_token_hint", "login_hint", "token",
    "token_type_hint", "post_logout_redirect_uri", "access_token", "request",
    "request_uri", "response_mode", "ui_locales",
)  # fmt: skip
# Names every request may carry besides the route's own.
GENERIC_NAMES = ("next", "txn", "action", "q", "page")

# Real values for path arguments, by argument name (other names get odd values only).
REAL_PATH_VALUES = {
    "kind": ["totp", "webauthn", "recovery", "push", "email", "sms", "voice"],
    "purpose": ["register", "authenticate"],
    "filename": ["idp.css"],
}
ODD_STRING_PATH_VALUES = [
    "x", "%00", "a%00b", "%ff", "%ff%fe", "%C0%80", "%ED%A0%80", "a%0d%0aX-Injected:%201",
    "%EF%BC%A1%EF%BD%84%EF%BD%8D%EF%BD%89%EF%BD%8E", "e%CC%81", "%E2%84%AA", "..",
    "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "x" * 3000, "%5B" * 1200, "null", "-1", "%25ff",
    "%20", "%E2%80%AE",
]  # fmt: skip
ODD_INT_PATH_VALUES = ["0", "2147483647", "2147483648", "9223372036854775807",
                       "9223372036854775808", "1" + "0" * 40]  # fmt: skip
ODD_PATH_PATH_VALUES = ["../../etc/passwd", "%00", "idp.css%00.png", "a/" * 200, "%ff",
                        "static/../../idp/app.py"]  # fmt: skip

_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_READS = re.compile(
    r"(?:request\.(?:args|form|values)|\bform|\bdata|\bparams)"
    r"""\.get(?:list)?\(\s*["']([\w.-]+)["']"""
)


def nasty_values(limit: int) -> list[str]:
    """The fixed table of field values (query strings and form fields)."""
    return [
        "", "\x00", "a\x00b", "\r\n", "x\r\nSet-Cookie: injected=1", "\t",
        "x" * (limit + 1), "x" * (limit * 10),
        "ａｄｍｉｎ＠ｅｘａｍｐｌｅ．ｃｏｍ", "e\u0301" * 40, "\ufb01", "\u2126", "²", "٣",
        "\ufeff\u202e", "\u00a0\u2028", "😀" * 50,
        "[" * (limit - 1), "[" * 33 + "]" * 33, '{"a":' * 300 + "1" + "}" * 300,
        '{"id_token":{"acr":{"essential":true,"values":["urn:idp:acr:mfa"]}}}',
        "[1, 2]", '{"a": NaN}', "-1", "99999999999999999999999999", "1e309", "9" * 2000,
        "%s%s%n{0}{{7*7}}", "' OR 1=1 --\\", "%ff", "javascript:alert(1)", "//evil.example",
        "a" * 64 + "@" + "b" * 190 + ".com",
    ]  # fmt: skip


def single_values(limit: int) -> list[str]:
    """Values tried in one field at a time (the others valid or left as the page had them)."""
    return ["\x00", "[" * 1200, "x" * (limit + 1), "ｘ\u0301", "²"]


# Raw query strings / urlencoded bodies: percent-escapes a client library would not send.
RAW_ESCAPES = ["%ff", "%ff%fe", "%", "%zz", "%00", "%C0%80", "%ED%A0%80", "%F4%90%80%80",
               "%E2%80%AE", "%0d%0a", "%u0041", "+%2B+"]  # fmt: skip


def _b64(data: Any) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def odd_assertions(client_id: str) -> list[str]:
    """JWT-shaped client assertions with odd headers and claims (unsigned: the server
    must refuse each as invalid_client, whatever it finds odd first)."""
    now = int(time.time())
    good = {"iss": client_id, "sub": client_id, "aud": "http://localhost/token",
            "jti": "j", "iat": now, "exp": now + 60}  # fmt: skip
    headers = [{"alg": "ES256"}, {"alg": "ＥＳ２５６"}, {"alg": "ES256", "kid": "\r\nｋ"},
               {"alg": "ES256", "crit": ["e\u0301"]}, {"alg": "none"}, {"alg": 'a"\\'},
               {"alg": ["ES256"]}, {"alg": "HS256", "kid": None}]  # fmt: skip
    claims = [good, {**good, "exp": now + 10**10}, {**good, "iat": None}, {**good, "sub": 1},
              {**good, "aud": "ａｕｄ"}, {**good, "nbf": "ｘ"}, {**good, "jti": {"a": [1]}},
              {**good, "iss": "x"}, {**good, "exp": 1e400}]  # fmt: skip
    odd = [f"{_b64(h)}.{_b64(c)}.AAAA" for h in headers for c in claims[:2]]
    odd += [f"{_b64(headers[0])}.{_b64(c)}.AAAA" for c in claims[2:]]
    odd += [f"{_b64(b'[' * 1200)}.{_b64(good)}.AAAA", f"{_b64(headers[0])}.{_b64(b'[' * 1200)}.A",
            "a.b", "a.b.c.d.e", "\x00.\x00.\x00", "ｅｙＪ.ｅｙＪ.x"]  # fmt: skip
    return odd


def _nested_list(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def json_bodies() -> list[bytes]:
    """The fixed table of JSON bodies (sent as application/json)."""
    return [
        b"[" * 30_000,
        b"[" * 3000 + b"]" * 3000,
        b'{"a":' * 2000 + b"1" + b"}" * 2000,
        b"[" * 100_000,  # also more than MAX_CONTENT_LENGTH
        json.dumps(_nested_list(33)).encode(),
        json.dumps({"a": "x" * 60_000}).encode(),
        b"[1, 2]", b'"string"', b"null", b"", b"{not json", b"\xff\xfe\x00junk",
        b'{"a": NaN, "b": Infinity}', b'{"a": 1' + b"0" * 5000 + b"}",
        '{"ｃｌｉｅｎｔ＿ｎａｍｅ": "x", "a": "\\u0000\\ud800", "a": 2}'.encode(),
    ]  # fmt: skip


def odd_credentials() -> list[dict[str, str]]:
    """Odd Authorization headers (and cookies): bearer tokens, Basic credentials and the
    companion app's device signatures (``Device <jws>``) that are not what they claim."""
    deep = _b64(b"[" * 1200)
    jws_header = _b64({"alg": "ES256", "typ": "idp-push+jwt", "kid": "\u0301ｋ"})
    return [
        {"Authorization": "Bearer " + "[" * 1200},
        {"Authorization": "Bearer ｅｙＪ\u0301.x.y"},
        {"Authorization": "Basic " + _b64(b"\xff\x00:\xfe")},
        {"Authorization": "Basic " + _b64("ｃｌｉｅｎｔ:[[[".encode())},
        {"Authorization": "Basic %%%"},
        {"Authorization": f"Device {deep}.{deep}.AAAA"},
        {"Authorization": f"Device {jws_header}.{_b64({'a': 'b'})}.AAAA"},
        {"Authorization": "Device " + "A" * 9000},
        {"Authorization": "Device ..", "Cookie": "idp_browser=\u0301; idp_session=[[["},
    ]


WRONG_CONTENT_TYPES = [
    ("text/plain", b"grant_type=client_credentials&email=a@b"),
    ("application/xml", b"<?xml version='1.0'?><!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>"),
    ("application/octet-stream", bytes(range(256))),
    ("application/json; charset=utf-16", '{"a": "b"}'.encode("utf-16")),
    ("application/merge-patch+json", b'{"a": ' * 2000),
    ("application/x-www-form-urlencoded; charset=shift_jis", "a=ｱ".encode("shift_jis")),
    ("application/x-www-form-urlencoded", b"\xff\xfe\x00=\x00&%=%&" + b"a=1&" * 3000),
    ("multipart/form-data", b"--x\r\nContent-Disposition: form-data; name=a\r\n\r\nb\r\n--x--"),
    ("multipart/form-data; boundary=x", b"--x\r\nnot a part header\r\n\r\n--x"),
    ("multipart/form-data; boundary=", b"--\r\n"),
    ("multipart/mixed; boundary=x", b"--x--"),
    ("", b"a=1"),
    ("text/html\x7f", b"a"),
    ("application/x-www-form-urlencoded", b"=" * 3000),
]  # fmt: skip


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def settings(tmp_path, keys_dir):
    # Sign-in limits out of the way, so /signin and the account forms reach their
    # validation instead of answering 429 after a few attempts.
    from idp.config import LoginSettings

    limits = {f.name: 100_000 for f in dataclasses.fields(LoginSettings)
              if f.name.endswith("per_minute")}  # fmt: skip
    return make_settings(tmp_path, keys_dir, login=limits, admin={"mfa_max_age": 900})


@dataclass
class Failure:
    identity: str
    method: str
    url: str
    request: str
    status: int
    body: str
    traceback: str

    def __str__(self) -> str:
        return (
            f"[{self.identity}] {self.method} {self.url[:300]} -> {self.status}\n"
            f"  request: {self.request[:400]}\n  response: {self.body[:300]}\n"
            f"{self.traceback[-3000:]}"
        )


class _Tracebacks(logging.Handler):
    """Keeps the tracebacks the provider logs (``unhandled error``) for the report."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def take(self) -> str:
        text = "\n".join(
            logging.Formatter().format(r) for r in self.records if r.exc_info or r.exc_text
        )
        self.records.clear()
        return text


@dataclass
class Browser:
    identity: str
    http: Any
    csrf: str


@dataclass
class Fuzzer:
    """Sends requests, reports every 5xx with the request and the traceback."""

    app: Any
    limit: int
    user_id: int
    admin_id: int
    victim_id: int
    client_id: str
    client_secret: str
    jwt_client_id: str
    victim_client_id: str
    access_token: str  # the signed-in user's, for the userinfo endpoint
    initial_access_token: str  # for dynamic client registration (RFC 7591 3)
    tracebacks: _Tracebacks
    failures: list[Failure] = field(default_factory=list)
    sent: Counter = field(default_factory=Counter)
    past_csrf: Counter = field(default_factory=Counter)

    # -- identities ----------------------------------------------------------------------

    def reset_accounts(self) -> None:
        """Undo what fuzzing may have done to the accounts (failure counters, locks)."""
        from idp.extensions import db
        from idp.models import User

        with self.app.app_context():
            for uid in (self.user_id, self.admin_id, self.victim_id):
                user = db.session.get(User, uid)
                user.status, user.failed_logins, user.locked_until = "active", 0, None
                user.mfa_failures, user.mfa_locked_until = 0, None
                if hasattr(user, "admin_locked_until"):
                    user.admin_locked_until = None
            db.session.commit()

    def browser(self, identity: str) -> Browser:
        """A fresh browser (a logout or a lock in one request does not spill over), signed
        in through the sign-in form (the user) or with a recent second factor (the
        administrator), with the CSRF token of its pages."""
        self.reset_accounts()
        if identity == "admin":
            staff = signed_in(self.app, self.admin_id)
            assert staff.get("/admin/").status_code == 200
            return Browser(identity, staff.http, staff.csrf)
        http = self.app.test_client()
        csrf = form_fields(http.get("/signin"), "csrf_token")["csrf_token"]
        if identity == "user":
            resp = signin(http, USER_EMAIL, PASSWORD)
            assert resp.status_code == 302, resp.get_data(as_text=True)[:300]
            page = http.get("/account/security")
            assert page.status_code == 200, (page.status_code, page.headers.get("Location"))
        return Browser(identity, http, csrf)

    def quick_browser(self, identity: str) -> Browser:
        """A fresh browser without a request: the session (password only for the user)
        comes straight from the session manager, as the sign-in form makes it."""
        if identity == "anonymous":
            staff = signed_in(self.app, None)
        elif identity == "user":
            staff = signed_in(self.app, self.user_id, factor=None)
        else:
            staff = signed_in(self.app, self.admin_id)
        return Browser(identity, staff.http, staff.csrf)

    # -- sending ---------------------------------------------------------------------------

    def send(self, browser: Browser, route: Route, path: str, **kw: Any) -> None:
        """Send one request to *route* (with the credentials it needs) and record it."""
        method = route.method
        kw = {"headers": route.headers, **kw}
        self.tracebacks.take()
        try:
            resp = browser.http.open(path, method=method, **kw)
        except Exception as exc:  # the provider must answer; a crash is a failure too
            self._fail(browser, method, path, kw, 0, repr(exc), self.tracebacks.take())
            return
        endpoint = self._endpoint(method, path)
        self.sent[(browser.identity, endpoint, method)] += 1
        body = resp.get_data(as_text=True)
        if method in METHODS_WITH_BODY and "This form has expired" not in body:
            self.past_csrf[(browser.identity, endpoint)] += 1
        if resp.status_code >= 500:
            self._fail(browser, method, path, kw, resp.status_code, body, self.tracebacks.take())

    def _endpoint(self, method: str, path: str) -> str:
        adapter = self.app.url_map.bind("localhost")
        try:
            return adapter.match(path.split("?", 1)[0], method=method)[0]
        except Exception:
            return "(unmatched)"

    def _fail(self, browser, method, path, kw, status, body, tb) -> None:
        shown = {k: (v if not isinstance(v, bytes | str) else v[:200]) for k, v in kw.items()}
        qs = kw.get("query_string")
        url = f"{path}?{qs}" if qs else path
        self.failures.append(
            Failure(browser.identity, method, url, repr(shown), status, body, tb or "(no log)")
        )


# -- discovery ---------------------------------------------------------------------------


@dataclass
class Route:
    rule: str
    endpoint: str
    method: str
    paths: list[str]  # the rule with real argument values first, then odd ones
    real_paths: int  # how many of paths have real argument values (at least 1)
    names: list[str]  # the route's own field names: its forms, its view's reads
    form_names: list[str]  # the names its pages' forms have
    extra_names: list[str]  # names it may read too (protocol and generic names)
    defaults: dict[str, str]  # valid values: hidden fields, a valid protocol request
    headers: dict[str, str] = field(default_factory=dict)  # credentials the route needs
    full_table: set[str] = field(default_factory=set)  # identities that get every case


def _path_values(converter: str | None, name: str, real: dict[str, list[str]]) -> list[str]:
    known = real.get(name, [])
    if converter == "int":
        return known + ODD_INT_PATH_VALUES
    if converter == "path":
        return known + ODD_PATH_PATH_VALUES
    return known + ODD_STRING_PATH_VALUES


def _paths(rule: str, real: dict[str, list[str]]) -> tuple[list[str], int]:
    """The rule with its arguments filled (real values first), and how many are real."""
    arguments = list(_ARGUMENT.finditer(rule))
    if not arguments:
        return [rule], 1
    choices = [_path_values(m["converter"], m["name"], real) for m in arguments]
    real_count = 1
    for m in arguments:
        real_count *= len(real.get(m["name"], []))
    paths = []
    for combo in itertools.islice(itertools.product(*choices), 60):
        path, end = [], 0
        for m, value in zip(arguments, combo, strict=True):
            path += [rule[end : m.start()], value]
            end = m.end()
        paths.append("".join(path) + rule[end:])
    return paths, max(1, real_count)


def _view_reads(app, endpoint: str) -> set[str]:
    """Parameter names the view function reads itself (request.form.get("x") ...)."""
    view = app.view_functions.get(endpoint)
    try:
        source = inspect.getsource(inspect.unwrap(view))
    except (OSError, TypeError):
        return set()
    return set(_READS.findall(source))


def protocol_requests(fuzzer: Fuzzer) -> dict[str, dict[str, str]]:
    """A valid request for the protocol endpoints (by endpoint name), so that a single
    odd parameter reaches the checks after the client and redirect URI."""
    client = {"client_id": fuzzer.client_id, "client_secret": fuzzer.client_secret}
    return {
        "oidc.authorize": {
            "response_type": "code", "client_id": fuzzer.client_id, "redirect_uri": RP_CB,
            "scope": "openid profile", "state": "s", "nonce": "n", "prompt": "login",
            "max_age": "300", "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "code_challenge_method": "S256", "acr_values": "urn:idp:acr:mfa",
        },
        "oidc.token": {"grant_type": "authorization_code", "code": "c", "redirect_uri": RP_CB,
                       "code_verifier": "v" * 43, **client},
        "oidc.introspect": {"token": "t", "token_type_hint": "access_token", **client},
        "oidc.revoke": {"token": "t", "token_type_hint": "refresh_token", **client},
        "oidc.logout": {"client_id": fuzzer.client_id, "state": "s",
                        "post_logout_redirect_uri": RP_BYE},
    }  # fmt: skip


def discover(fuzzer: Fuzzer) -> list[Route]:
    """Every (rule, method) of the app, with field names learnt from its pages."""
    app = fuzzer.app
    forms: dict[str, tuple[set[str], dict[str, str]]] = {}
    adapter = app.url_map.bind("localhost")
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint))
    # The admin pages edit, disable and delete what they are given: a victim user and
    # client, never the accounts and the clients the fuzzing signs in and talks with.
    real = {**REAL_PATH_VALUES, "client_id": [fuzzer.victim_client_id],
            "user_id": [str(fuzzer.victim_id)]}  # fmt: skip
    # The forms on every page, as each identity sees them (GET on every route).
    for identity in IDENTITIES:
        browser = fuzzer.browser(identity)
        for rule in rules:
            if "GET" not in rule.methods:
                continue
            resp = browser.http.get(_paths(rule.rule, real)[0][0])
            if resp.mimetype != "text/html":
                continue
            for form in parse_forms(resp.get_data(as_text=True), "http://localhost/"):
                try:
                    endpoint = adapter.match(
                        form.action.replace("http://localhost", "").split("?")[0] or "/",
                        method=form.method.upper(),
                    )[0]
                except Exception:
                    continue
                names, defaults = forms.setdefault(endpoint, (set(), {}))
                names.update(form.names | set(form.fields) | {n for n, _ in form.buttons})
                for name, value in form.fields.items():
                    if name != "csrf_token":
                        defaults.setdefault(name, value)
    protocol = protocol_requests(fuzzer)
    credentials = {
        "oidc.userinfo": {"Authorization": f"Bearer {fuzzer.access_token}"},
        "registration.register": {"Authorization": f"Bearer {fuzzer.initial_access_token}"},
    }
    routes = []
    for rule in rules:
        page_names, page_defaults = forms.get(rule.endpoint, (set(), {}))
        defaults = {**page_defaults, **protocol.get(rule.endpoint, {})}
        own = (set(page_names) | _view_reads(app, rule.endpoint) | set(defaults)) - {"csrf_token"}
        # The protocol endpoints (those with a valid request above) may read any OAuth
        # parameter (Authlib reads them, not the view).
        extra = set(GENERIC_NAMES) | (set(OAUTH_NAMES) if rule.endpoint in protocol else set())
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths, real_paths = _paths(rule.rule, real)
            route = Route(
                rule=rule.rule,
                endpoint=rule.endpoint,
                method=method,
                paths=paths,
                real_paths=real_paths,
                names=sorted(own),
                form_names=sorted(page_names),
                extra_names=sorted(extra - own),
                defaults=defaults,
                headers=credentials.get(rule.endpoint, {}),
            )
            routes.append(route)
    for route in routes:
        reached = [i for i in IDENTITIES if _reaches(fuzzer, route, i)]
        # The whole table as the least privileged identity that gets past the sign-in
        # checks, and signed in as well where an anonymous browser gets through (a
        # session changes what /authorize, /signin or /logout do); the others get the
        # short table.
        if "anonymous" in reached:
            route.full_table = {"anonymous", "user"}
        else:
            route.full_table = {reached[0] if reached else "admin"}
    return routes


def _reaches(fuzzer: Fuzzer, route: Route, identity: str) -> bool:
    """Whether *identity* gets past the route's sign-in and role checks: anything but a
    401/403 or a redirect to sign in (or to the admin step-up). A redirect to sign in
    that carries a transaction (``txn``) is the authorization endpoint accepting the
    request, so that counts as reaching it."""
    browser = fuzzer.browser(identity)
    kw = {"data": {**route.defaults, "csrf_token": browser.csrf}}
    resp = browser.http.open(route.paths[0], method=route.method, headers=route.headers,
                             **(kw if route.method in METHODS_WITH_BODY else {}))  # fmt: skip
    location = urlsplit(resp.headers.get("Location", ""))
    turned_away = location.path in ("/signin", "/admin/verify") and "txn=" not in location.query
    return resp.status_code not in (401, 403) and not turned_away


# -- the fixed table -------------------------------------------------------------------------


def _qs(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs)


def _raw_qs(pairs: list[tuple[str, str]]) -> str:
    """Keys quoted, values sent as they are (raw percent-escapes)."""
    return "&".join(f"{quote(k, safe='')}={v}" for k, v in pairs)


def fixed_requests(
    route: Route, csrf: str, limit: int, jwt_client_id: str
) -> Iterator[tuple[str, dict]]:
    """(path, keyword arguments of ``client.open``) for the fixed table; *jwt_client_id*
    is a private_key_jwt client, named by the client assertions."""
    path = route.paths[0]
    yield from one_at_a_time(route, path, csrf, limit)
    base = {**route.defaults, "csrf_token": csrf}
    everything = route.names + route.extra_names
    body = route.method in METHODS_WITH_BODY
    # Every name at once with each value; in the query string for GET, in the form body
    # (and a few in the query string) for the methods with a body.
    for i, v in enumerate(nasty_values(limit)):
        fields = {**base, **{n: v for n in everything}}
        if body:
            yield path, {"data": fields}
        if not body or i % 4 == 0:
            yield path, {"query_string": _qs(list(fields.items()))}
    # Raw percent-escapes (invalid UTF-8 and others), repeated keys, empty names.
    for esc in RAW_ESCAPES:
        raw = _raw_qs([*base.items(), *[(n, esc) for n in everything], (esc, esc)])
        if body:
            yield path, {"data": raw, "content_type": "application/x-www-form-urlencoded"}
        else:
            yield path, {"query_string": raw}
    repeated = _qs([*base.items(), *[(n, v) for n in everything for v in ("a", "b", "")]])
    yield path, {"query_string": repeated}
    yield path, {"query_string": "=&&==&a&%&%%&&=&&" + "&a=1" * 5000}
    # Odd credentials in the headers.
    for headers in odd_credentials():
        yield path, ({"data": base} if body else {}) | {"headers": headers}
    if not body:
        return
    yield path, {"data": repeated, "content_type": "application/x-www-form-urlencoded"}
    # No CSRF token, a wrong one.
    yield path, {"data": {**route.defaults, **{n: "x" for n in route.names}}}
    yield path, {"data": {**base, "csrf_token": "\x00" + csrf[::-1]}}
    # Multipart: files under every name, deep values, too many parts.
    files = {n: (BytesIO(b"[" * 2000 + b"\xff\x00"), "a\x00\r\n.json") for n in everything}
    yield path, {"data": {**base, **files}, "content_type": "multipart/form-data"}
    deep = {**base, **{n: "[" * 1200 for n in everything}}
    yield path, {"data": deep, "content_type": "multipart/form-data"}
    many = {**base, **{f"f{i}": "x" for i in range(250)}}
    yield path, {"data": many, "content_type": "multipart/form-data"}
    # JSON bodies, and form-shaped JSON with wrong types in every field.
    for raw in json_bodies():
        yield path, {"data": raw, "content_type": "application/json"}
    for wrong in ({"a": [1]}, [1, "x"], None, "x" * 5000, _nested_list(40)):
        doc = json.dumps({**base, **{n: wrong for n in everything}})
        yield path, {"data": doc, "content_type": "application/json"}
    # Wrong content types.
    for content_type, raw in WRONG_CONTENT_TYPES:
        yield path, {"data": raw, "content_type": content_type}
    # Client assertions (RFC 7523) shaped like JWTs, wherever one is read.
    # (The valid request's own client authentication is left out, so that the
    # assertion is what authenticates.)
    if "client_assertion" in everything:
        rest = {k: v for k, v in base.items() if k not in ("client_id", "client_secret")}
        keyless = route.defaults.get("client_id", "no-such-client")  # a client without JWKS
        for assertion in odd_assertions(jwt_client_id) + odd_assertions(keyless)[:3]:
            yield path, {"data": {**rest, "client_assertion_type": ASSERTION_TYPE,
                                  "client_assertion": assertion}}  # fmt: skip


def short_requests(
    route: Route, csrf: str, limit: int, jwt_client_id: str
) -> Iterator[tuple[str, dict]]:
    """A few cases for an identity that the route turns away (sign in first, no role)."""
    path = route.paths[0]
    base = {**route.defaults, "csrf_token": csrf}
    everything = route.names + route.extra_names
    body = route.method in METHODS_WITH_BODY
    yield path, {}
    for v in ("\x00", "[" * (limit - 1), "x" * (limit + 1), "ａ\u0301"):
        fields = {**base, **{n: v for n in everything}}
        yield path, ({"data": fields} if body else {"query_string": _qs(list(fields.items()))})
    yield path, {"query_string": _raw_qs([(n, "%ff%00") for n in everything])}
    if body:
        yield path, {"data": b"[" * 30_000, "content_type": "application/json"}
        yield path, {"data": b"\xff", "content_type": "application/xml"}


def one_at_a_time(route: Route, path: str, csrf: str, limit: int) -> Iterator[tuple[str, dict]]:
    """One name at a time with each of the single values, the others valid."""
    base = {**route.defaults, "csrf_token": csrf}
    single = single_values(limit)
    for n in route.names + route.extra_names:
        # All the values for the route's own names, two for the names it may read.
        for v in single if n in route.names else single[1:4:2]:
            if route.method in METHODS_WITH_BODY:
                filled = {m: "x" for m in route.form_names if m not in base}
                yield path, {"data": {**base, **filled, n: v}}
            else:
                yield path, {"query_string": _qs([*base.items(), (n, v)])}


def other_real_paths(route: Route, csrf: str, limit: int) -> Iterator[tuple[str, dict]]:
    """The other real argument values (each factor kind, each purpose): one name at a
    time, and deeply nested bodies."""
    for path in route.paths[1 : route.real_paths]:
        yield from one_at_a_time(route, path, csrf, limit)
        if route.method in METHODS_WITH_BODY:
            yield path, {"data": b"[" * 30_000, "content_type": "application/json"}
            deep = {**route.defaults, "csrf_token": csrf,
                    **{n: "[" * 1200 for n in route.names + route.extra_names}}  # fmt: skip
            yield path, {"data": deep, "content_type": "multipart/form-data"}


def odd_path_requests(route: Route, csrf: str, limit: int) -> Iterator[tuple[str, dict]]:
    """Each odd path argument with an empty request and one nasty form."""
    for path in route.paths[route.real_paths :]:
        yield path, {}
        if route.method in METHODS_WITH_BODY:
            data = {**route.defaults, "csrf_token": csrf, **{n: "\x00[[" for n in route.names}}
            yield path, {"data": data}


# -- hypothesis strategies ------------------------------------------------------------------


def _json_values() -> st.SearchStrategy:
    leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )


def _field_values(limit: int) -> st.SearchStrategy:
    depth = st.integers(min_value=1, max_value=1500)
    return st.one_of(
        st.sampled_from(nasty_values(limit)),
        st.text(max_size=200),
        st.text(
            alphabet=st.characters(
                codec="utf-8", categories=["Lu", "Ll", "Mn", "Nd", "So", "Zs", "Cc", "Cf"]
            ),
            max_size=200,
        ),
        _json_values().map(json.dumps),
        depth.map(lambda d: "[" * d),
        depth.map(lambda d: '{"a":' * d + "1" + "}" * d),
        st.integers(min_value=limit - 2, max_value=limit * 3).map(lambda n: "y" * n),
    )


@st.composite
def fuzzed_request(draw, routes: list[Route], csrf: str, limit: int) -> tuple[Route, str, dict]:
    route = draw(st.sampled_from(routes))
    path = draw(st.sampled_from(route.paths))
    names = st.sampled_from(route.names + route.extra_names) | st.text(min_size=1, max_size=20)
    fields = draw(st.dictionaries(names, _field_values(limit), max_size=6))
    if draw(st.booleans()):
        fields = {**route.defaults, **fields}
    if draw(st.integers(0, 9)) > 0:
        fields["csrf_token"] = csrf
    shapes = ["query", "raw_query"]
    if route.method in METHODS_WITH_BODY:
        shapes += ["form", "raw_form", "multipart", "json", "json_fields", "bytes"]
    shape = draw(st.sampled_from(shapes))
    pairs = list(fields.items())
    if shape == "query":
        return route, path, {"query_string": _qs(pairs)}
    if shape == "raw_query":
        escapes = draw(st.lists(st.sampled_from(RAW_ESCAPES), min_size=1, max_size=4))
        return route, path, {"query_string": _raw_qs(pairs + [("x", "".join(escapes))])}
    if shape == "form":
        return route, path, {"data": fields}
    if shape == "raw_form":
        repeated = pairs + pairs[: draw(st.integers(0, len(pairs)))]
        escapes = "".join(draw(st.lists(st.sampled_from(RAW_ESCAPES), max_size=3)))
        body = _qs(repeated) + (f"&{escapes}={escapes}" if escapes else "")
        return route, path, {"data": body, "content_type": "application/x-www-form-urlencoded"}
    if shape == "multipart":
        upload = draw(st.binary(max_size=300))
        data = {**fields, draw(names): (BytesIO(upload), draw(st.text(max_size=30)))}
        return route, path, {"data": data, "content_type": "multipart/form-data"}
    if shape == "json":
        body = json.dumps(draw(_json_values()))
        return route, path, {"data": body, "content_type": "application/json"}
    if shape == "json_fields":
        body = json.dumps({k: draw(_json_values()) for k in fields})
        return route, path, {"data": body, "content_type": "application/json"}
    content_types = ["application/json", "text/plain", "multipart/form-data",
                     "application/x-www-form-urlencoded", "image/png"]  # fmt: skip
    content_type = draw(st.sampled_from(content_types))
    return route, path, {"data": draw(st.binary(max_size=2000)), "content_type": content_type}


# -- the test ---------------------------------------------------------------------------------


def fuzz_rp(app, client_id: str, secret: str) -> MockRP:
    """The relying party the valid protocol requests come from, in its own browser."""
    transport = FlaskTransport(app.test_client())
    return MockRP("http://localhost", client_id, RP_CB, client_secret=secret,
                  auth_method="client_secret_post", transport=transport)  # fmt: skip


@pytest.fixture
def fuzzer(app, make_user, make_client):
    from jwcrypto import jwk

    user_id, _ = make_user(USER_EMAIL, name="Fuzz User")
    admin_id, _ = make_user(ADMIN_EMAIL, name="Fuzz Admin", role="admin")
    victim_id, _ = make_user(VICTIM_EMAIL, name="Fuzz Victim")
    client_id, secret = make_client(
        name="Fuzz RP",
        redirect_uris=[RP_CB],
        post_logout_redirect_uris=[RP_BYE],
        auth_method="client_secret_post",
    )
    key = json.loads(jwk.JWK.generate(kty="EC", crv="P-256", kid="k").export_public())
    jwt_client_id, _ = make_client(
        name="Fuzz JWT RP",
        auth_method="private_key_jwt",
        jwks={"keys": [key]},
        grant_types=["authorization_code", "client_credentials"],
    )
    victim_client_id, _ = make_client(name="Fuzz Victim RP")
    rp = fuzz_rp(app, client_id, secret)
    access_token = rp.exchange_code(rp.sign_in(USER_EMAIL, PASSWORD)).access_token
    with app.app_context():
        from idp.oidc.registration import issue_token

        initial_access_token, _ = issue_token(expires_in=3600, uses=100_000, created_by="fuzz")
    handler = _Tracebacks()
    logger = logging.getLogger("idp")
    logger.addHandler(handler)
    try:
        yield Fuzzer(
            app=app,
            limit=app.extensions["idp"].settings.security.max_parameter_length,
            user_id=user_id,
            admin_id=admin_id,
            victim_id=victim_id,
            client_id=client_id,
            client_secret=secret,
            jwt_client_id=jwt_client_id,
            victim_client_id=victim_client_id,
            access_token=access_token,
            initial_access_token=initial_access_token,
            tracebacks=handler,
        )
    finally:
        logger.removeHandler(handler)


def _signature(f: Failure) -> tuple[str, ...]:
    """What tells two failures apart: the route, the innermost frame of the provider's
    code and the exception type."""
    frames = re.findall(r'File "([^"]*/idp/[^"]*)", line (\d+)', f.traceback)
    exc = re.findall(r"^(\w[\w.]*(?:Error|Exception|Exit)\b)", f.traceback, re.MULTILINE)
    return (f.method, f.url.split("?")[0][:80], *(frames[-1] if frames else ()), *exc[-1:])


def _report(failures: list[Failure]) -> str:
    distinct: dict[tuple[str, ...], Failure] = {}
    for f in failures:
        distinct.setdefault(_signature(f), f)
    shown = "\n\n".join(str(f) for f in list(distinct.values())[:25])
    return f"{len(failures)} requests answered 5xx ({len(distinct)} distinct):\n\n{shown}"


def mixed_requests(fuzzer: Fuzzer, routes: list[Route], identity: str):
    """Hypothesis: mixed requests as *identity*, repeatable (derandomized) and bounded."""

    @hypothesis_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def mixed(data):
        browser = fuzzer.quick_browser(identity)
        route, path, kw = data.draw(fuzzed_request(routes, browser.csrf, fuzzer.limit))
        fuzzer.send(browser, route, path, **kw)

    return mixed


def test_every_route_survives_fuzzing(app, fuzzer):
    """Every method of every route, as every identity, with the fixed table and then
    hypothesis: no 5xx (the report lists each distinct failure with its traceback)."""
    routes = discover(fuzzer)
    assert len(routes) >= 60, [r.rule for r in routes]  # the app's routes were found
    rules_with_arguments = [r for r in routes if "<" in r.rule]
    assert rules_with_arguments and all(len(r.paths) > 1 for r in rules_with_arguments)

    for identity in IDENTITIES:
        # The fixed table, each route in a fresh browser.
        for route in routes:
            browser = fuzzer.browser(identity)
            table = fixed_requests if identity in route.full_table else short_requests
            for path, kw in table(route, browser.csrf, fuzzer.limit, fuzzer.jwt_client_id):
                fuzzer.send(browser, route, path, **kw)
            if identity in route.full_table:
                for path, kw in other_real_paths(route, browser.csrf, fuzzer.limit):
                    fuzzer.send(browser, route, path, **kw)
            for path, kw in odd_path_requests(route, browser.csrf, fuzzer.limit):
                fuzzer.send(browser, route, path, **kw)

        mixed_requests(fuzzer, routes, identity)()

    # Every route and method was requested by every identity, and signed-in forms got
    # past the CSRF check (the fuzzing reached their validation).
    for identity in IDENTITIES:
        missing = [(r.endpoint, r.method) for r in routes
                   if fuzzer.sent[(identity, r.endpoint, r.method)] == 0]  # fmt: skip
        assert not missing, (identity, missing)
    for identity in ("user", "admin"):
        reached = {e for (i, e), n in fuzzer.past_csrf.items() if i == identity and n}
        assert len(reached) >= 10, (identity, sorted(reached))
    # The valid requests the table varies still work: the fuzzing did not break the
    # client or the user it sends one odd parameter at a time with.
    rp = fuzz_rp(app, fuzzer.client_id, fuzzer.client_secret)
    fuzzer.reset_accounts()
    assert rp.exchange_code(rp.sign_in(USER_EMAIL, PASSWORD)).access_token
    assert not fuzzer.failures, _report(fuzzer.failures)


@pytest.mark.parametrize(
    ("identity", "method", "path"),
    [
        ("user", "POST", "/account/factors/9223372036854775808"),
        ("admin", "GET", "/admin/users/9223372036854775808"),
        ("admin", "POST", "/admin/users/1" + "0" * 40 + "/action"),
    ],
)
def test_ids_beyond_any_database_integer_are_not_found(fuzzer, identity, method, path):
    """Found by the fuzzing above: an id in the path larger than a 64-bit integer made
    SQLite raise OverflowError (a 500); no row can have it, so it is a 404."""
    browser = fuzzer.browser(identity)
    resp = browser.http.open(path, method=method, data={"csrf_token": browser.csrf})
    assert resp.status_code == 404, resp.get_data(as_text=True)[:300]


@pytest.mark.parametrize("path", ["/signin", "/token", "/push/v1/challenges/x"])
def test_multipart_part_without_a_name(client, path):
    """Found by the fuzzing above: a multipart part without ``name=`` reaches the
    request checks with the name None (a TypeError, a 500)."""
    body = b"--b\r\nContent-Disposition: form-data\r\n\r\nvalue\r\n--b--\r\n"
    resp = client.post(path, data=body, content_type="multipart/form-data; boundary=b")
    assert resp.status_code < 500, resp.get_data(as_text=True)[:300]
