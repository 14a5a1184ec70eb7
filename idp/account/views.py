"""``/account/security``: the user's factors, recovery codes and recent activity.

Renaming or choosing the default needs a signed-in session; removing a factor needs a
second-factor challenge within ``[mfa] reauth_window`` (step-up) and a confirmation
(``confirm=yes``), and the last factor cannot be removed while MFA is required. Every
action ends with a redirect to the account page, which says once what was done
(post/redirect/get, :mod:`idp.flash`): a reload never repeats it.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import audit
from ..extensions import db
from ..flash import flash, take_flashes
from ..mfa.webauthn import signs_in_alone
from ..models import AuditEvent, Factor
from ..services import services
from ..web import current_session, current_user, set_session_cookie, validate_csrf

bp = Blueprint("account", __name__, url_prefix="/account")

EVENT_TEXT = {
    "login.success": _l("Signed in"),
    "login.failure": _l("Failed sign-in attempt"),
    "login.lockout": _l("Sign-in paused after failed attempts"),
    "login.passkey": _l("Signed in with a passkey"),
    "logout": _l("Signed out"),
    "mfa.success": _l("Second sign-in step passed"),
    "mfa.failure": _l("Failed second sign-in step"),
    "mfa.lockout": _l("Second sign-in step paused after failed attempts"),
    "mfa.factor_added": _l("Sign-in method added"),
    "mfa.factor_removed": _l("Sign-in method removed"),
    "mfa.recovery_codes_created": _l("New recovery codes created"),
    "mfa.reset": _l("Sign-in methods reset by the help desk"),
    "mfa.postponed": _l("Second sign-in step set-up postponed"),
    "consent.granted": _l("Access granted to an application"),
    "password.changed": _l("Password changed"),
    "password.reset": _l("Password reset with an email link"),
    "email.changed": _l("Email address changed"),
    "email.verified": _l("Email address verified"),
}


def _mfa():
    from flask import current_app

    return current_app.extensions["idp.mfa"]


def _describe(event: AuditEvent) -> str:
    text = str(EVENT_TEXT.get(event.event, event.event))
    if event.event == "login.passkey" and event.outcome == "failure":
        text = str(_l("Failed sign-in with a passkey"))
    factor = (event.details or {}).get("factor")
    if factor and factor in _mfa().registry:
        text += f" ({_mfa().registry[factor].display_name})"
    return text


def _render(user, message: str | None = None, error: str | None = None, status: int = 200):
    """The account page; it also shows the one-time messages the server left for this
    browser (:mod:`idp.flash`), which is how an action reports what it did."""
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
            # Security keys and passkeys that sign in without a password (the others
            # are a second step only).
            alone={f.id for f in factors if signs_in_alone(f)},
            remaining=remaining if has_recovery else None,
            low_codes=remaining
            if has_recovery and remaining is not None and remaining <= 3
            else None,
            offers=offers,
            events=list(events),
            describe=_describe,
            message=message,
            error=error,
            flashes=take_flashes(),
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
        message = _("%(method)s added.", method=_mfa().registry[added].display_name)
    return _render(user, message=message)


def _done(text: str) -> Response:
    """Post/redirect/get: say what was done once, on the account page (a GET), so that a
    reload shows the page again instead of repeating the action."""
    flash(text)
    return redirect(url_for("account.security"), code=303)


@bp.post("/factors/<int:factor_id>")
def factor_action(factor_id: int) -> Response:
    """Rename, make default or remove one of the user's factors, then redirect to the
    account page with a message. Removing asks for confirmation first: without
    ``confirm=yes`` (which the page's confirmation dialog, or the confirmation page shown
    here, adds) nothing is removed and the confirmation page answers."""
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
            return _render(user, error=_("Enter a name."), status=400)
        factor.label = label
        audit.record("mfa.factor_renamed", user_id=user.id, factor_id=factor.id)
        db.session.commit()
        return _done(_("Name saved."))
    if action == "default":
        if factor.type == "recovery":
            return _render(
                user, error=_("Recovery codes cannot be the default method."), status=400
            )
        for f in mfa.factors(user):
            f.is_default = f.id == factor.id
        audit.record("mfa.default_changed", user_id=user.id, factor_id=factor.id)
        db.session.commit()
        return _done(_("Default method changed."))
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
                error=_(
                    "This is your only sign-in method, and one is required. Add another "
                    "method before removing this one."
                ),
                status=409,
            )
        name = mfa.registry[factor.type].display_name if factor.type in mfa.registry else ""
        if request.form.get("confirm") != "yes":
            return Response(
                render_template("account/confirm_remove.html", factor=factor,
                                name=name or _("this method")),
            )  # fmt: skip
        removed_id = factor.id
        mfa.remove(user, factor, keep_sid=session.sid)
        # This browser stays signed in, but no longer counts the removed factor (a
        # session whose first step was that passkey ends: nothing else signed it in).
        rotated = services().sessions.forget_factor(session, removed_id)
        if rotated is not None:
            set_session_cookie(rotated[0])
        return _done(_("%(method)s removed.", method=name))
    abort(400)
