"""The password step: throttling, lockout and verification in one place.

Walks the same path every factor will: check limits -> verify -> count the failure ->
lock after too many -> audit. Limits live in the store and fail closed
(:class:`~idp.store.StoreUnavailable` propagates to a 503); the consecutive-failure
count and the lock live on the user row, so they survive a store restart.
"""

from __future__ import annotations

from datetime import timedelta

from .. import audit
from ..extensions import db
from ..models import User
from ..models.base import utcnow
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


def authenticate_password(svc: Services, email: str, password: str, ip: str) -> User:
    """Verify a password sign-in (NIST SP 800-63B 5.2.2 throttling) or raise.

    Raises :class:`~idp.security.ratelimit.RateLimited`, :class:`LoginFailed`,
    :class:`AccountDisabled`, :class:`EmailNotVerified`, or
    :class:`~idp.store.StoreUnavailable`.
    """
    email = User.normalize_email(email)
    svc.login_ip.hit(ip or "unknown")
    svc.login_account_ip.hit(f"{email}|{ip}")

    # No account has a NUL in its email (and PostgreSQL text cannot hold one): such an
    # attempt fails like any unknown account, after the same password-hash work.
    user = (
        None
        if "\x00" in email
        else db.session.execute(db.select(User).filter_by(email=email)).scalar_one_or_none()
    )
    ok = svc.passwords.verify(user.password_hash if user else None, password)
    now = utcnow()
    if user is None:
        audit.record_now("login.failure", outcome="failure", reason="unknown_account")
        raise LoginFailed
    if user.is_admin_locked(now):
        # Set by the help desk or an administrator: no browser and no password passes it.
        audit.record_now(
            "login.failure", outcome="failure", user_id=user.id, reason="admin_locked"
        )
        raise LoginFailed
    if user.is_locked(now):
        audit.record_now("login.failure", outcome="failure", user_id=user.id, reason="locked")
        raise LoginFailed
    if not ok:
        failures = user.count_failure("failed_logins")
        audit.record("login.failure", outcome="failure", user_id=user.id, reason="bad_password")
        limit = svc.settings.login.max_consecutive_failures
        if failures >= limit:
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
        raise LoginFailed
    if not user.is_active:
        audit.record_now("login.failure", outcome="failure", user_id=user.id, reason="disabled")
        raise AccountDisabled
    if not user.email_verified:
        # Only someone who knows the password learns this (no enumeration).
        user.failed_logins = 0
        audit.record_now(
            "login.failure", outcome="failure", user_id=user.id, reason="email_unverified"
        )
        raise EmailNotVerified(user)

    user.failed_logins = 0
    user.locked_until = None
    user.last_login_at = now
    if svc.passwords.needs_rehash(user.password_hash or ""):
        user.password_hash = svc.passwords.hash(password)
    audit.record("login.success", user_id=user.id, method="pwd")
    db.session.commit()
    return user
