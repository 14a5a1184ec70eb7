"""The role hierarchy of the help-desk actions, cell by cell.

Actor role (user, helpdesk, admin) x target (a user, a help-desk agent, an admin, and the
actor's own account) x every action of :data:`idp.admin.access.ACTIONS`, on both
backends. An allowed cell must succeed and change the target the way the action says;
a refused cell must answer 403, leave the target's row, factors, recovery codes,
refresh tokens, sessions and mailbox exactly as they were, and be audited. The policy
is written out again here (:func:`expected`) rather than read from the code, so the
test fails if the code's rule drifts from the documented one.

A new action added to ``ACTIONS`` without an entry in :data:`EFFECTS` fails
:func:`test_every_action_has_an_effect_to_check` (and its matrix cells), so it cannot
slip past the matrix.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import inspect

from idp.admin.access import ACTIONS, MIN_REASON, may_act
from idp.extensions import db
from idp.models import Factor, GroupMember, RecoveryCode, RefreshToken, User
from idp.models.base import utcnow
from tests.integration import test_admin_access as access
from tests.integration.test_admin_access import audit_events, signed_in

settings = access.settings

ACTORS = ("user", "helpdesk", "admin")
TARGETS = ("user", "helpdesk", "admin", "self")
REFUSALS = ("self", "admin_only", "helpdesk_target", "admin_target", "reason_required")
REASON = "ticket 4711, identity checked by a call back"
NEW_ROLE = {"user": "helpdesk", "helpdesk": "user", "admin": "helpdesk"}


def expected(actor: str, target: str, action: str, *, reason: str | None) -> bool:
    """The documented hierarchy (docs/ADMIN.md), independent of the code."""
    if actor not in ("helpdesk", "admin") or target == "self":
        return False
    if action == "role" and actor != "admin":
        return False
    if target == "user":
        return True
    if target == "helpdesk":
        return actor == "admin"
    return actor == "admin" and len(" ".join((reason or "").split())) >= MIN_REASON


# -- what each action must change ---------------------------------------------------------


def _outbox(app) -> list[dict]:
    path = app.extensions["idp"].settings.delivery.outbox
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _get(app, uid: int) -> User:
    with app.app_context():
        user = db.session.get(User, uid)
        db.session.expunge(user)
        return user


def _sessions(app, uid: int) -> int:
    from idp.services import services

    with app.app_context():
        return len(services().sessions.sessions_of(uid))


def _tokens_revoked(app, uid: int) -> bool:
    with app.app_context():
        rows = db.session.execute(db.select(RefreshToken).filter_by(user_id=uid)).scalars()
        return all(r.revoked_at is not None for r in rows)


def _factor_count(app, uid: int) -> int:
    with app.app_context():
        return len(db.session.execute(db.select(Factor).filter_by(user_id=uid)).all())


def _set(app, uid: int, **values: Any) -> None:
    with app.app_context():
        user = db.session.get(User, uid)
        for k, v in values.items():
            setattr(user, k, v)
        db.session.commit()


def _locked_everywhere(app, uid: int) -> None:
    later = utcnow() + timedelta(minutes=30)
    _set(app, uid, locked_until=later, admin_locked_until=later, mfa_locked_until=later,
         failed_logins=4, mfa_failures=3)  # fmt: skip


def _disabled_unless_own(app, uid: int, own: bool) -> None:
    # The actor's own account stays active, or it could not sign in to try.
    if not own:
        _set(app, uid, status="disabled")


@dataclass(frozen=True)
class Effect:
    """How to prepare the target so the action has something to do, the form fields
    (given the target's role), the audit event of a success and what must be true after
    it (given the target's role before)."""

    event: str
    check: Callable[[Any, int, str], None]
    prepare: Callable[[Any, int, bool], None] = lambda app, uid, own: None
    fields: Callable[[str], dict[str, str]] = lambda target_role: {}


def _check_lock(app, uid, _role):
    user = _get(app, uid)
    assert user.admin_locked_until > utcnow() + timedelta(hours=23)
    assert user.locked_until is None  # the failed-attempt lock is another column
    assert _sessions(app, uid) == 0 and _tokens_revoked(app, uid)


def _check_unlock(app, uid, _role):
    user = _get(app, uid)
    assert (user.locked_until, user.admin_locked_until, user.mfa_locked_until) == (None,) * 3
    assert (user.failed_logins, user.mfa_failures) == (0, 0)


def _check_disable(app, uid, _role):
    assert _get(app, uid).status == "disabled"
    assert _sessions(app, uid) == 0 and _tokens_revoked(app, uid)


def _check_enable(app, uid, _role):
    assert _get(app, uid).status == "active"


def _check_reset(app, uid, _role):
    assert _factor_count(app, uid) == 0
    assert _sessions(app, uid) == 0 and _tokens_revoked(app, uid)


def _check_revoke(app, uid, _role):
    assert _sessions(app, uid) == 0 and _tokens_revoked(app, uid)


def _check_resend(app, uid, _role):
    email = _get(app, uid).email
    assert any(m["to"] == email for m in _outbox(app))
    (event,) = audit_events(app, "user.verification_resent")
    assert event.outcome == "success"


def _check_role(app, uid, role_before):
    assert _get(app, uid).role == NEW_ROLE[role_before]


def _a_group(app, uid, own):
    from idp.groups import create_group, find_group

    with app.app_context():
        if find_group("suppliers") is None:
            create_group("suppliers")


def _check_groups(app, uid, _role):
    from idp.groups import group_names

    with app.app_context():
        assert group_names(uid) == ["suppliers"]


EFFECTS: dict[str, Effect] = {
    "lock": Effect("user.locked", _check_lock, fields=lambda role: {"hours": "24"}),
    "unlock": Effect("user.unlocked", _check_unlock,
                     prepare=lambda app, uid, own: _locked_everywhere(app, uid)),
    "disable": Effect("user.disabled", _check_disable),
    "enable": Effect("user.enabled", _check_enable, prepare=_disabled_unless_own),
    "reset_mfa": Effect("mfa.reset", _check_reset),
    "revoke": Effect("user.sessions_revoked", _check_revoke),
    "resend_verification": Effect("user.verification_resent", _check_resend,
                                  prepare=lambda app, uid, own: _set(app, uid,
                                                                     email_verified=False)),
    "role": Effect("user.role_changed", _check_role,
                   fields=lambda role: {"role": NEW_ROLE[role]}),
    "groups": Effect("group.member_added", _check_groups, prepare=_a_group,
                     fields=lambda role: {"op": "add", "group": "suppliers"}),
}  # fmt: skip


def test_every_action_has_an_effect_to_check():
    assert set(EFFECTS) == set(ACTIONS)


# -- the state that must not move ------------------------------------------------------------


def _row(obj) -> dict[str, Any]:
    return {a.key: getattr(obj, a.key) for a in inspect(type(obj)).column_attrs}


def snapshot(app, uid: int) -> dict[str, Any]:
    """Everything an action could change about a user, for before/after comparison."""
    from idp.services import services

    with app.app_context():
        user = db.session.get(User, uid)
        rows = {
            model.__name__: sorted(
                (_row(r) for r in db.session.execute(
                    db.select(model).filter_by(user_id=uid)).scalars()),
                key=lambda r: r["id"],
            )
            for model in (Factor, RecoveryCode, RefreshToken)
        }  # fmt: skip
        store = services().store
        groups = sorted(db.session.execute(
            db.select(GroupMember.group_id).filter_by(user_id=uid)).scalars())  # fmt: skip
        return {
            "user": _row(user),
            **rows,
            "groups": groups,
            "sessions": sorted(store.members(f"user_sessions:{uid}")),
            "live_sessions": len(services().sessions.sessions_of(uid)),
            "mail": [m for m in _outbox(app) if m["to"] == user.email],
        }


# -- the cells -----------------------------------------------------------------------------------

_serial = itertools.count(1)


def _person(app, make_user, role: str) -> int:
    """A user of *role* with an authenticator app, recovery codes, a refresh token and
    two live browser sessions."""
    from idp.services import services

    n = next(_serial)
    uid, _ = make_user(f"{role}{n}@example.com", name=f"{role.title()} {n}", role=role)
    with app.app_context():
        svc = services()
        secret = pyotp.random_base32(32)
        db.session.add(Factor(user_id=uid, type="totp", label="phone", status="active",
                              secret_enc=svc.secrets.encrypt(secret, context=f"totp:{uid}"),
                              activated_at=utcnow()))  # fmt: skip
        db.session.add(RecoveryCode(user_id=uid, code_hash=f"{n:064x}"))
        db.session.add(RefreshToken(token_hash=f"{n:064x}", family_id=f"fam{n}", client_id="rp",
                                    user_id=uid, expires_at=utcnow() + timedelta(days=1)))  # fmt: skip
        db.session.commit()
        svc.sessions.establish(uid, "pwd")
        svc.sessions.establish(uid, "pwd")
    return uid


CELLS = [
    pytest.param(actor, target, action, REASON, id=f"{actor}-on-{target}-{action}")
    for actor in ACTORS
    for target in TARGETS
    for action in ACTIONS
] + [
    # An administrator acting on another administrator without saying why.
    pytest.param("admin", "admin", action, None, id=f"admin-on-admin-{action}-no-reason")
    for action in ACTIONS
]


@pytest.mark.parametrize("actor_role,target,action,reason", CELLS)
def test_role_matrix(app, make_user, actor_role, target, action, reason):
    effect = EFFECTS[action]
    actor = _person(app, make_user, actor_role)
    own = target == "self"
    uid = actor if own else _person(app, make_user, target)
    target_role = actor_role if own else target
    effect.prepare(app, uid, own)
    browser = signed_in(app, actor)
    before = snapshot(app, uid)

    fields = {"action": action, "confirm": "yes", **effect.fields(target_role)}
    if reason is not None:
        fields["reason"] = reason
    elif action == "reset_mfa":
        fields["reason"] = ""
    resp = browser.post(f"/admin/users/{uid}/action", fields)

    allowed = expected(actor_role, target, action, reason=reason)
    refused = audit_events(app, "admin.action_refused")
    if allowed:
        assert resp.status_code == 302, resp.text
        assert resp.headers["Location"] == f"/admin/users/{uid}"
        effect.check(app, uid, target_role)
        assert snapshot(app, uid) != before
        (event,) = audit_events(app, effect.event)
        assert event.user_id == uid and event.details["actor"] == f"user:{actor}"
        if target == "admin":
            assert event.details["reason"] == REASON
        assert refused == []
        return
    assert resp.status_code == 403, resp.text
    assert "Not allowed" in resp.text
    assert snapshot(app, uid) == before
    assert audit_events(app, effect.event) == []
    if actor_role == "user":  # stopped at the door, before any action is looked at
        (denied,) = audit_events(app, "admin.access_denied")
        assert denied.user_id == actor and denied.outcome == "failure"
        assert refused == []
        return
    (event,) = refused
    assert event.outcome == "failure" and event.user_id == uid
    details = event.details
    assert details["actor"] == f"user:{actor}" and details["action"] == action
    assert details["target"] == f"user:{uid}" and details["target_role"] == target_role
    assert details["reason"] in REFUSALS
    if own:
        assert details["reason"] == "self"
    elif actor_role == target == "admin":
        assert details["reason"] == "reason_required"


@pytest.mark.parametrize("reason", ["", "   ", "ok", " a  b "])
def test_admin_on_admin_needs_a_real_reason(app, make_user, reason):
    actor = _person(app, make_user, "admin")
    uid = _person(app, make_user, "admin")
    browser = signed_in(app, actor)
    before = snapshot(app, uid)
    resp = browser.post(f"/admin/users/{uid}/action", {"action": "revoke", "reason": reason})
    assert resp.status_code == 403 and "reason" in resp.text.lower()
    assert snapshot(app, uid) == before
    (event,) = audit_events(app, "admin.action_refused")
    assert event.details["reason"] == "reason_required"


def test_admin_on_admin_reset_keeps_one_reason_for_the_user_and_the_audit(app, make_user):
    actor = _person(app, make_user, "admin")
    uid = _person(app, make_user, "admin")
    browser = signed_in(app, actor)
    resp = browser.post(f"/admin/users/{uid}/action",
                        {"action": "reset_mfa", "reason": REASON, "confirm": "yes"})  # fmt: skip
    assert resp.status_code == 302
    (event,) = audit_events(app, "mfa.reset")
    assert event.details["reason"] == REASON and event.details["actor"] == f"user:{actor}"
    mail = [m for m in _outbox(app) if m["to"] == _get(app, uid).email]
    assert REASON in mail[-1]["text"]


# -- the rule itself, as a table ---------------------------------------------------------------


def test_may_act_is_the_documented_table():
    """The pure rule over every combination, unknown roles and actions included."""
    roles = ("user", "helpdesk", "admin")
    for actor, target, action, reason in itertools.product(
        roles + ("root",), roles + ("self",), ACTIONS + ("explode",),
        (None, "", "abc", "abcd", REASON),
    ):  # fmt: skip
        target_role = actor if target == "self" else target
        verdict = may_act(actor, target_role, action, self_target=target == "self",
                          reason=reason)  # fmt: skip
        want = action in ACTIONS and expected(actor, target, action, reason=reason)
        assert verdict.allowed is want, (actor, target, action, reason, verdict)
        assert verdict.allowed or verdict.message  # a refusal always says why
