"""``/admin/users``: the help desk. Search by email or name; a user's page shows status,
factors (type, label, last used; never secrets), sessions and recent events, and the
actions: lock/unlock, disable/enable, reset MFA, revoke sessions and refresh tokens,
resend the verification email."""

from __future__ import annotations

from flask import Response, abort, current_app, redirect, request, url_for

from ..extensions import db
from ..models import User
from . import service
from .access import ROLES, Staff, staff_only
from .views import bp, render


def _load(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _page(staff: Staff, user: User, *, message=None, error=None, status=200) -> Response:
    mfa = current_app.extensions["idp.mfa"]
    from ..models.base import utcnow

    return render(
        "admin/user.html",
        staff,
        status=status,
        user=user,
        factors=mfa.factors(user, active_only=False),
        names={t: impl.display_name for t, impl in mfa.registry.items()},
        sessions=service.user_sessions(user),
        events=service.recent_events(user),
        locked=user.is_locked(utcnow()),
        mfa_locked=bool(user.mfa_locked_until and user.mfa_locked_until > utcnow()),
        lock_hours=service.LOCK_HOURS,
        roles=ROLES,
        message=message,
        error=error,
    )


@bp.get("/users")
@staff_only()
def users(staff: Staff) -> Response:
    term = request.args.get("q", "")
    results = service.search_users(term) if term.strip() else None
    return render("admin/users.html", staff, q=term, results=results)


@bp.get("/users/<int:user_id>")
@staff_only()
def user(staff: Staff, user_id: int) -> Response:
    return _page(staff, _load(user_id), message=request.args.get("m"))


@bp.post("/users/<int:user_id>/action")
@staff_only()
def user_action(staff: Staff, user_id: int) -> Response:
    user = _load(user_id)
    action = request.form.get("action")
    actor = staff.actor
    try:
        if action == "lock":
            hours = request.form.get("hours", "")
            service.lock(user, hours=int(hours) if hours.isdigit() else 0, actor=actor)
            note = "Sign-in locked; sessions ended."
        elif action == "unlock":
            service.unlock(user, actor=actor)
            note = "Sign-in and second-step locks cleared."
        elif action in ("disable", "enable"):
            service.set_status(user, "disabled" if action == "disable" else "active", actor=actor)
            note = f"Account {action}d."
        elif action == "reset_mfa":
            count = service.reset_mfa(user, reason=request.form.get("reason", ""), actor=actor)
            note = f"Removed {count} sign-in method(s); the user was emailed and must set one up."
        elif action == "revoke":
            sessions, families = service.revoke_sessions(user, actor=actor)
            note = f"Ended {sessions} session(s) and {families} refresh-token grant(s)."
        elif action == "resend_verification":
            sent = service.resend_verification(user, actor=actor)
            note = (
                "Verification email sent." if sent else "The verification email could not be sent."
            )
        elif action == "role":
            if staff.user.role != "admin":
                abort(403)
            if user.id == staff.user.id:
                raise service.ActionError("You cannot change your own role.")
            service.set_role(user, request.form.get("role", ""), actor=actor)
            note = f"Role is now {user.role}."
        else:
            abort(400)
    except service.ActionError as exc:
        db.session.rollback()
        return _page(staff, user, error=str(exc), status=400)
    return redirect(url_for("admin.user", user_id=user.id, m=note))
