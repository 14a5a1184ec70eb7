"""Signed, single-use, expiring links sent by email: email verification, password reset
and email change.

A token is ``<expiry>.<id>.<signature>``: a random 144-bit id, the Unix time it expires,
and an HMAC-SHA256 over purpose, expiry and id under a key derived from ``secret_key``
for that purpose alone (a reset token is never a valid verification token). What the
link is for (the user, a fingerprint of the user's state, extra data such as the new
email address) lives in the store under the SHA-256 of the id, so:

* a tampered token fails the signature check (:class:`InvalidLink`), compared in
  constant time;
* an expired one fails on its signed expiry (:class:`ExpiredLink`), even if the store
  still holds it;
* a used one is gone from the store: :func:`consume` takes it atomically
  (``GETDEL``), so of two concurrent clicks exactly one wins (:class:`UsedLink`);
* a link whose user changed what it was issued against (the password for a reset link,
  the email address for verification and email-change links) is refused as
  :class:`InvalidLink`: the fingerprint no longer matches.

A New User Registration link belongs to the *registration attempt* that asked for it
(:class:`~idp.models.RegistrationAttempt`: the address, the name and the password hash
typed in that attempt), not to the address alone: two people registering the same
address get two links, each confirming only its own attempt. Looking at a link (a GET,
:func:`peek`) never uses it; only the confirmation posted from its page does.

The store is Redis in production, so links work across instances; a store outage raises
:class:`~idp.store.StoreUnavailable` (503), never a silent acceptance.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from flask import has_request_context
from flask_babel import lazy_gettext as _l

from .. import audit
from ..extensions import db
from ..models import RegistrationAttempt, User
from ..models.base import utcnow
from ..security.crypto import equal, hash_token
from ..security.text import ascii_int
from ..services import services

log = logging.getLogger("idp.account")

#: Purposes and the user fields whose change kills a link of that purpose.
FINGERPRINTS: dict[str, tuple[str, ...]] = {
    "verify_email": ("email",),
    "reset": ("email", "password_hash"),
    "email_change": ("email",),
}
_MAX_TOKEN = 200
# The store keeps a link a little longer than its signed expiry, so an expired link is
# reported as expired (not as used) for a while.
_STORE_GRACE = 3600


class LinkError(Exception):
    """A link that cannot be used; ``message`` is safe to show (in the page's language)."""

    title = _l("This link does not work")
    message = _l("The link is not valid. Ask for a new one.")


class InvalidLink(LinkError):
    """Malformed, tampered, for another purpose, or issued before a change that voids it."""

    message = _l(
        "This link is not valid: it may be incomplete, or something on the account changed "
        "since it was sent. Ask for a new one."
    )


class ExpiredLink(LinkError):
    title = _l("This link has expired")
    message = _l("This link has expired. Ask for a new one.")


class UsedLink(LinkError):
    title = _l("This link was already used")
    message = _l("Each link works once and this one was already used. Ask for a new one if needed.")


@dataclass(frozen=True)
class LinkData:
    purpose: str
    link_id: str  # SHA-256 of the random id: names state tied to this link
    user: User | None  # the account the link acts on (None for a registration attempt)
    expires_at: int
    data: dict[str, Any] = field(default_factory=dict)
    attempt: RegistrationAttempt | None = None  # the registration the link confirms


def _key(purpose: str) -> bytes:
    secret = services().settings.secret_key.encode()
    return hmac.new(secret, f"idp.link.v1.{purpose}".encode(), hashlib.sha256).digest()


def _signature(purpose: str, expires: int, rid: str) -> str:
    mac = hmac.new(_key(purpose), f"{purpose}.{expires}.{rid}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def fingerprint(user: User, purpose: str) -> str:
    """A keyed digest of the user state a link of *purpose* depends on."""
    parts = [str(user.id), *(str(getattr(user, f) or "") for f in FINGERPRINTS[purpose])]
    return hmac.new(_key(purpose), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def attempt_fingerprint(attempt: RegistrationAttempt) -> str:
    """A keyed digest of a registration attempt (its address and password hash)."""
    parts = ["attempt", str(attempt.id), attempt.email, attempt.password_hash]
    return hmac.new(_key("verify_email"), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def _store_key(purpose: str, rid: str) -> str:
    return f"link:{purpose}:{hash_token(rid)}"


def issue(
    purpose: str,
    subject: User | RegistrationAttempt,
    ttl: int,
    *,
    now: int | None = None,
    **data: Any,
) -> str:
    """A new single-use link token for *subject* (a user, or for ``verify_email`` a
    registration attempt), valid *ttl* seconds from *now*."""
    if purpose not in FINGERPRINTS:
        raise ValueError(f"unknown link purpose {purpose!r}")
    now = int(time.time()) if now is None else now
    rid = secrets.token_urlsafe(18)
    expires = now + ttl
    if isinstance(subject, RegistrationAttempt):
        if purpose != "verify_email":
            raise ValueError("only a verification link confirms a registration attempt")
        record = {"a": subject.id, "fp": attempt_fingerprint(subject), "d": data}
    else:
        record = {"u": subject.id, "fp": fingerprint(subject, purpose), "d": data}
    services().store.set(
        _store_key(purpose, rid), json.dumps(record).encode(), max(1, ttl + _STORE_GRACE)
    )
    return f"{expires}.{rid}.{_signature(purpose, expires, rid)}"


def _parse(purpose: str, token: str) -> tuple[str, int]:
    if purpose not in FINGERPRINTS or not token or len(token) > _MAX_TOKEN:
        raise InvalidLink
    parts = token.split(".")
    expires = ascii_int(parts[0], max_digits=12) if len(parts) == 3 else None
    if expires is None or not parts[1]:
        raise InvalidLink
    rid, sig = parts[1], parts[2]
    if not equal(sig.encode(), _signature(purpose, expires, rid).encode()):
        raise InvalidLink
    if expires <= int(time.time()):
        raise ExpiredLink
    return rid, expires


def _load(purpose: str, rid: str, expires: int, raw: bytes | None) -> LinkData:
    if raw is None:
        raise UsedLink
    record = json.loads(raw)
    if "a" in record:
        attempt = db.session.get(RegistrationAttempt, record["a"])
        # Gone when another attempt for the address was confirmed (or it expired).
        if attempt is None or attempt.expires_at <= utcnow():
            raise InvalidLink
        if not equal(record["fp"], attempt_fingerprint(attempt)):
            raise InvalidLink
        return LinkData(purpose, hash_token(rid), None, expires, record.get("d") or {}, attempt)
    user = db.session.get(User, record["u"])
    if user is None or not user.is_active:
        raise InvalidLink
    if not equal(record["fp"], fingerprint(user, purpose)):
        raise InvalidLink
    return LinkData(purpose, hash_token(rid), user, expires, record.get("d") or {})


def peek(purpose: str, token: str) -> LinkData:
    """Check a link without using it up (to show the form a link leads to)."""
    rid, expires = _parse(purpose, token)
    return _load(purpose, rid, expires, services().store.get(_store_key(purpose, rid)))


def consume(purpose: str, token: str) -> LinkData:
    """Check a link and burn it atomically; raises a :class:`LinkError` subclass."""
    rid, expires = _parse(purpose, token)
    return _load(purpose, rid, expires, services().store.take(_store_key(purpose, rid)))


def burn(link: LinkData) -> None:
    """Make a link unusable before its expiry (too many wrong passwords on its page)."""
    services().store.delete(f"link:{link.purpose}:{link.link_id}")


def url(path: str) -> str:
    """An absolute URL on this provider for a path (emails are read outside the browser)."""
    return services().settings.issuer + path


def prepare_email_verification(
    subject: User | RegistrationAttempt, *, txn: str | None = None, locale: str | None = None
) -> str:
    """Issue a verification link for a user or a registration attempt and add its audit
    event to the current transaction (the caller commits); returns the absolute URL.
    *locale* is the language the registration was made in (the new account's)."""
    from flask import url_for

    ttl = services().settings.registration.verify_ttl
    if isinstance(subject, RegistrationAttempt):
        ttl = max(1, min(ttl, int((subject.expires_at - utcnow()).total_seconds())))
    extra = {"txn": txn} if txn else {}
    if locale:
        extra["locale"] = locale
    token = issue("verify_email", subject, ttl, **extra)
    path = url_for("register.verify", token=token) if has_request_context() else None
    if isinstance(subject, RegistrationAttempt):
        audit.record("email.verification_sent", attempt=subject.id)
    else:
        audit.record("email.verification_sent", user_id=subject.id)
    return url(path or f"/verify/{token}")


def deliver_email_verification(subject: User | RegistrationAttempt, link: str) -> bool:
    """Email a link made by :func:`prepare_email_verification`; False if undeliverable."""
    from .mail import send

    ttl = services().settings.registration.verify_ttl
    user = subject if isinstance(subject, User) else None
    return send(subject.email, "verify_email", user=user, name=subject.name, link=link,
                hours=max(1, ttl // 3600))  # fmt: skip


def send_email_verification(subject: User | RegistrationAttempt, *, txn: str | None = None) -> bool:
    """Email a link proving the address of a user or a registration attempt (24 h by
    default, single use). Used after registration, at a sign-in of an unverified
    account or a pending registration, and by the help desk. Returns False when the
    message could not be delivered (audited either way).
    """
    link = prepare_email_verification(subject, txn=txn)
    db.session.commit()
    return deliver_email_verification(subject, link)
