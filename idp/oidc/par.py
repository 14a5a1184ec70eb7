"""Pushed Authorization Requests (RFC 9126).

A client sends the parameters of its authorization request straight to ``POST /par``,
authenticated as at the token endpoint, and gets back a ``request_uri`` to send the
browser to ``/authorize`` with, instead of the parameters. The parameters never travel
through the browser, and the request is checked before the user sees anything.

- ``/par`` authenticates the client (any method it may use at ``/token``; a public
  client names itself with ``client_id``), refuses a ``request_uri`` and a ``client_id``
  other than the authenticated client's (2.1), and validates the request exactly as
  ``/authorize`` would (:func:`idp.oidc.authorize.validate_pushed`). Errors come back as
  JSON, 400 (401 for client authentication), like the token endpoint's (2.3).
- The answer is ``201`` with ``request_uri`` (``urn:ietf:params:oauth:request_uri:``
  and 256 random bits) and ``expires_in`` (``[par] request_ttl``, 60 s by default) (2.2).
  The pushed parameters wait in the store under the SHA-256 of the ``request_uri``.
- ``/authorize?client_id=...&request_uri=...`` (4) takes them back once: the
  ``client_id`` must be the one that pushed them, the first use deletes them
  atomically, and every other parameter of that request is ignored (the pushed ones are
  the request, as RFC 9101 6.3 has it for request objects). A client registered with
  ``require_pushed_authorization_requests`` (6) is refused any other authorization
  request (:func:`idp.oidc.authorize.check_pushed`).
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from authlib.oauth2.base import OAuth2Error
from flask import Blueprint, Response, current_app, jsonify, request
from flask_babel import gettext as _

from .. import audit
from ..security.crypto import equal, hash_token
from ..services import services
from . import authorize as pipeline
from .server import AUTH_METHODS

bp = Blueprint("par", __name__)

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
#: Client authentication parameters: they authenticate the push, they are not part of
#: the authorization request.
_CLIENT_AUTH = ("client_secret", "client_assertion", "client_assertion_type")
#: Parameters that may appear more than once (RFC 8707 2.1: one per resource).
_REPEATABLE = ("resource",)


class PushedRequestError(Exception):
    """A ``request_uri`` that cannot be used; the message is for the user's page."""


def _key(request_uri: str) -> str:
    return f"par:{hash_token(request_uri)}"


def push(client_id: str, params: dict[str, str]) -> tuple[str, int]:
    """Keep validated *params* for *client_id*; returns (request_uri, expires_in)."""
    svc = services()
    ttl = svc.settings.par.request_ttl
    request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(32)
    data = json.dumps({"client_id": client_id, "params": params}).encode()
    svc.store.set(_key(request_uri), data, ttl)
    return request_uri, ttl


def take(request_uri: str, client_id: str | None) -> dict[str, str]:
    """The pushed parameters of *request_uri*, used once, for *client_id* only
    (RFC 9126 4); :class:`PushedRequestError` otherwise. The result carries
    ``request_uri`` itself, the mark of a pushed request in the authorization pipeline."""
    if not request_uri.startswith(REQUEST_URI_PREFIX) or len(request_uri) > 200:
        raise PushedRequestError(
            _(
                "request_uri is supported only for requests pushed to the "
                "pushed_authorization_request_endpoint."
            )
        )
    if not client_id:
        raise PushedRequestError(_("client_id is required with request_uri."))
    store = services().store
    raw = store.get(_key(request_uri))
    if raw is None:
        raise PushedRequestError(_("The request_uri has expired or was already used."))
    stored = json.loads(raw)
    if not equal(stored["client_id"], client_id):
        # Not burned: only the client that pushed it may use it.
        raise PushedRequestError(_("The request_uri was not issued to this client."))
    if store.take(_key(request_uri)) is None:
        raise PushedRequestError(_("The request_uri has expired or was already used."))
    return {**stored["params"], "request_uri": request_uri}


def _error(status: int, error: str, description: str, client_id: str | None) -> Response:
    audit.record_now("par.refused", outcome="failure", client_id=client_id, error=error)
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Basic realm="par"'
    return resp


@bp.post("/par")
def pushed_authorization_request() -> Response:
    """The pushed authorization request endpoint (RFC 9126 2)."""
    server = current_app.extensions["idp.oauth"]
    named = (request.form.get("client_id") or "")[:64] or None
    repeated = next(
        (k for k in request.form if k not in _REPEATABLE and len(request.form.getlist(k)) > 1),
        None,
    )
    if repeated is not None:
        return _error(400, "invalid_request", f"Repeated parameter {repeated[:40]!r}.", named)
    try:
        client = server.authenticate_client(
            server.create_oauth2_request(request), AUTH_METHODS, "pushed_authorization_request"
        )
    except OAuth2Error as err:
        return _error(err.status_code or 401, err.error, err.description or "", named)
    if named is not None and named != client.client_id:
        return _error(400, "invalid_request", "client_id is not the authenticated client.", named)
    if "request_uri" in request.form:
        return _error(400, "invalid_request", "request_uri must not be pushed.", named)
    params: dict[str, Any] = {k: v for k, v in request.form.items() if k not in _CLIENT_AUTH}
    params["client_id"] = client.client_id
    if "resource" in request.form:
        # RFC 8707 2: one resource parameter per API, kept space-separated as a sign-in
        # transaction keeps them (a URI holds no space).
        params["resource"] = " ".join(request.form.getlist("resource"))
    try:
        pipeline.validate_pushed(pipeline.StoredAuthorizationRequest(params))
    except OAuth2Error as err:
        return _error(400, err.error, err.description or "", client.client_id)
    request_uri, expires_in = push(client.client_id, params)
    resp = jsonify(request_uri=request_uri, expires_in=expires_in)
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp
