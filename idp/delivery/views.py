"""``/dev/outbox``: the console backend's messages, newest first.

Registered only when ``env = "development"`` (the route does not exist otherwise, so it
answers 404): the outbox holds sign-in codes and links.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, render_template

from ..services import services
from .console import read_outbox

bp = Blueprint("dev", __name__, url_prefix="/dev")


@bp.get("/outbox")
def outbox() -> Response:
    settings = services().settings
    records = list(reversed(read_outbox(settings.delivery.outbox)))[:200]
    return Response(render_template("dev/outbox.html", records=records,
                                    path=settings.delivery.outbox))  # fmt: skip


def init_dev(app: Flask) -> None:
    """Register the development pages when, and only when, ``env = "development"``."""
    if app.extensions["idp"].settings.env == "development":
        app.register_blueprint(bp)
