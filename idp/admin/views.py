"""The admin home page and the admin step-up (a recent second factor)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, render_template

from ..flash import take_flashes
from .access import Staff, staff_only

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _mfa():
    return current_app.extensions["idp.mfa"]


def render(template: str, staff: Staff, status: int = 200, **context) -> Response:
    """Render an admin page with the navigation for the staff member's role and the
    one-time messages the server left for this browser (never text from the URL)."""
    context.setdefault("flashes", take_flashes())
    return Response(render_template(template, staff=staff, **context), status=status)


@bp.get("")
@bp.get("/")
@staff_only()
def index(staff: Staff) -> Response:
    return render("admin/index.html", staff)
