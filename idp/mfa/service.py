"""The MFA service: the user's factors, the shared failure counter, and the one
verification path every factor walks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from flask_babel import lazy_gettext as _l

from .. import audit, txmemo
from ..auth.assurance import ACR_LEVELS, FACTOR_LEVELS, level_index, offered_factors
from ..extensions import db
from ..models import Factor, User
from ..models.base import utcnow
from ..notify import notify
from ..services import Services
from .base import (
    FactorType,
    InvalidResponse,
    MFAError,
    SecondFactorLocked,
    UserNotVerified,
    Verified,
)
from .policy import UserFacts
from .recovery import RecoveryFactor
from .totp import TOTPFactor
from .webauthn import signs_in_alone

# How factor types are presented, in the order set-up and "try another way" list them.
ORDER = ("webauthn", "push", "totp", "sms", "voice", "email", "recovery")


@dataclass(frozen=True)
class PasskeyPassed:
    """A sign-in with a passkey alone that verified: its owner, the factor and the RFC
    8176 values it earned."""

    user: User
    verified: Verified


_E = TypeVar("_E", bound=MFAError)


def _owned(exc: _E, factor: Factor | None) -> _E:
    """*exc* with the id of the user the credential belongs to (None: nobody's), for the
    audit trail of the sign-in."""
    exc.user_id = factor.user_id if factor is not None else None  # type: ignore[attr-defined]
    return exc


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
    offered = offered_factors(svc.settings)
    return {t: registry[t] for t in ORDER if t in offered}


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
        offered = user.passkey_offered_at
        return UserFacts(
            frozenset(f.type for f in active),
            len(active),
            has_passkey=any(signs_in_alone(f) for f in active),
            passkey_offered_at=int(offered.timestamp()) if offered is not None else None,
        )

    def default_type(self, user: User, allowed: tuple[str, ...] | list[str]) -> str | None:
        """The user's default factor type among *allowed*: the one the user chose, else
        the strongest they have (a new passkey becomes the default unless the user
        chose), the most recently used of equals first; recovery codes only when nothing
        else is left."""
        active = [f for f in self.factors(user) if f.type in allowed]
        if not active:
            return None
        for f in active:
            if f.is_default:
                return f.type
        non_recovery = [f for f in active if f.type != "recovery"] or active

        def rank(f: Factor) -> tuple[int, float]:
            level = level_index(FACTOR_LEVELS.get(f.type, ACR_LEVELS[0]))
            return level, (f.last_used_at or f.created_at).timestamp()

        return max(non_recovery, key=rank).type

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
            notify(user, "mfa_locked", failures=limit, seconds=seconds)

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
            raise InvalidResponse(_l("That sign-in method is not set up."), reason="no such factor")
        self.check_not_locked(user)
        self.svc.mfa_attempts.hit(str(user.id))
        started = utcnow()
        try:
            result = impl.verify(user, factors, payload, binding=binding)
        except InvalidResponse as exc:
            db.session.rollback()
            self._record_failure(user, factor_type, exc.reason)
            raise
        user.mfa_failures = 0
        used = result.factor.last_used_at
        if used is None or used < started:  # not already written by the factor's own burn
            result.factor.last_used_at = utcnow()
        audit.record("mfa.success", user_id=user.id, factor=factor_type,
                     factor_id=result.factor.id)  # fmt: skip
        db.session.commit()
        if factor_type == "recovery":
            remaining = self.registry["recovery"].remaining(user)  # type: ignore[attr-defined]
            notify(user, "recovery_code_used", remaining=remaining)
        return result

    def passkey_credential_key(self, response: str) -> str:
        """The credential id of a passkey response (base64url), what its failures are
        counted under; '' when the response has none that can be read."""
        impl = self.registry.get("webauthn")
        if impl is None:
            return ""
        return impl.credential_key(response)  # type: ignore[attr-defined]

    def verify_passkey(self, response: str, *, binding: str) -> PasskeyPassed:
        """A sign-in with a passkey alone (WebAuthn L2 7.2 with an empty allow list): the
        credential names its user. The challenge issued for *binding* is taken (answered
        once) -> the credential is looked up (an unknown one costs the same work and gets
        the same refusal) -> the owner's second-factor lock holds -> verify (a sign-count
        regression is refused, audited and emailed) -> user verification is required ->
        success resets the owner's shared failure counter.

        Failures are counted by the caller, per IP and per credential, not on the
        owner's shared counter: a credential id is no secret, and whoever knows one could
        otherwise pause the owner's second step from anywhere. A valid assertion without
        user verification is not a guess: :class:`UserNotVerified`, its new sign count
        kept.

        Raises :class:`InvalidResponse`, :class:`UserNotVerified` or
        :class:`SecondFactorLocked`, with ``user_id`` set to the credential's owner (None
        for a credential registered to nobody)."""
        impl = self.registry.get("webauthn")
        if impl is None:
            raise InvalidResponse(reason="passkeys are not offered here")
        challenge = impl.take_passkey_challenge(binding=binding)  # type: ignore[attr-defined]
        factor, raw_id = impl.find_credential(response)  # type: ignore[attr-defined]
        if challenge is None:
            raise _owned(InvalidResponse(reason="no pending passkey challenge"), factor)
        if factor is None:
            impl.refuse_unknown(response, raw_id, challenge)  # type: ignore[attr-defined]
        user = db.session.get(User, factor.user_id)
        try:
            self.check_not_locked(user)
        except SecondFactorLocked as exc:
            raise _owned(exc, factor) from None
        try:
            result = impl.verify_passkey(user, factor, response, challenge)  # type: ignore[attr-defined]
        except InvalidResponse as exc:
            db.session.rollback()
            raise _owned(exc, factor) from None
        if not result.user_verified:
            db.session.commit()  # the new sign count stands: the assertion was valid
            raise _owned(UserNotVerified(reason="user not verified"), factor)
        # The caller audits the sign-in (login.passkey) and commits.
        user.mfa_failures = 0
        factor.last_used_at = utcnow()
        return PasskeyPassed(user, Verified(factor, impl.passkey_amr(result)))  # type: ignore[attr-defined]

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
