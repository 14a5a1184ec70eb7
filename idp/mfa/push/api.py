"""The companion app's JSON API (``/push/v1``), authenticated by device signatures.

No cookies and no CSRF tokens: every request carries ``Authorization: Device <jws>``
(:mod:`idp.mfa.push_jws`), signed by the device key for this method and URL, fresh and
never replayed. Errors are JSON ``{"error": code, "error_description": text}``:

401 unsigned, badly signed, stale, replayed or misdirected requests, unknown or
removed devices; 400 bad input and a wrong number; 404 an unknown challenge (also
another user's); 409 a challenge already answered, or removing the last method;
410 an expired challenge or enrollment code (also after a store restart);
423 push paused after a report; 429 limits; 503 store unavailable.

A long-poll (``GET /push/v1/challenges`` with ``wait``) holds a worker thread for up to
``[push] long_poll`` seconds, so one device may hold at most ``[push]
max_polls_per_device`` of them at once; one more is answered at once with 429
``slow_down``. The count lives in the store, shared by every worker and instance. And
one serving process holds at most half as many long-polls as it has threads; one more
is answered at once with 503 and ``Retry-After`` (the app waits and polls again), so a
crowd of waiting devices never takes the threads sign-ins need.

The out-of-band status (``GET /push/v1/status/<handle>``) needs no signature: the
handle, a 256-bit value given to whoever started the sign-in, is the credential.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from flask_babel import force_locale
from flask_babel import gettext as _
from werkzeug.exceptions import HTTPException

from ... import audit
from ...extensions import db
from ...i18n import account_locale
from ...models import Factor, User
from ...security.ratelimit import RateLimited
from ...security.text import ascii_int, is_ascii_digits
from ...services import services
from ...store import StoreUnavailable
from ..base import EnrollmentError, InvalidResponse, MFAError, SecondFactorLocked
from . import jws as push_jws
from .service import AlreadyAnswered, ChallengeGone, PushService

bp = Blueprint("push_api", __name__, url_prefix="/push/v1")
log = logging.getLogger("idp.mfa.push")

AUTH_SCHEME = "Device"
# A long-poll's slot outlives the poll by this many seconds, so a slot never lapses
# while its poll still runs (the clocks of the instances may differ a little).
SLOT_GRACE = 5
# A device refused for too many long-polls is audited at most once per this many
# seconds: a misbehaving app retrying in a loop must not flood the audit trail.
REFUSAL_AUDIT_WINDOW = 300
# A long-poll refused because this process holds its share of them: the app tries again
# after this many seconds.
BUSY_RETRY = 5


class _ProcessPolls:
    """The long-polls this process holds at once: at most half of its threads
    (``IDP_THREADS``, read by ``idp serve`` and gunicorn.conf.py; default 4), so however
    many devices wait, the other half keeps serving sign-ins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._semaphore: threading.BoundedSemaphore | None = None

    @staticmethod
    def budget() -> int:
        raw = (os.environ.get("IDP_THREADS") or "").strip()
        threads = int(raw) if is_ascii_digits(raw) and int(raw) > 0 else 4
        return max(1, threads // 2)

    @contextmanager
    def slot(self) -> Iterator[bool]:
        """Yields True while holding one of this process's long-poll slots, False when
        all are taken (the poll is answered at once)."""
        with self._lock:
            if self._semaphore is None:
                self._semaphore = threading.BoundedSemaphore(self.budget())
        semaphore = self._semaphore
        if not semaphore.acquire(blocking=False):
            yield False
            return
        try:
            yield True
        finally:
            semaphore.release()


PROCESS_POLLS = _ProcessPolls()


def _clock() -> float:
    """Wall-clock time for slot deadlines (compared across workers and instances)."""
    return time.time()


def _error(status: int, code: str, description: Any, **headers: str) -> Response:
    """A JSON error; a lazy *description* is rendered in the language in force (the
    device owner's, where the account is known: :func:`idp.i18n.account_locale`)."""
    resp = jsonify(error=code, error_description=str(description))
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    for k, v in headers.items():
        resp.headers[k] = v
    return resp


def _ok(body: dict[str, Any], status: int = 200) -> Response:
    resp = jsonify(body)
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _service() -> PushService | None:
    impl = current_app.extensions["idp.mfa"].registry.get("push")
    return impl.service if impl is not None else None


def _signed_token() -> str:
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme != AUTH_SCHEME or not token.strip():
        raise push_jws.SignatureError("sign the request with the device key", "unsigned_request")
    return token.strip()


def _endpoint_url() -> str:
    # The URL the app signed is the issuer's, not whatever Host header arrived.
    return services().settings.issuer + request.path


@bp.errorhandler(push_jws.SignatureError)
def _signature_error(exc: push_jws.SignatureError) -> Response:
    audit.record_now(
        "mfa.push_request_refused",
        outcome="failure",
        code=exc.code,
        reason=str(exc),
        path=request.path,
    )
    return _error(401, exc.code, str(exc), **{"WWW-Authenticate": AUTH_SCHEME})


@bp.errorhandler(RateLimited)
def _rate_limited(exc: RateLimited) -> Response:
    return _error(
        429,
        "slow_down",
        f"Too many requests. Wait {exc.retry_after} seconds.",
        **{"Retry-After": str(exc.retry_after)},
    )


@bp.errorhandler(StoreUnavailable)
def _store_down(exc: StoreUnavailable) -> Response:
    db.session.rollback()
    return _error(503, "temporarily_unavailable", "Try again in a minute.", **{"Retry-After": "30"})


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    return _error(exc.code or 500, "invalid_request", exc.description or exc.name)


def _authenticated(method: str):
    svc = _service()
    if svc is None:
        return None, None, _error(404, "not_found", "Push approval is not enabled.")
    device, claims = svc.authenticate(_signed_token(), method=method, url=_endpoint_url())
    return device, claims, None


@bp.post("/enroll")
def enroll() -> Response:
    """Register a device key with a single-use enrollment token (the ``token`` claim).

    The JWS carries the new public key as ``jwk`` in its protected header and is
    signed by it: the app proves it holds the private key."""
    svc = _service()
    if svc is None:
        return _error(404, "not_found", "Push approval is not enabled.")
    token = _signed_token()
    header = push_jws.peek_header(token)
    alg, key = push_jws.public_key_from_jwk(header.get("jwk"))
    _header, claims = push_jws.verify(token, key, alg)
    push_jws.check_claims(
        claims, aud=_endpoint_url(), htm="POST", now=int(time.time()), skew=svc.settings.clock_skew
    )
    name = claims.get("name")
    if not isinstance(name, str) or not isinstance(claims.get("token"), str):
        return _error(400, "invalid_request", "token and name are required.")
    try:
        user, device, secret = svc.enroll_device(
            claims["token"], public_key=key, alg=alg, name=name
        )
    except EnrollmentError as exc:
        audit.record_now("mfa.push_enroll_failed", outcome="failure", reason=exc.reason)
        return _error(410, "expired_token", exc.message)
    settings = services().settings
    return _ok(
        {
            "device_id": device.credential_id,
            "issuer": settings.issuer,
            "service_name": settings.ui.service_name,
            "account": user.email,
            "label": device.label,
            "totp": {"secret": secret, "digits": 6, "period": 30, "algorithm": "SHA1"},
        },
        201,
    )


def _slot_deadline(member: str) -> float | None:
    head, _, _ = member.partition(":")
    value = ascii_int(head)
    return float(value) if value is not None else None


@contextmanager
def _poll_slot(svc: PushService, device: Factor, wait: float) -> Iterator[bool]:
    """Take one of the device's long-poll slots for the duration of the block; yields
    False when the device already holds ``max_polls_per_device`` of them.

    The store has no atomic decrement, so each poll adds a member of its own to the
    device's set (``push:polls:<device>``) and counts after adding: of two polls racing
    for the last slot both may be refused, never both admitted. The member names its
    deadline (the poll's end plus :data:`SLOT_GRACE`), so the slot of a worker that
    died mid-poll stops counting by itself, even while new polls keep the set alive.
    A store failure raises :class:`StoreUnavailable` (503): the limit fails closed.
    """
    store, settings = svc.store, svc.settings
    key = f"push:polls:{device.id}"
    now = _clock()
    member = f"{int(now + wait) + SLOT_GRACE}:{secrets.token_hex(8)}"
    # The set lives as long as the longest poll any member can stand for.
    store.add_to_set(key, member, settings.long_poll + SLOT_GRACE)
    try:
        live = 0
        for other in store.members(key):
            deadline = _slot_deadline(other)
            if deadline is None or deadline < now:
                store.remove_from_set(key, other)
            else:
                live += 1
        yield live <= settings.max_polls_per_device
    finally:
        try:
            store.remove_from_set(key, member)
        except StoreUnavailable as exc:  # the slot lapses at its deadline by itself
            log.warning("push poll slot not released (store unavailable): %s", exc)


def _too_many_polls(svc: PushService, device: Factor) -> Response:
    """429 for one long-poll too many; audited at most once per device and window."""
    limit = svc.settings.max_polls_per_device
    if svc.store.set_if_absent(f"push:polls:refused:{device.id}", b"1", REFUSAL_AUDIT_WINDOW):
        audit.record_now(
            "mfa.push_poll_refused",
            outcome="failure",
            user_id=device.user_id,
            factor_id=device.id,
            limit=limit,
            reason="too many concurrent long-polls",
        )
    retry_after = svc.settings.long_poll
    return _error(
        429,
        "slow_down",
        f"Too many open requests from this device (at most {limit} at a time). "
        f"Wait {retry_after} seconds.",
        **{"Retry-After": str(retry_after)},
    )


@bp.get("/challenges")
def challenges() -> Response:
    """The device's pending challenge; with a ``wait`` claim (seconds, capped at
    ``[push] long_poll``) the request is held until one arrives (long-poll), at most
    ``[push] max_polls_per_device`` at once per device."""
    device, claims, err = _authenticated("GET")
    if err is not None:
        return err
    svc = _service()
    assert svc is not None and device is not None and claims is not None
    wait = claims.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or wait < 0:
        return _error(400, "invalid_request", "wait must be a number of seconds.")
    wait = min(float(wait), float(svc.settings.long_poll))
    if wait <= 0:
        db.session.remove()
        found = svc.pending_for(device)
    else:
        # The device's own limit first (429, audited), then this process's share (503).
        with _poll_slot(svc, device, wait) as admitted:
            if not admitted:
                return _too_many_polls(svc, device)
            with PROCESS_POLLS.slot() as held:
                if not held:
                    log.info("push long-poll answered busy: this process holds its share")
                    return _error(503, "temporarily_unavailable",
                                  f"The server is busy. Try again in {BUSY_RETRY} seconds.",
                                  **{"Retry-After": str(BUSY_RETRY)})  # fmt: skip
                # Release the database connection while the request waits on the store.
                db.session.remove()
                found = svc.wait_pending(device, wait)
    now = int(time.time())
    return _ok({"challenges": [c.for_app(now) for c in found]})


@bp.post("/challenges/<challenge_id>")
def respond(challenge_id: str) -> Response:
    """Answer a challenge: ``action`` is ``approve`` (with ``number``) or ``deny``
    (with ``report: true`` to mark it suspicious)."""
    device, claims, err = _authenticated("POST")
    if err is not None:
        return err
    svc = _service()
    assert svc is not None and device is not None and claims is not None
    if claims.get("challenge") != challenge_id:
        return _error(400, "invalid_request", "The signed challenge id does not match the URL.")
    user = db.session.get(User, device.user_id)
    if user is None or not user.is_active:
        return _error(401, "unknown_device", "unknown or removed device")
    action = claims.get("action")
    mfa = current_app.extensions["idp.mfa"]
    with force_locale(account_locale(user)):  # what the app shows, in the owner's language
        return _answer(mfa, svc, user, device, claims, challenge_id, action)


def _answer(mfa: Any, svc: PushService, user: User, device: Factor, claims: dict[str, Any],
            challenge_id: str, action: Any) -> Response:  # fmt: skip
    try:
        if action == "approve":
            payload = {
                "device_id": device.credential_id,
                "challenge": challenge_id,
                "number": claims.get("number"),
            }
            mfa.verify(user, "push", payload, binding=device.credential_id or "")
            return _ok({"status": "approved"})
        if action == "deny":
            svc.deny(user, device, challenge_id, report=claims.get("report") is True)
            return _ok({"status": "reported" if claims.get("report") is True else "denied"})
    except SecondFactorLocked as exc:
        return _error(423, "locked", exc.message, **{"Retry-After": str(exc.retry_after)})
    except ChallengeGone as exc:
        status = 404 if exc.code == "unknown_challenge" else 410
        return _error(status, exc.code, exc.message)
    except AlreadyAnswered as exc:
        return _error(409, "already_answered", exc.message)
    except InvalidResponse as exc:
        return _error(400, "wrong_number", exc.message)
    except MFAError as exc:
        return _error(400, "invalid_request", exc.message)
    return _error(400, "invalid_request", _("action must be approve or deny."))


@bp.delete("/device")
def remove_device() -> Response:
    """Remove this device (and its linked authenticator-app codes) from the account.

    Refused (409) when it would leave the user without a sign-in method while MFA is
    required, as on the account page."""
    device, _claims, err = _authenticated("DELETE")
    if err is not None:
        return err
    assert device is not None
    mfa = current_app.extensions["idp.mfa"]
    svc = _service()
    assert svc is not None
    user = db.session.get(User, device.user_id)
    linked = svc.linked_codes(device)
    gone = {device.id, linked.id if linked else None}
    others = [f for f in mfa.factors(user) if f.id not in gone and f.type != "recovery"]
    if services().settings.mfa.required and not others:
        audit.record_now(
            "mfa.remove_refused",
            outcome="failure",
            user_id=user.id,
            factor_id=device.id,
            reason="last factor",
        )
        with force_locale(account_locale(user)):
            return _error(
                409,
                "last_factor",
                _(
                    "This is your only sign-in method. Add another method to your account "
                    "before removing this device."
                ),
            )
    if linked is not None:
        mfa.remove(user, linked, actor="device")
    mfa.remove(user, device, actor="device")
    return _ok({"status": "removed"})


@bp.get("/status/<handle>")
def status(handle: str) -> Response:
    """Out-of-band status for a client without a browser page: the number to show
    while the challenge is pending, then its outcome."""
    svc = _service()
    if svc is None:
        return _error(404, "not_found", "Push approval is not enabled.")
    state, ch = svc.by_handle(handle)
    body: dict[str, Any] = {"status": state}
    if ch is not None and state == "pending":
        body["number"] = ch.number
        body["expires_in"] = max(0, ch.expires - int(time.time()))
    return _ok(body)
