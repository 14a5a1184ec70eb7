"""The MFA service: the user's factors, the shared failure counter, and the one
verification path every factor walks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .. import audit, txmemo
from ..extensions import db
from ..models import Factor, User
from ..models.base import utcnow
from ..notify import notify
from ..services import Services
from .base import FactorType, InvalidResponse, SecondFactorLocked, Verified
from .policy import UserFacts
from .recovery import RecoveryFactor
from .totp import TOTPFactor

# How factor types are presented, in the order set-up and "try another way" list them.
ORDER = ("webauthn", "push", "totp", "sms", "voice", "email", "recovery")


def build_registry(svc: Services) -> dict[str, FactorType]:
    from .codes.email import EmailFactor
    from .codes.phone import SmsFactor, VoiceFactor
    from .push import PushFactor
    from .webauthn import WebAuthnFactor

    registry: dict[str, FactorType] = {
        "webauthn": WebAuthnFactor(svc),
        "push": PushFactor(svc),
        "totp": TOTPFactor(svc),
        "recovery": RecoveryFactor(svc),
        "email": EmailFactor(svc),
        "sms": SmsFactor(svc),
        "voice": VoiceFactor(svc),
    }
    return {t: registry[t] for t in ORDER if t in svc.settings.mfa.allowed_factors}


class MFAService:
    def __init__(self, svc: Services):
        self.svc = svc
        self.registry = build_registry(svc)

    # -- the user's factors ------------------------------------------------------
    def factors(self, user: User, *, active_only: bool = True) -> list[Factor]:
        q = db.select(Factor).filter_by(user_id=user.id).order_by(Factor.created_at)
        if active_only:
            q = q.filter_by(status="active")
        # Asked several times per sign-in request: loaded once per transaction.
        return txmemo.memo(
            db.session(),
            ("factors", user.id, active_only),
            Factor,
            lambda: list(db.session.execute(q).scalars()),
        )

    def facts(self, user: User) -> UserFacts:
        active = [f for f in self.factors(user) if f.type in self.registry]
        return UserFacts(frozenset(f.type for f in active), len(active))

    def default_type(self, user: User, allowed: tuple[str, ...] | list[str]) -> str | None:
        """The user's default factor type among *allowed*, else the most recently used,
        else the strongest (never recovery codes unless nothing else is left)."""
        active = [f for f in self.factors(user) if f.type in allowed]
        if not active:
            return None
        for f in active:
            if f.is_default:
                return f.type
        non_recovery = [f for f in active if f.type != "recovery"] or active
        used = sorted(non_recovery, key=lambda f: f.last_used_at or f.created_at, reverse=True)
        return used[0].type

    # -- the shared failure counter (NIST SP 800-63B 5.2.2) -------------------------
    def check_not_locked(self, user: User) -> None:
        now = utcnow()
        if user.mfa_locked_until is not None and user.mfa_locked_until > now:
            raise SecondFactorLocked(int((user.mfa_locked_until - now).total_seconds()) + 1)

    def _record_failure(self, user: User, factor_type: str, reason: str) -> None:
        failures = user.count_failure("mfa_failures")
        audit.record("mfa.failure", outcome="failure", user_id=user.id, factor=factor_type,
                     reason=reason, failures=failures)  # fmt: skip
        limit = self.svc.settings.mfa.max_failures
        locked = failures >= limit
        if locked:
            seconds = self.svc.settings.mfa.lockout_seconds
            user.mfa_locked_until = utcnow() + timedelta(seconds=seconds)
            user.mfa_failures = 0
            audit.record("mfa.lockout", outcome="failure", user_id=user.id, failures=limit,
                         seconds=seconds)  # fmt: skip
        db.session.commit()
        if locked:
            notify(user, "mfa_locked", failures=limit, minutes=max(1, seconds // 60))

    # -- the one verification path ---------------------------------------------------
    def verify(
        self,
        user: User,
        factor_type: str,
        payload: dict[str, Any],
        *,
        binding: str,
        factors: list[Factor] | None = None,
    ) -> Verified:
        """Limits -> verify -> count failure -> (factor rejects replays and burns) -> reset.

        *factors* narrows the user's active factors of the type to those the page's
        context may use (default: all of them)."""
        impl = self.registry.get(factor_type)
        if factors is None:
            factors = [f for f in self.factors(user) if f.type == factor_type]
        factors = [f for f in factors if f.type == factor_type and f.user_id == user.id]
        if impl is None or not factors:
            raise InvalidResponse("That sign-in method is not set up.", reason="no such factor")
        self.check_not_locked(user)
        self.svc.mfa_attempts.hit(str(user.id))
        try:
            result = impl.verify(user, factors, payload, binding=binding)
        except InvalidResponse as exc:
            db.session.rollback()
            self._record_failure(user, factor_type, exc.reason)
            raise
        user.mfa_failures = 0
        result.factor.last_used_at = utcnow()
        audit.record("mfa.success", user_id=user.id, factor=factor_type,
                     factor_id=result.factor.id)  # fmt: skip
        db.session.commit()
        if factor_type == "recovery":
            remaining = self.registry["recovery"].remaining(user)  # type: ignore[attr-defined]
            notify(user, "recovery_code_used", remaining=remaining)
        return result

    # -- changes -------------------------------------------------------------------------
    def added(self, user: User, factor: Factor) -> None:
        """Audit and notify a newly active factor (commits)."""
        impl = self.registry.get(factor.type)
        audit.record("mfa.factor_added", user_id=user.id, factor=factor.type,
                     factor_id=factor.id, label=factor.label)  # fmt: skip
        db.session.commit()
        notify(user, "factor_added", factor_name=impl.display_name if impl else factor.type,
               label=factor.label)  # fmt: skip

    def remove(
        self, user: User, factor: Factor, *, actor: str = "user", keep_sid: str | None = None
    ) -> None:
        """Remove a factor and end what it earned: every session in which it passed
        (except the session *keep_sid*, the browser removing it, which the caller
        re-establishes without it) and every refresh token whose sign-in used it,
        offline ones included."""
        from ..oidc.tokens import TokenService

        impl = self.registry.get(factor.type)
        if factor.type == "recovery":
            from ..models import RecoveryCode

            db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        factor_id = factor.id
        db.session.delete(factor)
        families = TokenService(self.svc).revoke_for_factor(user.id, factor_id)
        sessions = self.svc.sessions.destroy_using_factor(user.id, factor_id, keep=keep_sid)
        audit.record("mfa.factor_removed", user_id=user.id, factor=factor.type,
                     factor_id=factor_id, label=factor.label, actor=actor,
                     sessions_ended=sessions, token_families=families)  # fmt: skip
        db.session.commit()
        notify(user, "factor_removed", factor_name=impl.display_name if impl else factor.type,
               label=factor.label)  # fmt: skip

    def reset(self, user: User, *, reason: str, actor: str) -> int:
        """Help-desk reset: remove every factor, end sessions and refresh tokens, and
        require the email address to be verified again before the next sign-in."""
        from ..models import RecoveryCode
        from ..oidc.tokens import TokenService

        count = 0
        for factor in self.factors(user, active_only=False):
            db.session.delete(factor)
            count += 1
        db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        user.mfa_failures = 0
        user.mfa_locked_until = None
        # The user proves the email address again before enrolling anew: the next
        # sign-in with the right password sends a verification link instead.
        user.email_verified = False
        TokenService(self.svc).revoke_for_user(user.id)
        audit.record("mfa.reset", user_id=user.id, actor=actor, reason=reason, removed=count)
        db.session.commit()
        self.svc.sessions.destroy_all(user.id)
        notify(user, "mfa_reset", reason=reason)
        return count

    def unlock(self, user: User, *, actor: str, reason: str | None = None) -> None:
        """Lift every lock: the failed-password lock, the administrative lock of the
        help desk (``admin_locked_until``), the second-factor lock and a push pause.
        *reason* (given when an administrator's account is unlocked) is audited."""
        now = utcnow()
        cleared = [name for name, until in (("sign_in", user.locked_until),
                                            ("admin", user.admin_locked_until),
                                            ("second_factor", user.mfa_locked_until))
                   if until is not None and until > now]  # fmt: skip
        user.mfa_failures = 0
        user.mfa_locked_until = None
        user.failed_logins = 0
        user.locked_until = None
        user.admin_locked_until = None
        if "push" in self.registry:  # a reported push request paused push approval
            self.registry["push"].clear_lock(user)  # type: ignore[attr-defined]
        audit.record("user.unlocked", user_id=user.id, actor=actor, locks=cleared,
                     reason=reason)  # fmt: skip
        db.session.commit()
