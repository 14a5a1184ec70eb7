"""The password step: throttling, lockout and verification in one place.

Walks the same path every factor does: check limits -> verify -> count the failure ->
lock after too many -> audit. Limits live in the store and fail closed
(:class:`~idp.store.StoreUnavailable` propagates to a 503); the consecutive-failure
count and the lock live on the user row, so they survive a store restart.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from .. import audit
from ..extensions import db
from ..models import RegistrationAttempt, User
from ..models.base import utcnow
from ..security.ratelimit import RateLimited
from ..services import Services


class LoginFailed(Exception):
    """Wrong email or password, or a locked account: one message for all (no enumeration)."""


class AccountDisabled(Exception):
    """The password was right but the account is disabled by an administrator."""


class EmailNotVerified(Exception):
    """The password was right but the email address is not verified yet (a new
    registration, or after a help-desk reset of the second factors)."""

    def __init__(self, user: User):
        super().__init__("email not verified")
        self.user = user


class RegistrationPending(Exception):
    """The password is the one of a registration attempt whose address is not confirmed
    yet (no account exists until it is)."""

    def __init__(self, attempt: RegistrationAttempt):
        super().__init__("registration pending")
        self.attempt = attempt


def _pending_attempt(email: str) -> RegistrationAttempt | None:
    """The newest unexpired registration attempt for *email*."""
    return db.session.execute(
        db.select(RegistrationAttempt)
        .where(RegistrationAttempt.email == email, RegistrationAttempt.expires_at > utcnow())
        .order_by(RegistrationAttempt.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def _count_limits(svc: Services, email: str, ip: str) -> None:
    """Count one failed attempt against the per-IP and per-account+IP failure limits
    (the attempt that crosses a limit has failed already; the next one is refused)."""
    pairs = ((svc.login_failures_ip, ip), (svc.login_failures_account_ip, f"{email}|{ip}"))
    for limiter, key in pairs:
        with contextlib.suppress(RateLimited):
            limiter.hit(key)


def authenticate_password(
    svc: Services,
    email: str,
    password: str,
    ip: str,
    *,
    device_cookie: str | None = None,
    allow_unverified: bool = False,
) -> User:
    """Verify a password sign-in (NIST SP 800-63B 5.2.2 throttling) or raise.

    Limits, in order: every attempt from one IP counts toward a high ceiling
    (``[login] per_ip_per_minute``: an office behind one address signs in freely);
    FAILED attempts count per IP and per account+IP, and only failures are refused
    there, so correct sign-ins (step-ups with ``prompt=login``, several applications)
    are never throttled. Consecutive failures lock the account for browsers it never
    signed in from (:mod:`idp.auth.devices`); a trusted browser's failures count
    against that browser only. The administrative lock holds for everyone.

    Raises :class:`~idp.security.ratelimit.RateLimited`, :class:`LoginFailed`,
    :class:`AccountDisabled`, :class:`EmailNotVerified`, :class:`RegistrationPending`,
    or :class:`~idp.store.StoreUnavailable`.
    """
    email = User.normalize_email(email)
    ip = ip or "unknown"
    svc.login_ip.hit(ip)
    svc.login_failures_ip.check(ip)
    svc.login_failures_account_ip.check(f"{email}|{ip}")

    # (Control characters such as NUL never get this far: the request edge refuses them.)
    user = db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()
    attempt = _pending_attempt(email) if user is None else None
    stored = user.password_hash if user else attempt.password_hash if attempt else None
    ok = svc.passwords.verify(stored, password)
    now = utcnow()
    if user is None:
        if attempt is not None and ok:
            # Only whoever typed this attempt's password learns it is pending.
            audit.record_now("login.failure", outcome="failure", reason="registration_pending",
                             attempt=attempt.id)  # fmt: skip
            raise RegistrationPending(attempt)
        _count_limits(svc, email, ip)
        audit.record_now("login.failure", outcome="failure", reason="unknown_account")
        raise LoginFailed
    if user.is_admin_locked(now):
        # Set by the help desk or an administrator: no browser and no password passes it.
        audit.record_now("login.failure", outcome="failure", user_id=user.id, reason="admin_locked")
        raise LoginFailed
    device = svc.devices.trusted(device_cookie, user)
    if device is not None and svc.devices.is_locked(device):
        audit.record_now("login.failure", outcome="failure", user_id=user.id,
                         reason="device_locked")  # fmt: skip
        raise LoginFailed
    if user.is_locked(now) and device is None:
        # While locked, even the right password gets the generic failure (the lock does
        # not confirm a guess); a browser that signed in here before is not locked out.
        _count_limits(svc, email, ip)
        audit.record_now("login.failure", outcome="failure", user_id=user.id, reason="locked")
        raise LoginFailed
    if not ok:
        _count_limits(svc, email, ip)
        if device is not None:
            locked = svc.devices.count_failure(device)
            audit.record("login.failure", outcome="failure", user_id=user.id,
                         reason="bad_password", trusted_browser=True)  # fmt: skip
            if locked:
                audit.record("login.device_lockout", outcome="failure", user_id=user.id,
                             seconds=svc.settings.login.lockout_seconds)  # fmt: skip
            db.session.commit()
            raise LoginFailed
        failures = user.count_failure("failed_logins")
        audit.record("login.failure", outcome="failure", user_id=user.id, reason="bad_password")
        limit = svc.settings.login.max_consecutive_failures
        locked = failures >= limit
        if locked:
            user.locked_until = now + timedelta(seconds=svc.settings.login.lockout_seconds)
            user.failed_logins = 0
            audit.record(
                "login.lockout",
                outcome="failure",
                user_id=user.id,
                failures=limit,
                seconds=svc.settings.login.lockout_seconds,
            )
        db.session.commit()
        if locked:
            from ..notify import notify

            notify(user, "login_locked", failures=limit,
                   seconds=svc.settings.login.lockout_seconds)  # fmt: skip
        raise LoginFailed
    if not user.is_active:
        audit.record_now("login.failure", outcome="failure", user_id=user.id, reason="disabled")
        raise AccountDisabled
    if not user.email_verified and not allow_unverified:
        # Only someone who knows the password learns this (no enumeration).
        user.failed_logins = 0
        audit.record_now(
            "login.failure", outcome="failure", user_id=user.id, reason="email_unverified"
        )
        raise EmailNotVerified(user)

    if device is not None:
        svc.devices.clear(device)
    if user.is_locked(now):
        # The lock stays for unknown browsers: the attack it answers may go on.
        audit.record("login.lock_bypassed", user_id=user.id, reason="trusted_browser")
    else:
        user.failed_logins = 0
        user.locked_until = None
    user.last_login_at = now
    if svc.passwords.needs_rehash(user.password_hash or ""):
        user.password_hash = svc.passwords.hash(password)
    audit.record("login.success", user_id=user.id, method="pwd")
    db.session.commit()
    return user
