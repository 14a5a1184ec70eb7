"""The passkey step: a sign-in with a passkey alone, without an email address or a
password.

The sign-in page asks the browser for a discoverable credential of any user (an empty
allow list), through the email field's autofill (WebAuthn Level 3 5.1.4 conditional
mediation) or a "Sign in with a passkey" button. The credential id finds the factor and
the signed user handle must be its owner's
(:meth:`idp.mfa.service.MFAService.verify_passkey`). With user verification the passkey
is two factors in one (the key, and the PIN, fingerprint or face its authenticator
checked: a multi-factor cryptographic authenticator, NIST SP 800-63B 5.1.9), so the
session records both steps, ``passkey`` and ``webauthn`` (:mod:`idp.auth.assurance`).

It walks the password step's path (:func:`idp.auth.service.authenticate_password`):

1. limits first: every attempt counts per IP under the high ceiling, and FAILED attempts
   are refused per IP (the password step's counter: a spray of either kind counts
   together) and per credential; the store failing is a 503, never a skipped limit;
2. the verification, with one answer (and the same work) for an unknown credential, a
   bad, replayed or expired assertion, and another user's handle: none of them says
   whether an account or a credential exists;
3. only then the account, by the password step's rules: the administrative lock holds
   for every browser, the failed-attempt lock for browsers that never signed in to the
   account (device cookies), and a disabled account or an unverified address does not
   get in. These refusals reach only the holder of a verified passkey.

Failures count per IP and per credential (``[login] max_consecutive_failures`` within
``lockout_seconds`` pause that credential's passkey sign-in), not on the owner's shared
second-factor counter: a credential id is not a secret, and whoever learned one could
otherwise pause the owner's second step from anywhere. The owner's second-factor lock
still holds for a passkey sign-in (it passes a second factor).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from .. import audit
from ..extensions import db
from ..models import User
from ..models.base import utcnow
from ..security.crypto import hash_token
from ..security.ratelimit import RateLimited
from ..services import Services
from .service import AccountDisabled, EmailNotVerified

if TYPE_CHECKING:
    from ..mfa.service import MFAService, PasskeyPassed


class PasskeyFailed(Exception):
    """The assertion was refused: an unknown credential, a bad, replayed or expired
    response, another user's handle. One message for all; ``reason`` is for the audit
    trail."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class AccountLocked(Exception):
    """A verified passkey of an account that is locked: by the help desk, or after
    failed passwords (for a browser that never signed in to it)."""


def passkey_binding(browser_id: str, txn_id: str | None) -> str:
    """What a passkey challenge is bound to: this browser (a hash of its ``idp_browser``
    cookie) and this sign-in transaction (or none, for a sign-in to the account pages)."""
    return f"{hash_token(browser_id)[:32]}:{txn_id or '-'}"


def _count_failure(svc: Services, ip: str, credential: str) -> None:
    """Count one failed attempt per IP and per credential (the attempt that crosses a
    limit has failed already; the next one is refused)."""
    with contextlib.suppress(RateLimited):
        svc.login_failures_ip.hit(ip)
    if credential:
        with contextlib.suppress(RateLimited):
            svc.passkey_failures.hit(credential)


def _refused(exc: Exception, reason: str) -> None:
    """Audit a refused passkey sign-in (committed at once: the caller raises)."""
    user_id = getattr(exc, "user_id", None)
    audit.record_now("login.passkey", outcome="failure", user_id=user_id, reason=reason)


def _account_refusal(
    svc: Services, user: User, device_cookie: str | None
) -> tuple[str, Exception] | None:
    """Why the account of a verified passkey may not sign in now (the audit reason and
    the exception), by the password step's rules
    (:func:`idp.auth.service.authenticate_password`), or None."""
    now = utcnow()
    if user.is_admin_locked(now):
        return "admin_locked", AccountLocked()
    if user.is_locked(now) and svc.devices.trusted(device_cookie, user) is None:
        return "locked", AccountLocked()
    if not user.is_active:
        return "disabled", AccountDisabled()
    if not user.email_verified:
        return "email_unverified", EmailNotVerified(user)
    return None


def authenticate_passkey(
    svc: Services,
    mfa: MFAService,
    response: str,
    *,
    binding: str,
    ip: str,
    device_cookie: str | None = None,
) -> PasskeyPassed:
    """Verify a sign-in with a passkey alone and return its
    :class:`~idp.mfa.service.PasskeyPassed` (the user, the factor, the amr values), or
    raise.

    *mfa* is the application's :class:`~idp.mfa.service.MFAService`; *binding* is
    :func:`passkey_binding` of this browser and sign-in.

    Raises :class:`~idp.security.ratelimit.RateLimited`, :class:`PasskeyFailed`,
    :class:`~idp.mfa.base.UserNotVerified`, :class:`~idp.mfa.base.SecondFactorLocked`,
    :class:`AccountLocked`, :class:`~idp.auth.service.AccountDisabled`,
    :class:`~idp.auth.service.EmailNotVerified`, or
    :class:`~idp.store.StoreUnavailable`.
    """
    from ..mfa.base import InvalidResponse, SecondFactorLocked, UserNotVerified

    ip = ip or "unknown"
    svc.login_ip.hit(ip)
    svc.login_failures_ip.check(ip)
    credential = mfa.passkey_credential_key(response)
    if credential:
        svc.passkey_failures.check(credential)
    try:
        passed = mfa.verify_passkey(response, binding=binding)
    except InvalidResponse as exc:
        _count_failure(svc, ip, credential)
        _refused(exc, exc.reason)
        raise PasskeyFailed(exc.reason) from None
    except UserNotVerified as exc:
        _refused(exc, "user_not_verified")
        raise
    except SecondFactorLocked as exc:
        # The owner's second step is paused: a passkey sign-in passes a second factor.
        _refused(exc, "second_factor_locked")
        raise
    user = passed.user
    refusal = _account_refusal(svc, user, device_cookie)
    if refusal is not None:
        # The assertion itself was valid: its new sign count is kept (committed here).
        reason, error = refusal
        audit.record_now("login.passkey", outcome="failure", user_id=user.id, reason=reason)
        raise error
    user.last_login_at = utcnow()
    factor = passed.verified.factor
    audit.record(
        "login.passkey",
        user_id=user.id,
        factor="webauthn",
        factor_id=factor.id,
        amr=list(passed.verified.amr),
    )
    db.session.commit()
    return passed
