"""``/recover``: what to do after losing every second sign-in method.

Recovery codes first (they work at the challenge page like any method); else the help
desk, which checks the caller's identity and runs ``idp users reset-mfa``. After that
reset the user proves the email address again (a link is sent at the next sign-in) and
sets up a new method: control of the inbox alone is not enough, because the password is
still needed, and the help desk's identity check comes first.
"""

from __future__ import annotations

from flask import Blueprint, Response, render_template

bp = Blueprint("recovery", __name__)


@bp.get("/recover")
def recover() -> Response:
    return Response(render_template("account/recover.html"))
