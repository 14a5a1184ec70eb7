"""Cross-origin calls from browser applications (the Fetch standard's CORS protocol).

A single-page application signs its users in with the code flow and PKCE, then calls
the token endpoint and userinfo from its own origin with ``fetch()``. The browser lets
it read an answer only when the answer names its origin in
``Access-Control-Allow-Origin``; before a request that carries ``Authorization`` (or
any header beyond the simple ones) it asks first with a preflight ``OPTIONS``.

Which origins, per endpoint:

- ``/token``, ``/revoke``, ``/par``: the allowed origins of the client the request
  names (``client_id``, or the user of HTTP Basic);
- ``/userinfo``: the allowed origins of the access token's client; for a request
  without a valid token, an origin any client allows (so the application can read the
  401);
- ``/jwks``, ``/.well-known/openid-configuration``: every origin, ``*`` (public
  documents, no credentials);
- ``/introspect``, ``/connect/register`` and the rest: none. Introspection is for
  resource servers (RFC 7662 2.1 protects it with the caller's credentials, which a
  browser cannot keep); registration is for administrators' tools.

A preflight cannot name its client (it has no body), so it is answered for an origin
that at least one enabled client allows; the actual request is then answered for its
client's origins only. Every answer that depends on the origin says ``Vary: Origin``.
``Access-Control-Allow-Credentials`` is never sent: tokens travel in headers and
bodies, never in cookies, so no endpoint here needs the browser's cookies, and an
allowed origin cannot ride on a signed-in user's provider session. Allowed request
headers: ``Authorization`` and ``Content-Type``; ``WWW-Authenticate`` is exposed on
userinfo (RFC 6750 3). Origins are registered per client (``allowed_origins``,
validated by :func:`idp.oidc.clients.check_origin`) and compared exactly.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from flask import Flask, Response, g, request

from ..extensions import db
from ..models import OAuthClient
from ..services import services
from .client_cache import Remembered
from .server import query_client

#: Endpoints tied to a client: the methods a browser may use on each.
CLIENT_BOUND = {"/token": "POST", "/revoke": "POST", "/par": "POST"}
USERINFO = {"/userinfo": "GET, POST"}
PUBLIC = {"/jwks": "GET", "/.well-known/openid-configuration": "GET"}
ALLOWED_HEADERS = "Authorization, Content-Type"
_VARY = "Origin"
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


def _allowed_origins() -> frozenset[str]:
    """The origins every enabled client allows."""
    rows = db.session.execute(
        db.select(OAuthClient.allowed_origins).where(OAuthClient.disabled.is_(False))
    ).scalars()
    return frozenset(o for row in rows for o in (row or ()))


def _named_client_id() -> str | None:
    """The client a token, revocation or PAR request names: ``client_id`` in the body,
    or the user of HTTP Basic authentication (RFC 6749 2.3.1, form-urlencoded)."""
    named = request.form.get("client_id")
    if named:
        return named
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, _ = decoded.partition(":")
    return unquote(user) if sep else None


def _client_allows(client_id: str | None, origin: str) -> bool:
    client = query_client(client_id)
    return client is not None and origin in (client.allowed_origins or ())


def _userinfo_allows(origin: str, any_client: Remembered[frozenset[str]]) -> bool:
    from .tokens import TokenService

    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    token = token or (request.form.get("access_token") if request.method == "POST" else None)
    claims = TokenService(services()).validate_access_token(token) if token else None
    if claims is not None:
        return _client_allows(claims.get("client_id"), origin)
    return origin in any_client.get()


def init_cors(app: Flask) -> None:
    """Answer preflights and add the CORS headers to the endpoints above."""
    any_client = Remembered(_allowed_origins)

    @app.before_request
    def _preflight() -> Response | None:
        path = request.path
        if request.method != "OPTIONS" or path not in {**CLIENT_BOUND, **USERINFO, **PUBLIC}:
            return None
        methods = {**CLIENT_BOUND, **USERINFO, **PUBLIC}[path]
        origin = request.headers.get("Origin")
        asked = request.headers.get("Access-Control-Request-Method")
        resp = Response(status=204)
        resp.headers["Allow"] = f"{methods}, OPTIONS"
        if not origin or not asked:
            return resp  # an ordinary OPTIONS request (RFC 9110 9.3.7)
        g.cors_preflight = True
        resp.headers["Vary"] = _PREFLIGHT_VARY
        if path in PUBLIC:
            resp.headers["Access-Control-Allow-Origin"] = "*"
        elif origin in any_client.get():
            resp.headers["Access-Control-Allow-Origin"] = origin
        else:
            resp.status_code = 403  # the browser refuses the request it was asking about
            return resp
        resp.headers["Access-Control-Allow-Methods"] = methods
        resp.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        resp.headers["Access-Control-Max-Age"] = str(services().settings.cors.max_age)
        return resp

    @app.after_request
    def _cors_headers(resp: Response) -> Response:
        path = request.path
        if g.get("cors_preflight"):
            return resp
        if path in PUBLIC:
            resp.headers["Access-Control-Allow-Origin"] = "*"
            return resp
        if path not in CLIENT_BOUND and path not in USERINFO:
            return resp
        resp.vary.add(_VARY)
        origin = request.headers.get("Origin")
        if not origin:
            return resp
        try:
            if path in CLIENT_BOUND:
                allowed = _client_allows(_named_client_id(), origin)
            else:
                allowed = _userinfo_allows(origin, any_client)
        except Exception:  # a broken request must not turn its answer into a 500
            db.session.rollback()
            allowed = False
        if allowed:
            resp.headers["Access-Control-Allow-Origin"] = origin
            if path in USERINFO:
                resp.headers["Access-Control-Expose-Headers"] = "WWW-Authenticate"
        return resp
