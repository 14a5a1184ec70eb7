"""One-time codes sent by email, text message or voice call (NIST SP 800-63B 5.1.3).

- 6 random digits from :func:`secrets.randbelow`, valid ``[otp] code_ttl`` seconds
  (at most 10 minutes, 5.1.3.2);
- stored in the store only as an HMAC-SHA-256 keyed with a secret for this purpose and
  bound to (user, factor, purpose), so a code sent for one factor or purpose fails on
  any other; compared with :func:`hmac.compare_digest`;
- single use: the record is taken atomically (``Store.take``) when it matches;
- ``max_attempts_per_code`` entries per code (an atomic counter), then the code is dead;
  every wrong entry is *also* counted by the caller in the shared second-factor counter,
  which sending a new code never resets (5.2.2);
- sends are limited: a cooldown per (user, factor), and fixed windows per user
  (``otp.send.user_burst``, ``otp.send.user``), per destination (``otp.send.dest``,
  Login.gov's 11 per 5 minutes per phone) and per IP (``otp.send.ip``). The limits
  live in the store and fail closed (:class:`~idp.store.StoreUnavailable` propagates).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Any

from flask_babel import lazy_gettext as _l

from ...config import OTPSettings
from ...security.crypto import equal
from ...security.ratelimit import Limit, RateLimited, RateLimiter
from ...security.text import is_ascii_digits
from ...store import Store

DIGITS = 6


class CodeError(Exception):
    """Base class; ``message`` is safe to show (lazy: in the page's language), ``reason``
    goes to the audit log."""

    message: Any = _l("That code is not right. Check it and try again.")

    def __init__(self, message: Any = None, *, reason: str = "wrong code"):
        super().__init__(message or self.message)
        self.message = message or self.message
        self.reason = reason


class WrongCode(CodeError):
    """The code does not match (or none is pending, or it expired, or it was used)."""


class ResendTooSoon(Exception):
    """A code was sent moments ago; wait ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"resend cooldown: {retry_after}s")
        self.retry_after = max(1, retry_after)


def new_code() -> str:
    """Six decimal digits, uniformly random (leading zeros kept)."""
    return f"{secrets.randbelow(10**DIGITS):0{DIGITS}d}"


def normalize(code: str) -> str | None:
    """The digits of a typed code (spaces and dashes allowed), or None if malformed."""
    digits = "".join(ch for ch in (code or "")[:20] if ch not in " -")
    if len(digits) != DIGITS or not is_ascii_digits(digits):
        return None
    return digits


@dataclass(frozen=True)
class Sent:
    """A code that was just created; ``code`` exists in clear only here."""

    code: str
    ttl: int


class OTPCodes:
    def __init__(self, store: Store, secret_key: str, settings: OTPSettings):
        self.store = store
        self.settings = settings
        # One key per purpose, derived from the application secret.
        self._key = hmac.new(secret_key.encode(), b"idp otp code v1", hashlib.sha256).digest()
        s = settings
        self.user_burst = RateLimiter(store, Limit("otp.send.user_burst", 2, 10))
        self.per_user = RateLimiter(store, Limit("otp.send.user", s.sends_per_user_per_hour, 3600))
        self.per_dest = RateLimiter(
            store, Limit("otp.send.dest", s.sends_per_destination, s.destination_window)
        )
        self.per_ip = RateLimiter(store, Limit("otp.send.ip", s.sends_per_ip_per_hour, 3600))

    # -- keys --------------------------------------------------------------------------
    @staticmethod
    def _slot(user_id: int, factor_ref: str, purpose: str) -> str:
        return f"{purpose}:{user_id}:{factor_ref}"

    def _digest(self, user_id: int, factor_ref: str, purpose: str, code: str) -> str:
        msg = f"{user_id}\x1f{factor_ref}\x1f{purpose}\x1f{code}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    # -- sending -----------------------------------------------------------------------
    def issue(
        self, *, user_id: int, factor_ref: str, purpose: str, destination: str, ip: str
    ) -> Sent:
        """Create a code for (user, factor, purpose), replacing any pending one.

        Raises :class:`ResendTooSoon` inside the cooldown and
        :class:`~idp.security.ratelimit.RateLimited` when a send limit is reached;
        both before anything is created or counted against the other limits.
        """
        slot = self._slot(user_id, factor_ref, purpose)
        cooldown = self.settings.resend_cooldown
        if cooldown and not self.store.set_if_absent(f"otp:cooldown:{slot}", b"1", cooldown):
            raise ResendTooSoon(self.store.ttl(f"otp:cooldown:{slot}") or cooldown)
        try:
            self.user_burst.hit(str(user_id))
            self.per_user.hit(str(user_id))
            self.per_dest.hit(destination.lower())
            self.per_ip.hit(ip or "-")
        except RateLimited:
            self.store.delete(f"otp:cooldown:{slot}")
            raise
        code = new_code()
        ttl = self.settings.code_ttl
        record = {"h": self._digest(user_id, factor_ref, purpose, code)}
        self.store.set(f"otp:code:{slot}", json.dumps(record).encode(), ttl)
        # A new code gets its own entries; the shared failure counter is not touched.
        self.store.delete(f"otp:tries:{slot}")
        return Sent(code, ttl)

    def cancel(self, *, user_id: int, factor_ref: str, purpose: str) -> None:
        """Forget the pending code and the cooldown (after a failed delivery)."""
        slot = self._slot(user_id, factor_ref, purpose)
        self.store.delete(f"otp:code:{slot}", f"otp:tries:{slot}", f"otp:cooldown:{slot}")

    def pending(self, *, user_id: int, factor_ref: str, purpose: str) -> int | None:
        """Seconds the pending code has left, or None."""
        return self.store.ttl(f"otp:code:{self._slot(user_id, factor_ref, purpose)}")

    # -- checking ----------------------------------------------------------------------
    def check(self, *, user_id: int, factor_ref: str, purpose: str, code: str) -> None:
        """Accept *code* once, or raise :class:`WrongCode` (which the caller counts)."""
        slot = self._slot(user_id, factor_ref, purpose)
        code_key, tries_key = f"otp:code:{slot}", f"otp:tries:{slot}"
        # Count the entry before looking: parallel guesses cannot exceed the limit.
        tries = self.store.incr(tries_key, self.settings.code_ttl)
        limit = self.settings.max_attempts_per_code
        if tries > limit:
            self.store.delete(code_key)
            raise WrongCode(
                _l("Too many wrong entries for this code. Send a new code."), reason="code dead"
            )
        digits = normalize(code)
        raw = self.store.get(code_key)
        if raw is None:
            raise WrongCode(
                _l("That code has expired or was already used. Send a new code."),
                reason="no pending code",
            )
        expected = json.loads(raw)["h"]
        presented = self._digest(user_id, factor_ref, purpose, digits or "")
        if digits is None or not equal(presented, expected):
            if tries >= limit:
                self.store.delete(code_key)
                raise WrongCode(
                    _l("That code is not right, and it no longer works. Send a new code."),
                    reason="wrong code, code dead",
                )
            raise WrongCode(reason="wrong code" if digits else "malformed code")
        # Burn: of concurrent right entries exactly one takes the record.
        taken = self.store.take(code_key)
        if taken is None or not equal(json.loads(taken)["h"], expected):
            raise WrongCode(
                _l("That code has expired or was already used. Send a new code."), reason="raced"
            )
        self.store.delete(tries_key)
