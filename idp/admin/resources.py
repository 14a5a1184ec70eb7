"""``/admin/resources``: the APIs (RFC 8707 resources) that access tokens can be issued
for, with their scopes and the API's own client (administrators only).

The rules are the command line's (:mod:`idp.oidc.resources`); a refused form keeps what
was typed and says, next to the field, what is wrong. Every change is a CSRF-protected
POST followed by a redirect (post/redirect/get); deleting asks for a confirmation first.
"""

from __future__ import annotations

from typing import Any

from flask import Response, abort, redirect, request, url_for

from ..extensions import db
from ..flash import flash
from ..models import ApiResource, OAuthClient
from ..oidc.resources import (
    ResourceValidationError,
    clients_allowed,
    create_resource,
    delete_resource,
    list_resources,
    parse_scope,
    update_resource,
)
from .access import Staff, staff_only
from .views import bp, render


def _load(resource_id: int) -> ApiResource:
    resource = db.session.get(ApiResource, resource_id)
    if resource is None:
        abort(404)
    return resource


def _client_ids() -> list[str]:
    return list(
        db.session.execute(db.select(OAuthClient.client_id).order_by(OAuthClient.client_id))
        .scalars()
        .all()
    )


def _scope_lines(text: str) -> list[tuple[str, str]]:
    """The scopes field: one ``name=description`` (or ``name``) per line."""
    return [parse_scope(line) for line in text.splitlines() if line.strip()]


def _form_values() -> dict[str, Any]:
    form = request.form
    return {
        "uri": form.get("uri", "").strip(),
        "name": form.get("name", ""),
        "scopes": form.get("scopes", ""),
        "client_id": form.get("client_id", ""),
    }


def _values(resource: ApiResource) -> dict[str, Any]:
    lines = [f"{s.name}={s.description}" if s.description else s.name for s in resource.scopes]
    return {
        "uri": resource.uri,
        "name": resource.name,
        "scopes": "\n".join(lines),
        "client_id": resource.client_id or "",
    }


def _form_page(staff: Staff, resource: ApiResource | None, values: dict[str, Any],
               errors: dict[str, str] | None = None, status: int = 200) -> Response:  # fmt: skip
    return render(
        "admin/resource_form.html",
        staff,
        status=status,
        resource=resource,
        values=values,
        errors=errors or {},
        client_ids=_client_ids(),
        allowed=clients_allowed(resource) if resource is not None else [],
    )


def _field_error(exc: ResourceValidationError) -> dict[str, str]:
    return {exc.field if exc.field in ("uri", "name", "scopes", "client_id") else "form": str(exc)}


@bp.get("/resources")
@staff_only("admin")
def resources(staff: Staff) -> Response:
    rows = list_resources()
    return render("admin/resources.html", staff, resources=rows,
                  allowed={r.id: clients_allowed(r) for r in rows})  # fmt: skip


@bp.route("/resources/new", methods=["GET", "POST"])
@staff_only("admin")
def resource_new(staff: Staff) -> Response:
    if request.method == "GET":
        return _form_page(staff, None, {"uri": "", "name": "", "scopes": "", "client_id": ""})
    values = _form_values()
    try:
        resource = create_resource(
            values["uri"],
            _scope_lines(values["scopes"]),
            name=values["name"],
            client_id=values["client_id"] or None,
            actor=staff.actor,
        )
    except ResourceValidationError as exc:
        db.session.rollback()
        return _form_page(staff, None, values, _field_error(exc), status=400)
    flash(f"Registered the API {resource.name or resource.uri}.")
    return redirect(url_for("admin.resources"))


@bp.route("/resources/<int:resource_id>", methods=["GET", "POST"])
@staff_only("admin")
def resource_edit(staff: Staff, resource_id: int) -> Response:
    resource = _load(resource_id)
    if request.method == "GET":
        return _form_page(staff, resource, _values(resource))
    values = _form_values()
    try:
        changed = update_resource(
            resource,
            uri=values["uri"],
            name=values["name"],
            scopes=_scope_lines(values["scopes"]),
            client_id=values["client_id"] or None,
            actor=staff.actor,
        )
    except ResourceValidationError as exc:
        db.session.rollback()
        return _form_page(staff, _load(resource_id), values, _field_error(exc), status=400)
    flash(f"Saved {resource.name or resource.uri}." if changed else "Nothing changed.")
    return redirect(url_for("admin.resources"))


@bp.post("/resources/<int:resource_id>/delete")
@staff_only("admin")
def resource_delete(staff: Staff, resource_id: int) -> Response:
    resource = _load(resource_id)
    if request.form.get("confirm") != "yes":
        # Nothing changes yet: the page says what deleting does and asks again.
        return render("admin/resource_delete.html", staff, resource=resource,
                      allowed=clients_allowed(resource))  # fmt: skip
    label = resource.name or resource.uri
    delete_resource(resource, actor=staff.actor)
    flash(f"Deleted the API {label}.")
    return redirect(url_for("admin.resources"))
