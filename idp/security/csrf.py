"""CSRF protection for every form.

Tokens are ``<timestamp>.<HMAC(secret, purpose | browser id | timestamp)>``: bound to
the browser's random ``idp_browser`` cookie (HttpOnly, SameSite=Lax), valid for a
limited time, compared in constant time. No server-side state is needed.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from .crypto import equal
from .text import is_ascii_digits


class CSRFError(Exception):
    """The form's CSRF token is missing, stale, or was not issued to this browser."""


class CSRFProtect:
    def __init__(self, secret_key: str, *, max_age: int = 7200):
        self._key = hashlib.sha256(b"idp.csrf|" + secret_key.encode()).digest()
        self.max_age = max_age

    def _mac(self, browser_id: str, ts: str) -> str:
        msg = f"{browser_id}|{ts}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    def generate(self, browser_id: str, now: float | None = None) -> str:
        ts = str(int(now if now is not None else time.time()))
        return f"{ts}.{self._mac(browser_id, ts)}"

    def validate(self, token: str | None, browser_id: str | None, now: float | None = None) -> None:
        if not token or not browser_id:
            raise CSRFError("missing")
        ts, _, mac = token.partition(".")
        # Compare bytes: compare_digest raises TypeError on non-ASCII str (a 500 for a
        # forged form field), and str.isdigit accepts digits int() does not.
        if not is_ascii_digits(ts) or not equal(
            mac.encode("utf-8"), self._mac(browser_id, ts).encode("ascii")
        ):
            raise CSRFError("invalid")
        age = (now if now is not None else time.time()) - int(ts)
        if age < -60 or age > self.max_age:
            raise CSRFError("expired")
