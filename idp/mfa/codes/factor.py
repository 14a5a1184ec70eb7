"""What the three code factors (email, text message, voice call) share: a destination
kept encrypted in ``Factor.secret_enc``, a code sent on request and checked once.

Enrollment binds nothing until the code sent to the new destination comes back: the
pending destination lives in the store under the browser session (encrypted), and the
``Factor`` row is written, already active, only when the code matches. A send that
fails removes the pending state, so a failed set-up leaves nothing behind.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from flask import render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext

from ... import audit
from ...delivery import DeliveryError
from ...extensions import db
from ...i18n import help_hours
from ...models import Factor, User
from ...models.base import utcnow
from ...services import Services
from ..base import EnrollmentError, FactorPages, InvalidResponse, MFAError, Verified
from .otp import OTPCodes, Sent, WrongCode

SIGNIN = "mfa"  # purpose of codes sent for a challenge
ENROLL = "enroll"  # purpose of codes sent to a destination being set up


class DeliveryFailed(MFAError):
    """The code could not be sent; the user is told plainly and offered another way."""

    message = _l("We could not send the code right now.")


class CodeFactor(FactorPages, ABC):
    """Base of :class:`~idp.mfa.email_factor.EmailFactor` and the phone factors."""

    type = ""
    display_name: Any = ""
    description: Any = ""
    first_factor = True
    amr: tuple[str, ...] = ()
    channel_noun: Any = ""  # "an email", "a text message", "a phone call": "We sent ..."
    destination_label: Any = ""  # the set-up form's field label
    already_set_up: Any = ""  # "That phone number is already set up."
    challenge_template = "mfa/challenge/codes.html"

    def __init__(self, svc: Services):
        self.svc = svc
        self.codes = OTPCodes(svc.store, svc.settings.secret_key, svc.settings.otp)

    # -- pages (idp.mfa.codes.views) --------------------------------------------------------
    def setup_page(self, ctx: Any) -> Any:
        from .views import setup

        return setup(ctx, self)

    def challenge_action(self, ctx: Any) -> Any:
        """ "Send code" on the challenge page (sending only ever happens on a POST)."""
        from flask import request

        if request.form.get("action") != "send":
            return None
        from .views import send

        return send(ctx, self)

    def challenge_vars(self, ctx: Any) -> dict[str, Any]:
        from .views import challenge_vars

        return challenge_vars(ctx, self)

    # -- hooks for the channels ------------------------------------------------------------
    @abstractmethod
    def parse_destination(self, raw: str) -> str:
        """The normalized destination, or raise :class:`EnrollmentError` (user message)."""

    @abstractmethod
    def mask(self, destination: str) -> str:
        """The destination as shown on pages (``***-***-1234``)."""

    @abstractmethod
    def deliver(self, user: User, destination: str, sent: Sent) -> None:
        """Hand the code to the channel, or raise :class:`~idp.delivery.DeliveryError`."""

    def _context(self, user: User) -> str:
        return f"{self.type}:{user.id}"

    # -- helpers -----------------------------------------------------------------------
    def destination(self, user: User, factor: Factor) -> str:
        return self.svc.secrets.decrypt(factor.secret_enc or "", context=self._context(user))

    def masked(self, factor: Factor) -> str:
        return (factor.data or {}).get("masked") or factor.label

    def active(self, user: User) -> list[Factor]:
        return list(
            db.session.execute(
                db.select(Factor)
                .filter_by(user_id=user.id, type=self.type, status="active")
                .order_by(Factor.created_at)
            ).scalars()
        )

    def choose(self, factors: list[Factor], factor_id: Any) -> Factor | None:
        """The factor the user picked (by id), else the default or most recently used."""
        if not factors:
            return None
        if factor_id not in (None, ""):
            return next((f for f in factors if str(f.id) == str(factor_id)), None)
        for f in factors:
            if f.is_default:
                return f
        return max(factors, key=lambda f: f.last_used_at or f.created_at)

    def send_notice(self, masked: str) -> str:
        """What the challenge page says before the code is sent."""
        return _("We will send %(channel)s with a 6-digit code to %(destination)s.",
                 channel=self.channel_noun, destination=masked)  # fmt: skip

    def sent_notice(self, masked: str, minutes: int) -> str:
        """What the challenge page says once a code is on its way."""
        return ngettext(
            "We sent %(channel)s with a 6-digit code to %(destination)s. The code expires "
            "%(num)d minute after it was sent.",
            "We sent %(channel)s with a 6-digit code to %(destination)s. The code expires "
            "%(num)d minutes after it was sent.",
            minutes,
            channel=self.channel_noun,
            destination=masked,
        )

    def minutes(self, sent: Sent) -> int:
        return max(1, sent.ttl // 60)

    def _send(self, user: User, destination: str, factor_ref: str, purpose: str, ip: str) -> None:
        sent = self.codes.issue(
            user_id=user.id, factor_ref=factor_ref, purpose=purpose,
            destination=destination, ip=ip,
        )  # fmt: skip
        try:
            self.deliver(user, destination, sent)
        except DeliveryError as exc:
            self.codes.cancel(user_id=user.id, factor_ref=factor_ref, purpose=purpose)
            audit.record_now("delivery.failed", outcome="failure", user_id=user.id,
                             channel=self.type, purpose=purpose, reason=exc.reason)  # fmt: skip
            raise DeliveryFailed(reason=exc.reason) from exc
        audit.record_now("mfa.code_sent", user_id=user.id, factor=self.type, purpose=purpose)

    # -- challenge ---------------------------------------------------------------------
    def send(self, user: User, factor: Factor, *, ip: str) -> None:
        """Send a sign-in code to *factor* (raises ResendTooSoon, RateLimited, DeliveryFailed)."""
        self._send(user, self.destination(user, factor), str(factor.id), SIGNIN, ip)

    def code_pending(self, user: User, factor: Factor) -> bool:
        return (
            self.codes.pending(user_id=user.id, factor_ref=str(factor.id), purpose=SIGNIN)
            is not None
        )

    def verify(
        self, user: User, factors: list[Factor], payload: dict[str, Any], *, binding: str
    ) -> Verified:
        factor = self.choose(factors, payload.get("factor_id"))
        if factor is None:
            raise InvalidResponse(_l("That sign-in method is not set up."), reason="unknown factor")
        try:
            self.codes.check(user_id=user.id, factor_ref=str(factor.id), purpose=SIGNIN,
                             code=str(payload.get("code") or ""))  # fmt: skip
        except WrongCode as exc:
            raise InvalidResponse(exc.message, reason=exc.reason) from None
        return Verified(factor, self.amr)

    # -- enrollment --------------------------------------------------------------------
    def _pending_key(self, binding: str) -> str:
        return f"enroll:{self.type}:{binding}"

    def pending_enrollment(self, user: User, *, binding: str) -> dict[str, str] | None:
        raw = self.svc.store.get(self._pending_key(binding))
        if raw is None:
            return None
        data = json.loads(raw)
        return {"masked": data["m"], "label": data["l"]}

    def begin_enrollment(self, user: User, raw: str, label: str, *, binding: str, ip: str) -> str:
        """Check the destination, remember it as pending and send it a code.

        Returns the masked destination. Raises :class:`EnrollmentError` for a destination
        that cannot be used, ``ResendTooSoon``/``RateLimited`` for too many sends and
        :class:`DeliveryFailed` (nothing pending is left) when the send failed.
        """
        destination = self.parse_destination(raw)
        for factor in self.active(user):
            if self.destination(user, factor) == destination:
                raise EnrollmentError(self.already_set_up)
        masked = self.mask(destination)
        pending = {
            "d": self.svc.secrets.encrypt(destination, context=self._context(user)),
            "m": masked,
            "l": label or masked,
        }
        key = self._pending_key(binding)
        self.svc.store.set(key, json.dumps(pending).encode(), self.svc.settings.otp.code_ttl)
        try:
            self._send(user, destination, f"new:{binding}", ENROLL, ip)
        except Exception:
            self.svc.store.delete(key)
            raise
        return masked

    def resend_enrollment(self, user: User, *, binding: str, ip: str) -> str:
        key = self._pending_key(binding)
        raw = self.svc.store.get(key)
        if raw is None:
            raise EnrollmentError(_l("The set-up expired. Start again."))
        data = json.loads(raw)
        destination = self.svc.secrets.decrypt(data["d"], context=self._context(user))
        # Keep the pending destination as long as the new code lives.
        self.svc.store.expire(key, self.svc.settings.otp.code_ttl)
        try:
            self._send(user, destination, f"new:{binding}", ENROLL, ip)
        except DeliveryFailed:
            self.svc.store.delete(key)
            raise
        return data["m"]

    def cancel_enrollment(self, user: User, *, binding: str) -> None:
        self.svc.store.delete(self._pending_key(binding))
        self.codes.cancel(user_id=user.id, factor_ref=f"new:{binding}", purpose=ENROLL)

    def finish_enrollment(self, user: User, code: str, *, binding: str) -> Factor:
        """Bind the pending destination once its code comes back (nothing before)."""
        key = self._pending_key(binding)
        if self.svc.store.get(key) is None:
            raise EnrollmentError(_l("The set-up expired. Start again."))
        try:
            self.codes.check(user_id=user.id, factor_ref=f"new:{binding}", purpose=ENROLL,
                             code=code)  # fmt: skip
        except WrongCode as exc:
            raise InvalidResponse(exc.message, reason=exc.reason) from None
        raw = self.svc.store.take(key)
        if raw is None:
            raise EnrollmentError(_l("This set-up was already completed."))
        data = json.loads(raw)
        factor = Factor(
            user_id=user.id,
            type=self.type,
            label=data["l"][:100],
            status="active",
            secret_enc=data["d"],
            data={"masked": data["m"]},
            activated_at=utcnow(),
            last_used_at=utcnow(),
        )
        db.session.add(factor)
        db.session.flush()
        return factor

    # -- messages ----------------------------------------------------------------------
    def _template_context(self, sent: Sent) -> dict[str, Any]:
        s = self.svc.settings
        return {"code": sent.code, "minutes": self.minutes(sent),
                "service_name": s.ui.service_name, "help_phone": s.ui.help_phone,
                "help_hours": help_hours(s.ui)}  # fmt: skip

    def render(self, template: str, sent: Sent, **extra: Any) -> str:
        return render_template(template, **self._template_context(sent), **extra)
