"""Push approval with number matching: enrollment of the companion app, sign-in
challenges, and their delivery through the store's pub/sub.

NIST SP 800-63B (rev. 4) does not accept a push that only asks "approve?": a value must
pass between the two channels. Here the browser shows a two-digit number and the app
offers three (the number and two decoys); the user picks the one on screen.

Everything short-lived lives in the store, so any provider instance (and any gunicorn
worker) can create, deliver, answer and complete a challenge:

``push:enroll:<sha256(token)>``   the single-use enrollment token (taken when used)
``push:enroll:session:<sid>``     the pending enrollment shown to this browser session
``push:enroll:done:<sid>``        the device the app registered, until the browser finishes
``push:ch:<id>``                  the challenge (number, choices, context, devices)
``push:answer:<id>``              the first answer (approved, wrong number, denied, reported),
                                  written with ``set_if_absent`` so only one answer counts
``push:device:<device>``          the pending challenge of a device (one at a time)
``push:user:<uid>``               the user's pending challenge (a new one replaces it)
``push:session:<sid>``            the challenge this browser session waits for
``push:handle:<sha256(handle)>``  the out-of-band status handle (non-browser clients)
``push:jti:<device>:<sha256>``    nonces of signed app requests (replay refusal)

Channels: ``push:device:<device>`` announces a new challenge to the app's long-poll;
``push:ch:<id>`` announces an answer.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask_babel import force_locale, lazy_ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from ... import audit
from ...extensions import db
from ...i18n import account_locale
from ...models import Factor, User
from ...models.base import utcnow
from ...notify import notify
from ...security import totp
from ...security.crypto import equal, hash_token
from ...security.ratelimit import Limit, RateLimiter
from ...services import Services
from ..base import EnrollmentError, InvalidResponse, MFAError, Verified
from ..qr import qr_svg
from . import jws as push_jws

AMR = ("swk",)  # RFC 8176: proof of possession of a software-secured key (docs/PUSH.md)
# Answers and challenges outlive the deadline a little so the browser can still learn
# the outcome (and complete an approval given in the last second).
GRACE = 30
SCHEME = "idp-verify"


class ChallengeGone(MFAError):
    """No such challenge for this device, or it expired (or the store lost it)."""

    message = _l("This request expired. Send a new one.")

    def __init__(self, message: Any = None, *, reason: str = "", code: str = "expired"):
        super().__init__(message, reason=reason)
        self.code = code


class AlreadyAnswered(MFAError):
    message = _l("This request was already answered.")


class PushLocked(MFAError):
    message = _l(
        "Push approval is paused for your account because a sign-in request was reported "
        "as suspicious. Use another method, or ask the help desk to turn it back on."
    )


class NotApproved(MFAError):
    """The browser asked to continue, but the request is not approved (yet)."""

    def __init__(self, status: str):
        messages = {
            "pending": _l("Not approved yet. Approve the request in the app, then continue."),
            "denied": _l("The request was denied in the app. Send a new one or try another way."),
            "reported": _l("The request was reported as suspicious. Try another way to sign in."),
            "wrong_number": _l("The wrong number was chosen in the app. Send a new request."),
        }
        super().__init__(messages.get(status, ChallengeGone.message), reason=f"push {status}")
        self.status = status


@dataclass
class Challenge:
    """One push sign-in request: what the app shows and what the browser waits for."""

    id: str
    user_id: int
    devices: list[str]
    number: int
    choices: list[int]
    client: str
    ip: str
    browser: str
    created: int
    expires: int
    binding: str
    handle: str
    extra: dict[str, Any] = field(default_factory=dict)

    def for_app(self, now: int) -> dict[str, Any]:
        """What the app may see: never the number itself, only the three choices."""
        return {
            "id": self.id,
            "choices": self.choices,
            "client": self.client,
            "ip": self.ip,
            "browser": self.browser,
            "time": self.created,
            "expires_in": max(0, self.expires - now),
        }


def new_number() -> tuple[int, list[int]]:
    """A random two-digit number (10-99) and three shuffled choices: it and two
    distinct decoys."""
    rng = secrets.SystemRandom()
    number = 10 + secrets.randbelow(90)
    decoys = rng.sample([n for n in range(10, 100) if n != number], 2)
    choices = [number, *decoys]
    rng.shuffle(choices)
    return number, choices


def summarize_user_agent(ua: str | None) -> str:
    """A summary such as "Firefox on Windows" (in the page's language): enough to
    recognise (or not) the browser."""
    ua = ua or ""
    browser = _("Unknown browser")
    for token, name in (
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python-requests/", "Python requests"),
    ):
        if token in ua:
            browser = name
            break
    system = ""
    for token, name in (
        ("Android", "Android"),
        ("iPhone", "iPhone"),
        ("iPad", "iPad"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("CrOS", "ChromeOS"),
        ("Linux", "Linux"),
    ):
        if token in ua:
            system = name
            break
    return _("%(browser)s on %(system)s", browser=browser, system=system) if system else browser


def _clean_label(name: str) -> str:
    text = "".join(ch for ch in (name or "") if ch.isprintable()).strip()
    return text[:40] or _("Phone")


class PushService:
    """Enrollment, challenges and answers. Views and the app API call it; it commits
    only what it audits (failures through :func:`audit.record_now`)."""

    def __init__(self, svc: Services):
        self.svc = svc
        p = svc.settings.push
        self.sends = RateLimiter(
            svc.store, Limit("push.send.user", p.sends_per_user, p.send_window)
        )

    @property
    def store(self):
        return self.svc.store

    @property
    def settings(self):
        return self.svc.settings.push

    def _ttl(self) -> int:
        return self.settings.challenge_ttl + GRACE

    # -- devices ---------------------------------------------------------------------
    def devices(self, user: User, *, status: str = "active") -> list[Factor]:
        return list(
            db.session.execute(
                db.select(Factor)
                .filter_by(user_id=user.id, type="push", status=status)
                .order_by(Factor.created_at)
            ).scalars()
        )

    def device(self, device_id: str) -> Factor | None:
        if not device_id or len(device_id) > 64:
            return None
        return db.session.execute(
            db.select(Factor).filter_by(type="push", credential_id=device_id)
        ).scalar_one_or_none()

    def is_locked(self, user: User) -> bool:
        return any((f.data or {}).get("locked") for f in self.devices(user))

    def lock(self, user: User, *, reason: str) -> None:
        """Pause push for *user* (all devices) until the help desk unlocks the account
        (``idp users unlock``) or the user removes and adds the device again."""
        for f in self.devices(user):
            f.data = {**(f.data or {}), "locked": {"at": int(time.time()), "reason": reason}}

    def clear_lock(self, user: User) -> bool:
        cleared = False
        for f in self.devices(user):
            if (f.data or {}).get("locked"):
                f.data = {k: v for k, v in f.data.items() if k != "locked"}
                cleared = True
        return cleared

    def authenticate(self, token: str, *, method: str, url: str) -> tuple[Factor, dict[str, Any]]:
        """The device that signed this request, after every check: known and active
        device, its algorithm and key, method, URL, freshness, and a nonce never seen
        before (``set_if_absent``, kept for twice the allowed skew). Raises
        :class:`push_jws.SignatureError`."""
        header = push_jws.peek_header(token)
        device_id = header.get("kid")
        factor = self.device(device_id) if isinstance(device_id, str) else None
        if factor is None or factor.status != "active" or not factor.public_key:
            raise push_jws.SignatureError("unknown or removed device", "unknown_device")
        alg = (factor.data or {}).get("alg", "")
        key = push_jws.load_public_key(factor.public_key, alg)
        _header, claims = push_jws.verify(token, key, alg)
        push_jws.check_claims(
            claims, aud=url, htm=method, now=int(time.time()), skew=self.settings.clock_skew
        )
        if claims.get("sub") != device_id:
            raise push_jws.SignatureError("sub must be the device id", "invalid_request_signature")
        nonce = f"push:jti:{device_id}:{hash_token(claims['jti'])}"
        if not self.store.set_if_absent(nonce, b"1", 2 * self.settings.clock_skew + 1):
            raise push_jws.SignatureError("this request was already received", "replayed_request")
        return factor, claims

    # -- enrollment --------------------------------------------------------------------
    def _check_totp_cap(self, user: User) -> None:
        count = db.session.execute(
            db.select(db.func.count(Factor.id)).filter_by(
                user_id=user.id, type="totp", status="active"
            )
        ).scalar_one()
        if count >= self.svc.settings.mfa.max_totp_per_user:
            raise EnrollmentError(
                lazy_ngettext(
                    "The app also works as an authenticator app, and you already have "
                    "%(num)d authenticator app, the most allowed. Remove it first.",
                    "The app also works as an authenticator app, and you already have "
                    "%(num)d authenticator apps, the most allowed. Remove one first.",
                    count,
                )
            )

    def _drop_stale_pending(self, user: User) -> None:
        """Forget devices whose enrollment the browser never finished."""
        horizon = utcnow().timestamp() - self.settings.enroll_ttl
        for f in self.devices(user, status="pending"):
            if f.created_at.timestamp() < horizon:
                linked = (f.data or {}).get("totp_factor_id")
                if linked:
                    db.session.execute(
                        db.delete(Factor).where(
                            Factor.id == linked,
                            Factor.user_id == user.id,
                            Factor.status == "pending",
                        )
                    )
                db.session.delete(f)
        db.session.commit()

    def enroll_uri(self, token: str) -> str:
        return f"{SCHEME}://enroll?" + urlencode(
            {"issuer": self.svc.settings.issuer, "token": token}
        )

    def begin_enrollment(self, user: User, *, binding: str) -> dict[str, Any]:
        """The enrollment link (and its QR code) for this browser session: a single-use
        256-bit token valid ``[push] enroll_ttl`` seconds, stored only as its hash (the
        session keeps it encrypted, to show the same code after a reload)."""
        if self.is_locked(user):
            raise EnrollmentError(PushLocked.message)
        self._check_totp_cap(user)
        self._drop_stale_pending(user)
        context = f"push-enroll:{user.id}"
        raw = self.store.get(f"push:enroll:session:{binding}")
        token = None
        if raw is not None:
            data = json.loads(raw)
            if self.store.get(f"push:enroll:{data['h']}") is not None:
                token = self.svc.secrets.decrypt(data["t"], context=context)
        if token is None:
            token = secrets.token_urlsafe(32)
            ttl = self.settings.enroll_ttl
            digest = hash_token(token)
            record = {"u": user.id, "b": binding}
            self.store.set(f"push:enroll:{digest}", json.dumps(record).encode(), ttl)
            blob = {"t": self.svc.secrets.encrypt(token, context=context), "h": digest}
            self.store.set(f"push:enroll:session:{binding}", json.dumps(blob).encode(), ttl)
            self.store.delete(f"push:enroll:done:{binding}")
        uri = self.enroll_uri(token)
        expires_in = self.store.ttl(f"push:enroll:{hash_token(token)}") or 0
        name = self.svc.settings.ui.service_name
        return {
            "uri": uri,
            "qr": qr_svg(uri, title=f"QR code to add {name} to the idp-verify app"),
            "expires_in": expires_in,
        }

    def enroll_device(
        self, token: str, *, public_key: push_jws.PublicKey, alg: str, name: str
    ) -> tuple[User, Factor, str]:
        """Register the app's key against a single-use enrollment token (taken
        atomically, so it works once). Creates the device and its linked authenticator
        app (TOTP) factor, both pending until the browser that showed the code finishes
        the set-up. Returns ``(user, device, totp secret)``."""
        raw = self.store.take(f"push:enroll:{hash_token(token)}") if token else None
        if raw is None:
            raise EnrollmentError(
                _l("This enrollment code expired or was already used."),
                reason="enrollment token unknown, expired or reused",
            )
        record = json.loads(raw)
        user = db.session.get(User, record["u"])
        if user is None or not user.is_active:
            raise EnrollmentError(_l("This enrollment code is no longer valid."), reason="no user")
        self._check_totp_cap(user)
        with force_locale(account_locale(user)):  # the app has no page: the account's language
            label = _clean_label(name)
            codes_label = _("%(device)s (codes)", device=label)[:60]
        secret = totp.new_secret()
        codes = Factor(
            user_id=user.id,
            type="totp",
            label=codes_label,
            status="pending",
            secret_enc=self.svc.secrets.encrypt(secret, context=f"totp:{user.id}"),
            data={"linked_push": True},
        )
        db.session.add(codes)
        db.session.flush()
        device = Factor(
            user_id=user.id,
            type="push",
            label=label,
            status="pending",
            credential_id=secrets.token_urlsafe(16),
            public_key=push_jws.public_key_der(public_key),
            data={"alg": alg, "totp_factor_id": codes.id},
        )
        db.session.add(device)
        db.session.flush()
        audit.record(
            "mfa.push_device_registered", user_id=user.id, factor_id=device.id, label=label, alg=alg
        )
        db.session.commit()
        binding = record["b"]
        self.store.set(
            f"push:enroll:done:{binding}",
            json.dumps({"f": device.id}).encode(),
            self.settings.enroll_ttl,
        )
        self.store.publish(f"push:enroll:{binding}", b"done")
        return user, device, secret

    def enrollment_status(self, binding: str) -> str:
        """``enrolled`` (the app registered), ``waiting`` or ``expired``."""
        if self.store.get(f"push:enroll:done:{binding}") is not None:
            return "enrolled"
        raw = self.store.get(f"push:enroll:session:{binding}")
        if raw is not None and self.store.get(f"push:enroll:{json.loads(raw)['h']}") is not None:
            return "waiting"
        return "expired"

    def finish_enrollment(self, user: User, *, binding: str) -> Factor:
        """Activate the device the app registered for this browser session (and its
        linked TOTP factor). The pending record is taken, so this happens once."""
        raw = self.store.take(f"push:enroll:done:{binding}")
        if raw is None:
            if self.enrollment_status(binding) == "waiting":
                raise EnrollmentError(
                    _l(
                        "The app has not registered yet. Scan the code (or run idp-verify "
                        "enroll with the link), then continue."
                    )
                )
            raise EnrollmentError(_l("The set-up expired. Start again to get a new code."))
        device = db.session.get(Factor, json.loads(raw)["f"])
        if device is None or device.user_id != user.id or device.status != "pending":
            raise EnrollmentError(_l("The set-up expired. Start again to get a new code."))
        self.store.delete(f"push:enroll:session:{binding}")
        now = utcnow()
        device.status, device.activated_at, device.last_used_at = "active", now, now
        linked = db.session.get(Factor, (device.data or {}).get("totp_factor_id") or 0)
        if linked is not None and linked.user_id == user.id and linked.status == "pending":
            linked.status, linked.activated_at = "active", now
            audit.record(
                "mfa.factor_added",
                user_id=user.id,
                factor="totp",
                factor_id=linked.id,
                label=linked.label,
                linked_push=device.id,
            )
        db.session.flush()
        return device

    def linked_codes(self, device: Factor) -> Factor | None:
        linked = db.session.get(Factor, (device.data or {}).get("totp_factor_id") or 0)
        if linked is None or linked.user_id != device.user_id or linked.type != "totp":
            return None
        return linked

    # -- challenges --------------------------------------------------------------------
    def _load(self, challenge_id: str) -> Challenge | None:
        if not challenge_id or len(challenge_id) > 64:
            return None
        raw = self.store.get(f"push:ch:{challenge_id}")
        return Challenge(**json.loads(raw)) if raw is not None else None

    def _answer(self, challenge_id: str) -> dict[str, Any] | None:
        raw = self.store.get(f"push:answer:{challenge_id}")
        return json.loads(raw) if raw is not None else None

    def _forget(self, ch: Challenge) -> None:
        keys = [f"push:ch:{ch.id}", f"push:handle:{hash_token(ch.handle)}"]
        for key in [f"push:user:{ch.user_id}", *(f"push:device:{d}" for d in ch.devices)]:
            if self.store.get(key) == ch.id.encode():
                keys.append(key)
        self.store.delete(*keys)

    def send(
        self, user: User, *, binding: str, client: str, ip: str, user_agent: str | None
    ) -> Challenge:
        """Create a challenge for every active device of *user* and announce it.

        Rate limited per user (``[push] sends_per_user`` per ``send_window``: push
        fatigue). A new challenge replaces the user's pending one."""
        if self.is_locked(user):
            raise PushLocked()
        devices = self.devices(user)
        if not devices:
            raise ChallengeGone(_l("Push approval is not set up."), code="no_device")
        self.sends.hit(str(user.id))
        previous = self.store.get(f"push:user:{user.id}")
        if previous is not None:
            old = self._load(previous.decode())
            if old is not None:
                self._forget(old)
        number, choices = new_number()
        now = int(time.time())
        ch = Challenge(
            id=secrets.token_urlsafe(16),
            user_id=user.id,
            devices=[d.credential_id or "" for d in devices],
            number=number,
            choices=choices,
            client=client[:80],
            ip=ip[:64],
            browser=summarize_user_agent(user_agent),
            created=now,
            expires=now + self.settings.challenge_ttl,
            binding=binding,
            handle=secrets.token_urlsafe(32),
        )
        ttl = self._ttl()
        self.store.set(f"push:ch:{ch.id}", json.dumps(vars(ch)).encode(), ttl)
        self.store.set(f"push:handle:{hash_token(ch.handle)}", ch.id.encode(), ttl)
        self.store.set(f"push:user:{user.id}", ch.id.encode(), ttl)
        self.store.set(f"push:session:{binding}", ch.id.encode(), ttl)
        for device_id in ch.devices:
            self.store.set(f"push:device:{device_id}", ch.id.encode(), ttl)
        audit.record_now("mfa.push_sent", user_id=user.id, devices=len(devices), client=client)
        for device_id in ch.devices:
            self.store.publish(f"push:device:{device_id}", ch.id.encode())
        return ch

    def pending_for(self, device: Factor) -> list[Challenge]:
        """The device's pending, unanswered challenge (a list: at most one today)."""
        raw = self.store.get(f"push:device:{device.credential_id}")
        if raw is None:
            return []
        ch = self._load(raw.decode())
        now = int(time.time())
        if ch is None or ch.user_id != device.user_id or now >= ch.expires:
            return []
        if self._answer(ch.id) is not None:
            return []
        return [ch]

    def wait_pending(self, device: Factor, timeout: float) -> list[Challenge]:
        """Long-poll: return as soon as a challenge is pending for *device*, or after
        *timeout* seconds. Waits on the store's pub/sub in short slices and re-reads
        the state between them (a message published between a read and a subscribe
        is otherwise lost)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.pending_for(device)
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            self.store.wait_for(f"push:device:{device.credential_id}", min(2.0, remaining))

    def _challenge_for(self, device: Factor, challenge_id: str) -> Challenge:
        ch = self._load(challenge_id)
        # Another user's challenge, or one this device was not asked: the same answer
        # as an unknown id, so ids cannot be probed.
        if ch is None or ch.user_id != device.user_id or device.credential_id not in ch.devices:
            raise ChallengeGone(
                _l("No such request: it expired or was never sent to this device."),
                reason="push challenge unknown",
                code="unknown_challenge",
            )
        if int(time.time()) >= ch.expires:
            raise ChallengeGone(_l("This request expired."), reason="push challenge expired")
        return ch

    def _claim(self, ch: Challenge, status: str, device: Factor) -> None:
        answer = {"s": status, "d": device.credential_id, "at": int(time.time())}
        if not self.store.set_if_absent(
            f"push:answer:{ch.id}", json.dumps(answer).encode(), self._ttl()
        ):
            raise AlreadyAnswered(reason="push challenge already answered")
        self.store.delete(f"push:device:{device.credential_id}")
        self.store.publish(f"push:ch:{ch.id}", status.encode())

    def answer(self, device: Factor, challenge_id: str, number: Any) -> Verified:
        """The app's approval with the number the user picked (called through
        :meth:`idp.mfa.service.MFAService.verify`, so the shared failure counter and
        lock apply). A wrong number ends the challenge and counts as a failure."""
        ch = self._challenge_for(device, challenge_id)
        picked = (
            str(number) if isinstance(number, int | str) and not isinstance(number, bool) else ""
        )
        right = equal(picked.encode(), str(ch.number).encode())
        self._claim(ch, "approved" if right else "wrong_number", device)
        if not right:
            raise InvalidResponse(
                _l(
                    "That is not the number shown on the sign-in screen. The request was cancelled."
                ),
                reason="push wrong number",
            )
        return Verified(device, AMR)

    def deny(self, user: User, device: Factor, challenge_id: str, *, report: bool) -> None:
        """The user refused the request; ``report`` marks it as suspicious: push is
        locked for the user, who is emailed, and the event is audited."""
        ch = self._challenge_for(device, challenge_id)
        self._claim(ch, "reported" if report else "denied", device)
        details = {"factor_id": device.id, "client": ch.client, "request_ip": ch.ip}
        if not report:
            audit.record_now("mfa.push_denied", outcome="failure", user_id=user.id, **details)
            return
        self.lock(user, reason="reported")
        audit.record("mfa.push_reported", outcome="failure", user_id=user.id, **details)
        db.session.commit()
        notify(
            user,
            "push_reported",
            client=ch.client,
            ip=ch.ip,
            browser=ch.browser,
            when=datetime.fromtimestamp(ch.created, UTC),  # in the email's language
        )

    # -- the browser's view of its challenge -----------------------------------------
    def current(
        self, binding: str, challenge_id: str | None = None
    ) -> tuple[str, Challenge | None]:
        """``(status, challenge)`` for the browser session *binding*: ``none`` (nothing
        sent), ``pending``, ``approved``, ``denied``, ``reported``, ``wrong_number`` or
        ``expired`` (timed out, replaced, or lost with the store)."""
        raw = self.store.get(f"push:session:{binding}")
        cid = raw.decode() if raw is not None else None
        if challenge_id and challenge_id != cid:
            return "expired", None
        if cid is None:
            return "none", None
        ch = self._load(cid)
        if ch is None or ch.binding != binding:
            return "expired", None
        answer = self._answer(ch.id)
        if answer is not None:
            return answer["s"], ch
        if int(time.time()) >= ch.expires:
            return "expired", ch
        return "pending", ch

    def by_handle(self, handle: str) -> tuple[str, Challenge | None]:
        """The out-of-band status for a client that holds the challenge's handle."""
        if not handle or len(handle) > 128:
            return "expired", None
        raw = self.store.get(f"push:handle:{hash_token(handle)}")
        if raw is None:
            return "expired", None
        ch = self._load(raw.decode())
        if ch is None or not equal(ch.handle, handle):
            return "expired", None
        return self.current(ch.binding, ch.id)

    def complete(self, user: User, *, binding: str) -> Factor:
        """Consume this session's approved challenge (once: the answer is taken)."""
        status, ch = self.current(binding)
        if ch is None or ch.user_id != user.id or status != "approved":
            raise NotApproved(status)
        raw = self.store.take(f"push:answer:{ch.id}")
        if raw is None:
            raise NotApproved("expired")
        answer = json.loads(raw)
        self._forget(ch)
        self.store.delete(f"push:session:{binding}")
        device = self.device(answer["d"])
        if device is None or device.user_id != user.id or device.status != "active":
            raise NotApproved("expired")
        return device

    def cancel(self, binding: str) -> None:
        """Forget this session's challenge (the user chose another way)."""
        status, ch = self.current(binding)
        if ch is not None:
            self._forget(ch)
        self.store.delete(f"push:session:{binding}")
