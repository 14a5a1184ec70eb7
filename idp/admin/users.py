"""``/admin/users``: the help desk. Search by email or name; a user's page shows status,
the two sign-in locks, factors (type, label, last used; never secrets), sessions and
recent events, and the actions the viewer may take on this account: lock/unlock,
disable/enable, reset MFA, revoke sessions and refresh tokens, resend the verification
email, and (administrators) the role.

Every action goes through :func:`idp.admin.service.authorize` (the role hierarchy of
:func:`idp.admin.access.may_act`) before anything changes; a refusal is a 403 page and
an audit event. The actions that end sessions or take access away (:data:`CONFIRM`)
need ``confirm=yes`` (the page's confirmation dialog sends it); without it nothing
changes and a confirmation page answers. After an action the browser is redirected to
the user's page, which shows what was done once (:mod:`idp.flash`): nothing in the URL
is shown as a message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from flask import Response, abort, current_app, redirect, request, url_for

from .. import groups as group_service
from ..extensions import db
from ..flash import flash
from ..models import User
from ..models.base import utcnow
from ..security.text import ascii_int
from . import service
from .access import (
    ACTIONS,
    MIN_REASON,
    ROLES,
    Staff,
    Verdict,
    clean_reason,
    may_act,
    offered_actions,
    reason_required,
    staff_only,
)
from .views import bp, render


def _load(user_id: int) -> User:
    user = db.session.get(User, user_id)
    if user is None:
        abort(404)
    return user


def _page(staff: Staff, user: User, *, error: str | None = None, status: int = 200) -> Response:
    mfa = current_app.extensions["idp.mfa"]
    now = utcnow()
    own = staff.user.id == user.id
    offered = offered_actions(staff.user.role, user.role, self_target=own)
    # When the page offers nothing, it says why in the rule's own words.
    refusal = None
    if not offered:
        refusal = may_act(staff.user.role, user.role, ACTIONS[0], self_target=own,
                          reason=None).message  # fmt: skip
    return render(
        "admin/user.html",
        staff,
        status=status,
        user=user,
        factors=mfa.factors(user, active_only=False),
        names={t: impl.display_name for t, impl in mfa.registry.items()},
        sessions=service.user_sessions(user),
        events=service.recent_events(user),
        locked=user.is_locked(now),
        admin_locked=user.is_admin_locked(now),
        mfa_locked=bool(user.mfa_locked_until and user.mfa_locked_until > now),
        lock_hours=service.LOCK_HOURS,
        roles=ROLES,
        offered=offered,
        needs_reason=bool(offered) and reason_required(user.role),
        min_reason=MIN_REASON,
        refusal=refusal,
        own=own,
        error=error,
        user_groups=group_service.groups_of(user.id),
        all_groups=group_service.list_groups(),
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
    return _page(staff, _load(user_id))


# -- the actions: each takes the user, the form, the actor and the (cleaned) reason, and
# -- returns what to tell the operator; ActionError for a form to fill in again.

Handler = Callable[[User, Mapping[str, str], str, str | None], str]


def _lock(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    hours = form.get("hours", "")
    service.lock(user, hours=ascii_int(hours, max_digits=4) or 0, actor=actor, reason=reason)
    return "Sign-in locked; sessions ended."


def _unlock(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    service.unlock(user, actor=actor, reason=reason)
    return "Sign-in and second-step locks cleared."


def _disable(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    service.set_status(user, "disabled", actor=actor, reason=reason)
    return "Account disabled."


def _enable(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    service.set_status(user, "active", actor=actor, reason=reason)
    return "Account enabled."


def _reset_mfa(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    count = service.reset_mfa(user, reason=reason or "", actor=actor)
    return f"Removed {count} sign-in method(s); the user was emailed and must set one up."


def _revoke(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    sessions, families = service.revoke_sessions(user, actor=actor, reason=reason)
    return f"Ended {sessions} session(s) and {families} refresh-token grant(s)."


def _resend(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    sent = service.resend_verification(user, actor=actor, reason=reason)
    return "Verification email sent." if sent else "The verification email could not be sent."


def _role(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    service.set_role(user, form.get("role", ""), actor=actor, reason=reason)
    return f"Role is now {user.role}."


def _groups(user: User, form: Mapping[str, str], actor: str, reason: str | None) -> str:
    """Add the user to a group (``op=add``) or take them out of it (``op=remove``); the
    ``groups`` claim changes with the next token (idp.groups)."""
    op, name = form.get("op", ""), form.get("group", "")
    group = group_service.find_group(name)
    if group is None or op not in ("add", "remove"):
        raise service.ActionError("Choose a group.")
    try:
        if op == "add":
            group_service.add_member(group, user, actor=actor, reason=reason)
            return f"Added to the group {group.name}."
        group_service.remove_member(group, user, actor=actor, reason=reason)
        return f"Removed from the group {group.name}."
    except group_service.GroupError as exc:
        raise service.ActionError(str(exc)) from None


HANDLERS: dict[str, Handler] = {
    "lock": _lock,
    "unlock": _unlock,
    "disable": _disable,
    "enable": _enable,
    "reset_mfa": _reset_mfa,
    "revoke": _revoke,
    "resend_verification": _resend,
    "role": _role,
    "groups": _groups,
}
# One list of actions (access.ACTIONS) rules the page, the hierarchy and the tests: an
# action without a handler, or a handler outside the list (and so outside the rule), is
# an error when the application starts, not a gap found in production.
if set(HANDLERS) != set(ACTIONS):
    raise RuntimeError(f"help-desk handlers {sorted(HANDLERS)} != ACTIONS {sorted(ACTIONS)}")


#: Actions that need ``confirm=yes``: the ones that end sessions or take access away.
CONFIRM = frozenset({"reset_mfa", "disable", "revoke", "lock"})


def _refused(staff: Staff, user: User, verdict: Verdict) -> Response:
    return render("admin/refused.html", staff, status=403, user=user, message=verdict.message)


@bp.post("/users/<int:user_id>/action")
@staff_only()
def user_action(staff: Staff, user_id: int) -> Response:
    user = _load(user_id)
    action = request.form.get("action", "")
    handler = HANDLERS.get(action)
    if handler is None:
        abort(400)
    raw_reason = request.form.get("reason")
    verdict = service.authorize(staff, user, action, reason=raw_reason)
    if not verdict.allowed:
        return _refused(staff, user, verdict)
    if action in CONFIRM and request.form.get("confirm") != "yes":
        # Nothing changes yet: the page's dialog sends confirm=yes; without it (no
        # JavaScript, or a bare POST) the operator confirms on a page of its own.
        fields = {k: request.form.get(k, "") for k in ("reason", "hours") if k in request.form}
        return render("admin/confirm_action.html", staff, user=user, action=action,
                      fields=fields)  # fmt: skip
    try:
        note = handler(user, request.form, staff.actor, clean_reason(raw_reason) or None)
    except service.ActionError as exc:
        db.session.rollback()
        return _page(staff, user, error=str(exc), status=400)
    flash(note)
    return redirect(url_for("admin.user", user_id=user.id))
