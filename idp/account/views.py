"""``/account/security``: the user's factors, recovery codes and recent activity.

Renaming or choosing the default needs a signed-in session; removing a factor needs a
second-factor challenge within ``[mfa] reauth_window`` (step-up), and the last factor
cannot be removed while MFA is required.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for

from .. import audit
from ..extensions import db
from ..models import AuditEvent, Factor
from ..services import services
from ..web import current_session, current_user, set_session_cookie, validate_csrf

bp = Blueprint("account", __name__, url_prefix="/account")

EVENT_TEXT = {
    "login.success": "Signed in",
    "login.failure": "Failed sign-in attempt",
    "login.lockout": "Sign-in paused after failed attempts",
    "logout": "Signed out",
    "mfa.success": "Second sign-in step passed",
    "mfa.failure": "Failed second sign-in step",
    "mfa.lockout": "Second sign-in step paused after failed attempts",
    "mfa.factor_added": "Sign-in method added",
    "mfa.factor_removed": "Sign-in method removed",
    "mfa.recovery_codes_created": "New recovery codes created",
    "mfa.reset": "Sign-in methods reset by the help desk",
    "mfa.postponed": "Second sign-in step set-up postponed",
    "consent.granted": "Access granted to an application",
    "password.changed": "Password changed",
    "password.reset": "Password reset with an email link",
    "email.changed": "Email address changed",
    "email.verified": "Email address verified",
}


def _mfa():
    from flask import current_app

    return current_app.extensions["idp.mfa"]


def _describe(event: AuditEvent) -> str:
    text = EVENT_TEXT.get(event.event, event.event)
    factor = (event.details or {}).get("factor")
    if factor and factor in _mfa().registry:
        text += f" ({_mfa().registry[factor].display_name})"
    return text


def _render(user, message: str | None = None, error: str | None = None, status: int = 200):
    mfa = _mfa()
    factors = mfa.factors(user)
    remaining = mfa.registry["recovery"].remaining(user) if "recovery" in mfa.registry else None
    has_recovery = any(f.type == "recovery" for f in factors)
    events = db.session.execute(
        db.select(AuditEvent)
        .filter(AuditEvent.user_id == user.id, AuditEvent.event.in_(list(EVENT_TEXT)))
        .order_by(AuditEvent.id.desc())
        .limit(20)
    ).scalars()
    offers = [impl for t, impl in mfa.registry.items() if factors or impl.first_factor]
    return Response(
        render_template(
            "account/security.html",
            user=user,
            factors=factors,
            names={t: impl.display_name for t, impl in mfa.registry.items()},
            remaining=remaining if has_recovery else None,
            low_codes=remaining
            if has_recovery and remaining is not None and remaining <= 3
            else None,
            offers=offers,
            events=list(events),
            describe=_describe,
            message=message,
            error=error,
        ),
        status=status,
    )


def account_gate() -> tuple[object, object] | Response:
    """The signed-in user and session; a user with factors must have passed one of them
    in this session (a password alone does not open the security page)."""
    user, session = current_user(), current_session()
    if user is None or session is None:
        return redirect(url_for("auth.signin", next="account"))
    types = _mfa().facts(user).factor_types
    if types and not any(t in session.methods for t in types):
        return redirect(url_for("mfa.challenge", next="account"))
    return user, session


@bp.get("/security")
def security() -> Response:
    gate = account_gate()
    if isinstance(gate, Response):
        return gate
    user, _session = gate
    added = request.args.get("added")
    message = None
    if added and added in _mfa().registry:
        message = f"{_mfa().registry[added].display_name} added."
    return _render(user, message=message)


@bp.post("/factors/<int:factor_id>")
def factor_action(factor_id: int) -> Response:
    validate_csrf()
    gate = account_gate()
    if isinstance(gate, Response):
        return gate
    user, session = gate
    factor = db.session.get(Factor, factor_id)
    if factor is None or factor.user_id != user.id:
        abort(404)
    action = request.form.get("action")
    mfa = _mfa()
    if action == "rename":
        label = (request.form.get("label") or "").strip()[:60]
        if not label:
            return _render(user, error="Enter a name.", status=400)
        factor.label = label
        audit.record("mfa.factor_renamed", user_id=user.id, factor_id=factor.id)
        db.session.commit()
        return _render(user, message="Name saved.")
    if action == "default":
        if factor.type == "recovery":
            return _render(user, error="Recovery codes cannot be the default method.", status=400)
        for f in mfa.factors(user):
            f.is_default = f.id == factor.id
        audit.record("mfa.default_changed", user_id=user.id, factor_id=factor.id)
        db.session.commit()
        return _render(user, message="Default method changed.")
    if action == "remove":
        window = services().settings.mfa.reauth_window
        now = int(time.time())
        types = mfa.facts(user).factor_types
        # An age of 0 (verified this very second) is recent: compare with None, not falsiness.
        ages = [session.method_age(t, now) for t in types]
        recent = [age for age in ages if age is not None and age <= window]
        if not recent:
            return redirect(url_for("mfa.challenge", next="account", reauth=1))
        others = [f for f in mfa.factors(user) if f.id != factor.id and f.type != "recovery"]
        if services().settings.mfa.required and not others:
            audit.record_now("mfa.remove_refused", outcome="failure", user_id=user.id,
                             factor_id=factor.id, reason="last factor")  # fmt: skip
            return _render(
                user,
                error="This is your only sign-in method, and one is required. Add another "
                "method before removing this one.",
                status=409,
            )
        name = mfa.registry[factor.type].display_name if factor.type in mfa.registry else ""
        removed_id = factor.id
        mfa.remove(user, factor, keep_sid=session.sid)
        # This browser stays signed in, but no longer counts the removed factor.
        rotated = services().sessions.forget_factor(session, removed_id)
        if rotated is not None:
            set_session_cookie(rotated[0])
        return _render(user, message=f"{name} removed.")
    abort(400)
