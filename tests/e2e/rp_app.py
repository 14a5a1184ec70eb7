"""A tiny relying party for the browser tests.

It is deliberately not built on Authlib (the provider's own OAuth library): the
authorization request, the token exchange and the ID token checks go through
:class:`clients.mockrp.MockRP` over real HTTP, which verifies tokens with jwcrypto.

Pages:

- ``/``          "Not signed in" and a "Sign in" link, or "Signed in as <email>" with acr/amr;
- ``/login``     redirects to the provider's authorization endpoint (PKCE S256, state, nonce;
                 the verifier and nonce stay here, keyed by state); ``acr_values``,
                 ``max_age`` and ``prompt`` in its query are passed through (step-up);
- ``/callback``  checks state (and ``iss``, RFC 9207), exchanges the code, verifies the ID
                 token, reads UserInfo (where the email claim comes from in the code flow),
                 stores the claims and shows who signed in.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, redirect, request
from markupsafe import escape
from werkzeug.serving import BaseWSGIServer, make_server

from clients.mockrp import AuthorizationResult, HTTPTransport, MockRP, MockRPError, OAuthError

SESSION_COOKIE = "rp_session"
SCOPE = "openid profile email"
#: Query parameters of ``/login`` forwarded to the authorization request.
PASSTHROUGH = ("acr_values", "max_age", "prompt", "ui_locales")

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} – E2E RP</title>
<link rel="icon" href="data:,">
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"""


def _page(title: str, body: str, status: int = 200) -> Response:
    html = _PAGE.format(title=escape(title), body=body)
    return Response(html, status=status, mimetype="text/html")


@dataclass
class RelyingParty:
    """The RP's state: pending authorization requests and signed-in browsers."""

    issuer: str
    client_id: str
    client_secret: str
    port: int
    #: The host name in the RP's URLs (the server itself listens on 127.0.0.1).
    host: str = "127.0.0.1"
    #: state -> {"state", "nonce", "code_verifier"} of requests not yet answered.
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: RP session cookie -> verified ID token claims.
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Every callback outcome, newest last: ("ok", claims) or ("error", message).
    outcomes: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.url}/callback"

    def mock_rp(self) -> MockRP:
        # One per request: a requests.Session is not meant to be shared between threads.
        return MockRP(
            self.issuer,
            self.client_id,
            self.redirect_uri,
            client_secret=self.client_secret,
            transport=HTTPTransport(timeout=10),
        )

    @property
    def last_claims(self) -> dict[str, Any] | None:
        with self.lock:
            for kind, value in reversed(self.outcomes):
                if kind == "ok":
                    return value
        return None


def create_rp_app(rp: RelyingParty) -> Flask:
    app = Flask(__name__)

    def fail(message: str) -> Response:
        with rp.lock:
            rp.outcomes.append(("error", message))
        body = f'<p role="alert">Sign-in failed: {escape(message)}</p><p><a href="/">Home</a></p>'
        return _page("Sign-in failed", body, 400)

    @app.get("/")
    def home() -> Response:
        with rp.lock:
            claims = rp.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if claims is None:
            return _page("E2E RP", '<p>Not signed in.</p><p><a href="/login">Sign in</a></p>')
        return _signed_in(claims)

    @app.get("/login")
    def login() -> Response:
        extra = {k: request.args[k] for k in PASSTHROUGH if request.args.get(k)}
        url, state = rp.mock_rp().authorization_url(scope=SCOPE, **extra)
        max_age = extra.get("max_age")
        state["max_age"] = int(max_age) if max_age and max_age.isdigit() else None
        with rp.lock:
            rp.pending[state["state"]] = state
        return redirect(url)

    @app.get("/callback")
    def callback() -> Response:
        args = request.args
        with rp.lock:
            state = rp.pending.pop(args.get("state", ""), None)
        if state is None:
            return fail("unknown or reused state")
        if args.get("iss") != rp.issuer:
            return fail(f"iss {args.get('iss')!r} is not {rp.issuer!r}")
        if "error" in args:
            return fail(f"{args['error']}: {args.get('error_description', '')}")
        if not args.get("code"):
            return fail("no code in the response")
        mock = rp.mock_rp()
        result = AuthorizationResult(
            code=args["code"],
            state=state["state"],
            error=None,
            error_description=None,
            iss=args.get("iss"),
            redirect_url=request.url,
            nonce=state["nonce"],
            code_verifier=state["code_verifier"],
        )
        try:
            tokens = mock.exchange_code(result)
            if not tokens.id_token:
                return fail("the token response has no id_token")
            claims = mock.verify_id_token(
                tokens.id_token,
                nonce=state["nonce"],
                access_token=tokens.access_token,
                max_age=state.get("max_age"),
            )
            # The email scope's claims come from UserInfo in the code flow (OIDC Core 5.4).
            profile = mock.userinfo(tokens.access_token, expected_sub=claims["sub"])
        except (MockRPError, OAuthError) as exc:
            return fail(str(exc))
        claims = {**profile, **claims}
        sid = secrets.token_urlsafe(24)
        with rp.lock:
            rp.sessions[sid] = claims
            rp.outcomes.append(("ok", claims))
        resp = _signed_in(claims)
        resp.set_cookie(SESSION_COOKIE, sid, httponly=True, samesite="Lax", path="/")
        return resp

    return app


def _signed_in(claims: dict[str, Any]) -> Response:
    amr = " ".join(claims.get("amr") or [])
    body = (
        f'<p id="who">Signed in as {escape(claims.get("email", claims["sub"]))}</p>\n'
        "<dl>\n"
        f'<dt>acr</dt><dd id="acr">{escape(claims.get("acr", ""))}</dd>\n'
        f'<dt>amr</dt><dd id="amr">{escape(amr)}</dd>\n'
        f'<dt>sub</dt><dd id="sub">{escape(claims["sub"])}</dd>\n'
        "</dl>"
    )
    return _page("E2E RP", body)


class RPServer:
    """The RP app on 127.0.0.1:<port>, served by werkzeug in a daemon thread."""

    def __init__(self, rp: RelyingParty):
        self.rp = rp
        # threaded: Chromium opens speculative connections that a one-request-at-a-time
        # server would sit on while the real request waits.
        self.server: BaseWSGIServer = make_server(
            "127.0.0.1", rp.port, create_rp_app(rp), threaded=True
        )
        self.thread = threading.Thread(target=self.server.serve_forever, name="e2e-rp", daemon=True)

    def start(self) -> RPServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
