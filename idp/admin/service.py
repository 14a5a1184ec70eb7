"""Help-desk actions, the MFA adoption figures and the reminder batches.

Views parse and render; the logic lives here. Every change is audited with the acting
administrator (``actor="user:<id>"``) in the same commit as the change, with the reason
the operator gave when there is one. Whether an action may be taken at all is decided
first by :func:`authorize` (the hierarchy of :func:`idp.admin.access.may_act`), which
audits every refusal.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from flask import current_app, render_template
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import and_, case, exists, func, or_, select, update

from .. import audit
from ..delivery import DeliveryError, EmailMessage
from ..extensions import db
from ..i18n import account_locale, help_hours
from ..models import AuditEvent, Factor, User
from ..models.base import utcnow
from ..services import services
from .access import MIN_REASON, ROLES, Staff, Verdict, clean_reason, may_act


class ActionError(ValueError):
    """A help-desk action that cannot be done; the message is shown to the operator."""


def _mfa():
    return current_app.extensions["idp.mfa"]


def _revoke_all(user: User) -> tuple[int, int]:
    """End every browser session and refresh-token family of *user*."""
    from ..oidc.tokens import TokenService

    families = TokenService(services()).revoke_for_user(user.id)
    return services().sessions.destroy_all(user.id), families


# -- search and the user's page -------------------------------------------------------


def _like(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


def search_users(term: str, limit: int = 50) -> list[User]:
    """Users whose email or name contains *term* (case-insensitive)."""
    term = term.strip()[:200]
    if not term:
        return []
    pattern = _like(term)
    return list(
        db.session.execute(
            select(User)
            .where(
                or_(
                    func.lower(User.email).like(pattern, escape="\\"),
                    func.lower(func.coalesce(User.name, "")).like(pattern, escape="\\"),
                )
            )
            .order_by(User.email)
            .limit(limit)
        ).scalars()
    )


@dataclass
class SessionInfo:
    sid: str
    created_at: dt.datetime
    last_seen: dt.datetime
    amr: list[str]


def user_sessions(user: User) -> list[SessionInfo]:
    """The user's live browser sessions (never the cookie or its store key)."""
    store = services().store
    out = []
    for key in store.members(f"user_sessions:{user.id}"):
        raw = store.get(f"session:{key}")
        if raw is None:
            continue
        data = json.loads(raw)
        out.append(
            SessionInfo(
                sid=data["sid"][:8],
                created_at=dt.datetime.fromtimestamp(data["created_at"], dt.UTC),
                last_seen=dt.datetime.fromtimestamp(data["last_seen"], dt.UTC),
                amr=list(data.get("amr") or []),
            )
        )
    return sorted(out, key=lambda s: s.last_seen, reverse=True)


def recent_events(user: User, limit: int = 25) -> list[AuditEvent]:
    return list(
        db.session.execute(
            select(AuditEvent)
            .where(AuditEvent.user_id == user.id)
            .order_by(AuditEvent.id.desc())
            .limit(limit)
        ).scalars()
    )


# -- help-desk actions ---------------------------------------------------------------


def authorize(staff: Staff, target: User, action: str, *, reason: str | None) -> Verdict:
    """Whether *staff* may take *action* on *target* (:func:`may_act`); a refusal is
    audited as ``admin.action_refused`` (on the target's trail, with the actor, both
    roles, the action and the rule that refused) and changes nothing else."""
    verdict = may_act(staff.user.role, target.role, action,
                      self_target=staff.user.id == target.id, reason=reason)  # fmt: skip
    if not verdict.allowed:
        audit.record_now("admin.action_refused", outcome="failure", user_id=target.id,
                         actor=staff.actor, actor_role=staff.user.role,
                         target=f"user:{target.id}", target_role=target.role,
                         action=action[:40], reason=verdict.code)  # fmt: skip
    return verdict


LOCK_HOURS = (1, 24, 168)


def lock(user: User, *, hours: int, actor: str, reason: str | None = None) -> None:
    """Pause sign-in for *hours* (e.g. a suspected compromise) and end sessions.

    This is the administrative lock (``admin_locked_until``), apart from the lock that
    failed passwords set (``locked_until``): a password reset clears the latter, so a
    lock on the same column would end as soon as whoever holds the mailbox resets the
    password. Only an unlock (or the end of the period) lifts this one.
    """
    if hours not in LOCK_HOURS:
        raise ActionError("Choose how long to lock the account.")
    user.admin_locked_until = utcnow() + timedelta(hours=hours)
    sessions, families = _revoke_all(user)
    audit.record("user.locked", user_id=user.id, actor=actor, hours=hours,
                 until=user.admin_locked_until.isoformat(), sessions=sessions,
                 token_families=families, reason=reason)  # fmt: skip
    db.session.commit()


def unlock(user: User, *, actor: str, reason: str | None = None) -> None:
    """Clear both sign-in locks and the second-factor lock (audited by the MFA
    service)."""
    _mfa().unlock(user, actor=actor, reason=reason)


def set_status(user: User, status: str, *, actor: str, reason: str | None = None) -> None:
    """Disable (ends sessions and refresh tokens) or enable an account."""
    if status not in ("active", "disabled"):
        raise ActionError("Unknown status.")
    if user.status == status:
        return
    user.status = status
    details: dict[str, Any] = {}
    if status == "disabled":
        details["sessions"], details["token_families"] = _revoke_all(user)
    audit.record(f"user.{'disabled' if status == 'disabled' else 'enabled'}",
                 user_id=user.id, actor=actor, reason=reason, **details)  # fmt: skip
    db.session.commit()


def reset_mfa(user: User, *, reason: str, actor: str) -> int:
    """Remove every factor (the user must enroll again); the MFA service ends sessions
    and refresh tokens, audits and emails the user."""
    reason = clean_reason(reason)
    if len(reason) < MIN_REASON:
        raise ActionError(
            f"Say why the sign-in methods are reset (at least {MIN_REASON} characters)."
        )
    return _mfa().reset(user, reason=reason, actor=actor)


def revoke_sessions(user: User, *, actor: str, reason: str | None = None) -> tuple[int, int]:
    sessions, families = _revoke_all(user)
    audit.record("user.sessions_revoked", user_id=user.id, actor=actor, sessions=sessions,
                 token_families=families, reason=reason)  # fmt: skip
    db.session.commit()
    return sessions, families


def resend_verification(user: User, *, actor: str, reason: str | None = None) -> bool:
    """Send a new email-verification link (the account's own sender)."""
    from ..account.links import send_email_verification

    if user.email_verified:
        raise ActionError("This email address is already verified.")
    sent = send_email_verification(user)
    audit.record("user.verification_resent", outcome="success" if sent else "failure",
                 user_id=user.id, actor=actor, reason=reason)  # fmt: skip
    db.session.commit()
    return sent


def set_role(user: User, role: str, *, actor: str, reason: str | None = None) -> None:
    if role not in ROLES:
        raise ActionError(f"Unknown role {role!r}.")
    if user.role == role:
        return
    previous, user.role = user.role, role
    audit.record("user.role_changed", user_id=user.id, actor=actor, role=role,
                 previous=previous, reason=reason)  # fmt: skip
    db.session.commit()


# -- MFA adoption ------------------------------------------------------------------------


def _active_factor_of(user_col) -> Any:
    return exists(select(Factor.id).where(Factor.user_id == user_col, Factor.status == "active"))


def users_without_mfa_query():
    """Active users with no active second factor, oldest account first."""
    return (
        select(User).where(User.status == "active", ~_active_factor_of(User.id)).order_by(User.id)
    )


@dataclass
class Adoption:
    """The MFA adoption figures of ``/admin/mfa``."""

    active_users: int
    with_one: int  # at least one active factor
    with_two: int  # at least two
    by_type: dict[str, int]  # users with at least one active factor of the type
    without: int
    enforce_from: dt.date | None
    days_left: int | None  # None: no date (enforced now); 0 on or after the date
    today: dt.date
    series: list[tuple[dt.date, int]] = field(default_factory=list)  # cumulative

    @property
    def percent(self) -> int:
        return round(100 * self.with_one / self.active_users) if self.active_users else 0


def adoption(today: dt.date | None = None) -> Adoption:
    """Count active users by their active factors (recovery codes count as one factor,
    as in the sign-in policy), and the cumulative first enrollments per day."""
    today = today or utcnow().date()
    active = and_(User.status == "active", Factor.status == "active")
    per_user = (
        select(Factor.user_id, func.count(Factor.id).label("n"))
        .join(User, User.id == Factor.user_id)
        .where(active)
        .group_by(Factor.user_id)
        .subquery()
    )
    with_one, with_two = db.session.execute(
        select(
            func.count(per_user.c.user_id),
            func.coalesce(func.sum(case((per_user.c.n >= 2, 1), else_=0)), 0),
        )
    ).one()
    active_users = db.session.execute(
        select(func.count(User.id)).where(User.status == "active")
    ).scalar_one()
    by_type = dict(
        db.session.execute(
            select(Factor.type, func.count(func.distinct(Factor.user_id)))
            .join(User, User.id == Factor.user_id)
            .where(active)
            .group_by(Factor.type)
        ).all()
    )
    registry = _mfa().registry
    by_type = {t: int(by_type.get(t, 0)) for t in registry} | {
        t: int(n) for t, n in by_type.items() if t not in registry
    }
    firsts = db.session.execute(
        select(func.min(func.coalesce(Factor.activated_at, Factor.created_at)))
        .join(User, User.id == Factor.user_id)
        .where(active)
        .group_by(Factor.user_id)
    ).scalars()
    per_day: dict[dt.date, int] = {}
    for first in firsts:
        if first is None:
            continue
        if isinstance(first, str):  # SQLite aggregates lose the column type
            first = dt.datetime.fromisoformat(first)
        per_day[first.date()] = per_day.get(first.date(), 0) + 1
    series, total = [], 0
    for day in sorted(per_day):
        total += per_day[day]
        series.append((day, total))
    raw = services().settings.mfa.enforce_from
    enforce = dt.date.fromisoformat(raw) if raw else None
    days_left = max(0, (enforce - today).days) if enforce else None
    return Adoption(
        active_users=int(active_users),
        with_one=int(with_one),
        with_two=int(with_two),
        by_type=by_type,
        without=int(active_users) - int(with_one),
        enforce_from=enforce,
        days_left=days_left,
        today=today,
        series=series,
    )


# -- reminders -------------------------------------------------------------------------


def _due(cutoff: dt.datetime):
    return or_(User.mfa_reminded_at.is_(None), User.mfa_reminded_at < cutoff)


def reminders_due() -> int:
    """Users without MFA who have not been reminded within ``[admin] reminder_interval``."""
    cutoff = utcnow() - timedelta(seconds=services().settings.admin.reminder_interval)
    return db.session.execute(
        select(func.count(User.id)).where(
            User.status == "active", ~_active_factor_of(User.id), _due(cutoff)
        )
    ).scalar_one()


@dataclass
class BatchResult:
    sent: int
    failed: int
    remaining: int


def send_reminder_batch(*, actor: str) -> BatchResult:
    """Email one batch of users without MFA, at most once per ``reminder_interval`` each.

    Each user is claimed with a conditional ``UPDATE ... WHERE mfa_reminded_at IS NULL OR
    mfa_reminded_at < cutoff`` before the email goes out, so two administrators (or two
    clicks) never remind the same user twice; each send is audited.
    """
    svc = services()
    settings = svc.settings
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.admin.reminder_interval)
    candidates = db.session.execute(
        select(User.id, User.mfa_reminded_at)
        .where(User.status == "active", ~_active_factor_of(User.id), _due(cutoff))
        .order_by(User.id)
        .limit(settings.admin.reminder_batch_size)
    ).all()
    claimed: list[tuple[int, dt.datetime | None]] = []
    for user_id, previous in candidates:
        result = db.session.execute(
            update(User)
            .where(User.id == user_id, _due(cutoff))
            .values(mfa_reminded_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            claimed.append((user_id, previous))
    db.session.commit()
    info = adoption_deadline()
    sent = failed = 0
    for user_id, previous in claimed:
        user = db.session.get(User, user_id)
        with force_locale(account_locale(user, "en")):  # the user's language, not the admin's
            text = render_template(
                "admin/email/mfa_reminder.txt", user=user, service_name=settings.ui.service_name,
                enforce_from=info[0], days_left=info[1], issuer=settings.issuer,
                help_phone=settings.ui.help_phone, help_hours=help_hours(settings.ui),
            )  # fmt: skip
            subject = _("%(service)s: set up a second sign-in step",
                        service=settings.ui.service_name)  # fmt: skip
        message = EmailMessage(
            to=user.email,
            subject=subject,
            text=text,
            purpose="admin.mfa_reminder",
        )
        try:
            svc.email.send(message)
        except DeliveryError as exc:
            failed += 1
            # Give the reminder back so that a later batch can retry it.
            db.session.execute(
                update(User)
                .where(User.id == user_id, User.mfa_reminded_at == now)
                .values(mfa_reminded_at=previous)
                .execution_options(synchronize_session=False)
            )
            audit.record("mfa.reminder_failed", outcome="failure", user_id=user_id,
                         actor=actor, reason=exc.reason)  # fmt: skip
        else:
            sent += 1
            audit.record("mfa.reminder_sent", user_id=user_id, actor=actor)
        db.session.commit()
    return BatchResult(sent=sent, failed=failed, remaining=reminders_due())


def adoption_deadline() -> tuple[dt.date | None, int | None]:
    raw = services().settings.mfa.enforce_from
    if not raw:
        return None, None
    enforce = dt.date.fromisoformat(raw)
    return enforce, max(0, (enforce - utcnow().date()).days)
