"""``POST /api/form-c``: the Form C API, protected by the provider's access tokens.

A resource server in miniature (RFC 6750 bearer tokens, RFC 9068 JWT access tokens,
RFC 9470 step-up):

- no token, or one that fails validation (:mod:`.tokens`) -> ``401`` with
  ``WWW-Authenticate: Bearer error="invalid_token"``;
- a valid token without the API's scope (``form-c:file`` by default) -> ``403`` with
  ``WWW-Authenticate: Bearer error="insufficient_scope", scope="form-c:file"``
  (RFC 6750 3.1);
- a valid token whose authentication is too weak for filing (``acr`` below the step-up
  level, or ``auth_time`` older than the allowed age) -> ``401`` with
  ``WWW-Authenticate: Bearer error="insufficient_user_authentication",
  error_description="...", acr_values="urn:idp:acr:mfa", max_age=900`` (RFC 9470 3),
  which tells the client exactly what to ask the provider for;
- otherwise the report is validated (``400`` with the field errors) and stored:
  ``201`` with ``{"confirmation": "FC-..."}``.

The request body is JSON: ``supplier_number``, ``period`` (``"2026-H2"``),
``subcontractors``, ``total_purchases`` (dollars) and ``certified`` (``true``).
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, current_app, jsonify, request

from . import reports
from .assurance import shortfall
from .tokens import InvalidToken, ProviderUnavailable, bearer_challenge

bp = Blueprint("api", __name__, url_prefix="/api")


def _unauthorized(header: str, error: str, description: str) -> Response:
    resp = jsonify(error=error, error_description=description)
    resp.status_code = 401
    resp.headers["WWW-Authenticate"] = header
    return resp


@bp.post("/form-c")
def form_c() -> Response:
    cx = current_app.extensions["connexion"]
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        # RFC 6750 3.1: without any credentials, no error code is required; we send
        # invalid_token so that clients have one rule to follow.
        description = "An access token is required."
        return _unauthorized(
            bearer_challenge("invalid_token", description), "invalid_token", description
        )
    try:
        claims = cx.validator.validate(token.strip())
    except InvalidToken as exc:
        return _unauthorized(bearer_challenge("invalid_token", str(exc)), "invalid_token", str(exc))
    except ProviderUnavailable:
        current_app.logger.exception("cannot validate access tokens")
        resp = jsonify(error="temporarily_unavailable")
        resp.status_code = 503
        return resp

    if cx.api_scope and cx.api_scope not in str(claims.get("scope") or "").split():
        description = "The access token does not allow filing Form C."
        resp = jsonify(error="insufficient_scope", error_description=description)
        resp.status_code = 403
        resp.headers["WWW-Authenticate"] = bearer_challenge(
            "insufficient_scope", description, scope=cx.api_scope
        )
        return resp

    reason = shortfall(claims, cx.step_up_acr, cx.step_up_max_age)
    if reason is not None:
        header = bearer_challenge(
            "insufficient_user_authentication",
            reason,
            acr_values=cx.step_up_acr,
            max_age=cx.step_up_max_age,
        )
        return _unauthorized(header, "insufficient_user_authentication", reason)

    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        resp = jsonify(error="invalid_request", error_description="Send a JSON object.")
        resp.status_code = 400
        return resp
    report, errors = reports.validate(data, date.today())
    if report is None:
        resp = jsonify(error="invalid_request", fields=errors)
        resp.status_code = 400
        return resp
    confirmation = reports.save(
        cx.database,
        report,
        sub=claims["sub"],
        acr=claims.get("acr"),
        auth_time=claims.get("auth_time"),
    )
    resp = jsonify(confirmation=confirmation)
    resp.status_code = 201
    resp.headers["Location"] = f"/form-c/confirmation/{confirmation}"
    return resp
