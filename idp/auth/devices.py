"""Device cookies: browsers that signed in to an account before keep signing in while
strangers are locked out (OWASP "Slow Down Online Guessing Attacks with Device Cookies").

Without them, the account-wide lock after ``[login] max_consecutive_failures`` wrong
passwords is a denial of service: anyone who knows an address can keep its owner out
for good (10 wrong passwords every 15 minutes). With them:

* a successful password sign-in gives the browser a *device cookie* for that account:
  ``<user id>.<nonce>.<expiry>.<signature>``, an HMAC-SHA256 under a key derived from
  ``secret_key`` for this purpose alone, over the user id, the nonce, the expiry and the
  time the password last changed (so a password change or reset untrusts every browser
  that knew the old one). One cookie holds the entries of up to :data:`MAX_ENTRIES`
  accounts (a shared computer);
* wrong passwords from an *unknown* browser count toward the account-wide lock, which
  then holds for unknown browsers only;
* wrong passwords from a *trusted* browser count against that browser's entry (same
  limit, same duration) and never lock the account for anyone else;
* the administrative lock (help desk) holds for every browser.

A device cookie authenticates nothing: the password is still required, and the cookie
only decides which failure counter an attempt belongs to.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from ..models import User
from ..security.crypto import equal
from ..security.ratelimit import Limit, RateLimited, RateLimiter
from ..security.text import ascii_int
from ..store import Store

COOKIE = "idp_device"
MAX_ENTRIES = 5
_MAX_COOKIE = 2048


@dataclass(frozen=True)
class Entry:
    """One account's entry in a browser's device cookie."""

    user_id: int
    nonce: str
    expires: int
    signature: str

    def value(self) -> str:
        return f"{self.user_id}.{self.nonce}.{self.expires}.{self.signature}"


def _epoch(user: User) -> int:
    changed = user.password_changed_at
    return int(changed.timestamp()) if changed is not None else 0


class DeviceTrust:
    """Reads, checks and issues device cookies; counts failures per trusted browser."""

    def __init__(self, secret_key: str, store: Store, *, lifetime: int, failures: int,
                 window: int) -> None:  # fmt: skip
        self._key = hmac.new(secret_key.encode(), b"idp.device.v1", hashlib.sha256).digest()
        self.lifetime = lifetime
        self._failures = RateLimiter(store, Limit("login.device", failures, window))

    def _sign(self, user_id: int, nonce: str, expires: int, epoch: int) -> str:
        mac = hmac.new(self._key, f"{user_id}.{nonce}.{expires}.{epoch}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:24]).rstrip(b"=").decode()

    @staticmethod
    def entries(cookie: str | None) -> list[Entry]:
        """The well-formed entries of a cookie value (signatures not checked)."""
        out: list[Entry] = []
        if not cookie or len(cookie) > _MAX_COOKIE:
            return out
        for part in cookie.split("~")[:MAX_ENTRIES]:
            fields = part.split(".")
            if len(fields) != 4 or len(fields[1]) > 64:
                continue
            user_id, expires = (
                ascii_int(fields[0], max_digits=12),
                ascii_int(fields[2], max_digits=12),
            )
            if user_id is None or expires is None:
                continue
            out.append(Entry(user_id, fields[1], expires, fields[3]))
        return out

    def trusted(self, cookie: str | None, user: User, now: float | None = None) -> Entry | None:
        """This browser's valid entry for *user*, if it has one."""
        now = time.time() if now is None else now
        for entry in self.entries(cookie):
            if entry.user_id != user.id or entry.expires <= now:
                continue
            expected = self._sign(user.id, entry.nonce, entry.expires, _epoch(user))
            if equal(entry.signature.encode(), expected.encode()):
                return entry
        return None

    def issue(self, cookie: str | None, user: User, now: float | None = None) -> str:
        """The cookie value after a successful sign-in of *user*: a fresh entry for the
        account first, the other accounts' entries kept (the oldest dropped)."""
        now = int(time.time() if now is None else now)
        nonce = secrets.token_urlsafe(12)
        expires = now + self.lifetime
        fresh = Entry(user.id, nonce, expires, self._sign(user.id, nonce, expires, _epoch(user)))
        others = [e for e in self.entries(cookie) if e.user_id != user.id and e.expires > now]
        return "~".join(e.value() for e in [fresh, *others][:MAX_ENTRIES])

    # -- failures of a trusted browser ---------------------------------------------------
    def is_locked(self, entry: Entry) -> bool:
        try:
            self._failures.check(entry.nonce)
        except RateLimited:
            return True
        return False

    def count_failure(self, entry: Entry) -> bool:
        """Count a wrong password from this browser; True when it is now locked."""
        try:
            self._failures.hit(entry.nonce)
        except RateLimited:
            return True
        return self.is_locked(entry)

    def clear(self, entry: Entry) -> None:
        self._failures.clear(entry.nonce)
