"""Who may use the admin pages: a role, and a recent second factor; and on whom each
help-desk action may be taken.

Roles (``users.role``): ``user`` (no access), ``helpdesk`` (the help-desk pages and the
MFA adoption dashboard) and ``admin`` (everything, including clients and the audit
export). Every admin page also needs a session whose second factor reached
``[admin] required_acr`` within ``[admin] mfa_max_age`` seconds; otherwise pages
redirect to the challenge page in its admin context (``/mfa/challenge?next=/admin/...``)
and the JSON API answers 401.

Getting in is not enough to act: :func:`may_act` is the one rule every action on a user
goes through (the hierarchy of ``docs/ADMIN.md``), so that the help desk cannot take
over an administrator's account by resetting its second factors and using its mailbox.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import wraps
from typing import Any

from flask import Response, jsonify, redirect, request, url_for

from .. import audit
from ..auth.assurance import FIRST_STEPS, achieved, factors_reaching, level_index
from ..auth.session import BrowserSession
from ..models import User
from ..services import services
from ..web import current_session, current_user, error_page, safe_admin_path, validate_csrf

ROLES = ("user", "helpdesk", "admin")
STAFF = ("helpdesk", "admin")

#: Every action the help-desk pages take on a user account, help-desk first. The user
#: page offers them, the action view dispatches them and the role-matrix test walks them
#: from this one list, so a new action is under the hierarchy (and tested) at once.
HELPDESK_ACTIONS = ("lock", "unlock", "disable", "enable", "reset_mfa", "revoke",
                    "resend_verification", "groups")  # fmt: skip
#: Actions only an administrator may take (on top of the hierarchy below).
ADMIN_ONLY_ACTIONS = ("role",)
ACTIONS = HELPDESK_ACTIONS + ADMIN_ONLY_ACTIONS

#: The shortest reason accepted where one is required (an administrator's account, an
#: MFA reset): enough to rule out an empty or one-key answer.
MIN_REASON = 4
REASON_MAX = 300


def clean_reason(text: str | None) -> str:
    """A reason as it is audited (and emailed): whitespace collapsed, at most 300
    characters, so padding with spaces does not pass for a reason."""
    return " ".join((text or "").split())[:REASON_MAX]


@dataclass(frozen=True)
class Verdict:
    """What :func:`may_act` decided. ``code`` names the rule that refused (audited as
    the refusal's ``reason``), ``message`` is what the operator is told."""

    allowed: bool
    code: str
    message: str


_OK = Verdict(True, "ok", "")


def may_act(actor_role: str, target_role: str, action: str, *, self_target: bool,
            reason: str | None) -> Verdict:  # fmt: skip
    """Whether a staff member of *actor_role* may take *action* on an account of
    *target_role*.

    The help desk acts on ``user`` accounts only; only administrators act on ``helpdesk``
    accounts; an ``admin`` account is acted on only by another administrator who gives
    a reason (at least :data:`MIN_REASON` characters), so that taking over an
    administrator always leaves a justification in the audit trail. Nobody acts on
    their own account here (the account page has its own checks, such as the current
    password). Unknown roles and actions are refused: the rule fails closed.
    """
    if actor_role not in STAFF:
        return Verdict(False, "not_staff", "Your account may not use the help-desk pages.")
    if action not in ACTIONS:
        return Verdict(False, "unknown_action", "This action does not exist.")
    if self_target:
        return Verdict(False, "self", "This is your own account: manage it from your "
                       "account page, not from the help desk.")  # fmt: skip
    if action in ADMIN_ONLY_ACTIONS and actor_role != "admin":
        return Verdict(False, "admin_only", "Only an administrator may do this.")
    if target_role == "user":
        return _OK
    if target_role == "helpdesk":
        if actor_role != "admin":
            return Verdict(False, "helpdesk_target",
                           "Only an administrator may act on a help-desk account.")  # fmt: skip
        return _OK
    if target_role == "admin":
        if actor_role != "admin":
            return Verdict(False, "admin_target",
                           "Only another administrator may act on an administrator's "
                           "account.")  # fmt: skip
        if len(clean_reason(reason)) < MIN_REASON:
            return Verdict(False, "reason_required",
                           "This is an administrator's account: say why (at least "
                           f"{MIN_REASON} characters); the reason is kept in the audit "
                           "trail.")  # fmt: skip
        return _OK
    return Verdict(False, "unknown_role", "This account has a role the help desk does not know.")


def offered_actions(actor_role: str, target_role: str, *, self_target: bool) -> tuple[str, ...]:
    """The actions the user page shows: those :func:`may_act` allows, given a reason
    where one is required (the page then asks for it)."""
    return tuple(
        a for a in ACTIONS
        if may_act(actor_role, target_role, a, self_target=self_target,
                   reason=None).code in ("ok", "reason_required")
    )  # fmt: skip


def reason_required(target_role: str) -> bool:
    """Whether every action on an account of *target_role* needs a reason."""
    return may_act("admin", target_role, HELPDESK_ACTIONS[0], self_target=False,
                   reason=None).code == "reason_required"  # fmt: skip


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
    """The acr reached by the session's first step (the password or a passkey alone)
    and the second factors passed in the last *max_age* seconds (None without a first
    step). A passkey sign-in passed a second factor too ("webauthn")."""
    first = [m for m in session.methods if m in FIRST_STEPS]
    if not first:
        return None
    recent = [m for m, at in session.methods.items()
              if m not in FIRST_STEPS and now - at <= max_age]  # fmt: skip
    return achieved([*first, *recent])


def step_up_factors(types) -> list[str]:
    """Factor types that reach ``[admin] required_acr`` together with the password."""
    return factors_reaching(types, services().settings.admin.required_acr)


def mfa_fresh(session: BrowserSession) -> bool:
    settings = services().settings.admin
    acr = recent_acr(session, int(time.time()), settings.mfa_max_age)
    return acr is not None and level_index(acr) >= level_index(settings.required_acr)


safe_next = safe_admin_path  # (the admin pages' name for it)


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
        # The one challenge page, in its admin context (factors that reach required_acr).
        return redirect(url_for("mfa.challenge", next=target.rstrip("?")))
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
