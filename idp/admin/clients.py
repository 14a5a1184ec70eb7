"""``/admin/clients``: register, edit, rotate the secret of, disable and delete the
applications (OAuth clients) that use the provider."""

from __future__ import annotations

import json
from typing import Any

from flask import Response, abort, redirect, request, url_for

from ..auth.assurance import ACR_LEVELS
from ..extensions import db
from ..flash import flash
from ..models import OAuthClient
from ..models.oauth import AUTH_METHODS, GRANT_TYPES
from ..oidc.clients import (
    INFO_URIS,
    PROTOCOL_FIELDS,
    ClientValidationError,
    create_client,
    delete_client,
    rotate_secret,
    update_client,
)
from ..oidc.resources import client_resource_uris, list_resources, supported_scopes
from .access import Staff, staff_only
from .views import bp, render


def choices() -> dict[str, Any]:
    """The form's choices; scopes and APIs (RFC 8707 resources) are registered ones."""
    return {
        "auth_methods": AUTH_METHODS,
        "grant_types": GRANT_TYPES,
        "scopes": supported_scopes(),
        "acr_levels": ACR_LEVELS,
        "api_resources": list_resources(),
        "info_uris": INFO_URIS,
    }


def _lines(name: str) -> list[str]:
    return [line.strip() for line in request.form.get(name, "").splitlines() if line.strip()]


def _form() -> dict[str, Any]:
    """The client form as metadata for :func:`idp.oidc.clients.normalize_metadata`."""
    form = request.form
    jwks_text = form.get("jwks", "").strip()
    try:
        jwks = json.loads(jwks_text) if jwks_text else None
    except ValueError:
        raise ClientValidationError("jwks: not valid JSON") from None
    if jwks is not None and not isinstance(jwks, dict):
        raise ClientValidationError('jwks: must be a JSON object with a "keys" array')
    return {
        "name": form.get("name", ""),
        "redirect_uris": _lines("redirect_uris"),
        "post_logout_redirect_uris": _lines("post_logout_redirect_uris"),
        "grant_types": form.getlist("grant_types"),
        "scope": " ".join(form.getlist("scope")),
        "jwks": jwks,
        # RFC 7591 2: what the sign-in pages show about the application.
        **{key: form.get(key, "") for key in INFO_URIS},
        **_protocol_form(),
    }


def _protocol_form() -> dict[str, Any]:
    """The keys by URL, back-channel logout, allowed origins and PAR fields
    (:data:`idp.oidc.clients.PROTOCOL_FIELDS`)."""
    form = request.form
    return {
        "jwks_uri": form.get("jwks_uri", "").strip() or None,
        "backchannel_logout_uri": form.get("backchannel_logout_uri", "").strip() or None,
        "backchannel_logout_session_required": (
            form.get("backchannel_logout_session_required") == "on"
        ),
        "allowed_origins": _lines("allowed_origins"),
        "require_par": form.get("require_par") == "on",
    }


def _resources() -> list[str]:
    """The APIs (RFC 8707 resources) the form allows the client."""
    return [v for v in request.form.getlist("resources") if v]


def _flags() -> dict[str, Any]:
    return {
        "first_party": request.form.get("first_party") == "on",
        "require_mfa": request.form.get("require_mfa") == "on",
        "default_acr": request.form.get("default_acr") or None,
    }


def _load(client_id: str) -> OAuthClient:
    client = db.session.execute(
        db.select(OAuthClient).filter_by(client_id=client_id)
    ).scalar_one_or_none()
    if client is None:
        abort(404)
    return client


@bp.get("/clients")
@staff_only("admin")
def clients(staff: Staff) -> Response:
    rows = db.session.execute(db.select(OAuthClient).order_by(OAuthClient.name)).scalars()
    return render("admin/clients.html", staff, clients=list(rows))


@bp.route("/clients/new", methods=["GET", "POST"])
@staff_only("admin")
def client_new(staff: Staff) -> Response:
    values: dict[str, Any] = {
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile email",
        "token_endpoint_auth_method": "client_secret_basic",
    }
    if request.method == "POST":
        try:
            metadata = _form()
            method = request.form.get("auth_method", "")
            values = {**metadata, **_flags(), "token_endpoint_auth_method": method,
                      "resources": _resources()}  # fmt: skip
            client, secret = create_client(
                auth_method=method,
                actor=staff.actor,
                resources=_resources(),
                **metadata,
                **_flags(),
            )
        except ClientValidationError as exc:
            db.session.rollback()
            return render("admin/client_form.html", staff, status=400, client=None,
                          values=values, error=str(exc), **choices())  # fmt: skip
        return render("admin/client_secret.html", staff, client=client, secret=secret,
                      created=True)  # fmt: skip
    return render("admin/client_form.html", staff, client=None, values=values, error=None,
                  **choices())  # fmt: skip


def _values(client: OAuthClient) -> dict[str, Any]:
    return {
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "scope": client.scope,
        "jwks": client.jwks,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "first_party": client.first_party,
        "require_mfa": client.require_mfa,
        "default_acr": client.default_acr,
        **{key: getattr(client, key) for key in INFO_URIS},
        **{key: getattr(client, key) for key in PROTOCOL_FIELDS},
        "resources": client_resource_uris(client),
    }


@bp.route("/clients/<client_id>", methods=["GET", "POST"])
@staff_only("admin")
def client_edit(staff: Staff, client_id: str) -> Response:
    client = _load(client_id)
    if request.method == "POST":
        values = _values(client)
        try:
            metadata = _form()
            values.update(metadata, **_flags(), resources=_resources())
            changed = update_client(client, actor=staff.actor, resources=_resources(),
                                    **metadata, **_flags())  # fmt: skip
        except ClientValidationError as exc:
            db.session.rollback()
            return render("admin/client_form.html", staff, status=400, client=client,
                          values=values, error=str(exc), **choices())  # fmt: skip
        note = f"Saved {client.name}." if changed else "Nothing changed."
        flash(note)
        return redirect(url_for("admin.clients"))
    return render("admin/client_form.html", staff, client=client, values=_values(client),
                  error=None, **choices())  # fmt: skip


@bp.post("/clients/<client_id>/action")
@staff_only("admin")
def client_action(staff: Staff, client_id: str) -> Response:
    client = _load(client_id)
    action = request.form.get("action")
    if action == "rotate":
        try:
            secret = rotate_secret(client, actor=staff.actor)
        except ClientValidationError as exc:
            flash(str(exc), "alert")
            return redirect(url_for("admin.clients"))
        return render("admin/client_secret.html", staff, client=client, secret=secret,
                      created=False)  # fmt: skip
    if action in ("disable", "enable"):
        update_client(client, actor=staff.actor, disabled=action == "disable")
        flash(f"{client.name} {action}d.")
        return redirect(url_for("admin.clients"))
    if action == "delete":
        if request.form.get("confirm") != client.client_id:
            return render("admin/client_delete.html", staff, client=client,
                          error="Type the client id to confirm." if "confirm" in request.form
                          else None)  # fmt: skip
        name = client.name
        delete_client(client, actor=staff.actor)
        flash(f"{name} deleted.")
        return redirect(url_for("admin.clients"))
    abort(400)
