"""Who may use the admin pages: a role, and a recent second factor.

Roles (``users.role``): ``user`` (no access), ``helpdesk`` (the help-desk pages and the
MFA adoption dashboard) and ``admin`` (everything, including clients and the audit
export). Every admin page also needs a session whose second factor reached
``[admin] required_acr`` within ``[admin] mfa_max_age`` seconds; otherwise pages
redirect to the admin step-up (``/admin/verify``) and the JSON API answers 401.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Response, jsonify, redirect, request, url_for

from .. import audit
from ..auth.assurance import FACTOR_LEVELS, achieved, level_index
from ..auth.session import BrowserSession
from ..models import User
from ..services import services
from ..web import current_session, current_user, error_page, validate_csrf

ROLES = ("user", "helpdesk", "admin")
STAFF = ("helpdesk", "admin")


@dataclass
class Staff:
    """The signed-in administrator of this request."""

    user: User
    session: BrowserSession

    @property
    def actor(self) -> str:
        """How audit events name the administrator (stable: the user id)."""
        return f"user:{self.user.id}"


def recent_acr(session: BrowserSession, now: int, max_age: int) -> str | None:
    """The acr reached by the password and the second factors passed in the last
    *max_age* seconds of this session (None without a password)."""
    if "pwd" not in session.methods:
        return None
    recent = [m for m, at in session.methods.items() if m != "pwd" and now - at <= max_age]
    return achieved(["pwd", *recent])


def step_up_factors(types) -> list[str]:
    """Factor types that reach ``[admin] required_acr`` together with the password."""
    required = level_index(services().settings.admin.required_acr)
    return [t for t in types if t in FACTOR_LEVELS and level_index(FACTOR_LEVELS[t]) >= required]


def mfa_fresh(session: BrowserSession) -> bool:
    settings = services().settings.admin
    acr = recent_acr(session, int(time.time()), settings.mfa_max_age)
    return acr is not None and level_index(acr) >= level_index(settings.required_acr)


def safe_next(value: str | None) -> str | None:
    """A same-site admin path to continue to after step-up, never another origin."""
    if not value or "\\" in value:
        return None
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not parts.path.startswith("/admin"):
        return None
    if value.startswith("//"):
        return None
    return value


def _json(status: int, error: str, description: str) -> Response:
    resp = jsonify(error=error, error_description=description)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def gate(roles: tuple[str, ...] = STAFF, *, api: bool = False) -> Staff | Response:
    """The staff member for this request, or the response that refuses it."""
    user, session = current_user(), current_session()
    if user is None or session is None:
        if api:
            return _json(401, "login_required", "Sign in as an administrator first.")
        return redirect(url_for("auth.signin", next="admin"))
    if user.role not in roles:
        audit.record_now("admin.access_denied", outcome="failure", user_id=user.id,
                         path=request.path[:200], role=user.role)  # fmt: skip
        if api:
            return _json(403, "forbidden", "Your account may not use this page.")
        return error_page(403, "Not allowed", "Your account may not open this page.")
    if not mfa_fresh(session):
        if api:
            resp = _json(401, "mfa_required", "Pass a second sign-in step again (admin step-up).")
            resp.headers["WWW-Authenticate"] = (
                f'Bearer error="insufficient_user_authentication", '
                f'acr_values="{services().settings.admin.required_acr}", '
                f"max_age={services().settings.admin.mfa_max_age}"
            )
            return resp
        target = request.full_path if request.method == "GET" else request.path
        return redirect(url_for("admin.verify", next=target.rstrip("?")))
    return Staff(user, session)


def staff_only(*roles: str, api: bool = False):
    """View decorator: check the CSRF token of every form post, then the role and the
    recent second factor; run the view with ``staff`` as first argument, or refuse."""
    allowed = roles or STAFF

    def deco(fn):
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any):
            if request.method == "POST":
                validate_csrf()
            staff = gate(allowed, api=api)
            if isinstance(staff, Response):
                return staff
            return fn(staff, *args, **kwargs)

        return wrapper

    return deco
