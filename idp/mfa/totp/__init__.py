"""Authenticator app (TOTP, RFC 6238): the "Google Authenticator" option."""

from __future__ import annotations

import json
from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext
from sqlalchemy import or_, update

from ...extensions import db
from ...models import Factor, User
from ...models.base import utcnow
from ...security import totp
from ...services import Services
from ..base import EnrollmentError, FactorPages, InvalidResponse, Replayed, Verified
from ..qr import qr_svg

ENROLL_TTL = 900


class TOTPFactor(FactorPages):
    type = "totp"
    display_name = _l("Authenticator app")
    description = _l(
        "Use an app such as Google Authenticator, Microsoft Authenticator or any TOTP app "
        "on your phone to get a 6-digit code."
    )
    first_factor = True
    challenge_template = "mfa/challenge/totp.html"

    def __init__(self, svc: Services):
        self.svc = svc

    def setup_page(self, ctx: Any) -> Any:
        from .views import setup

        return setup(ctx, self)

    def _context(self, user: User) -> str:
        return f"totp:{user.id}"

    def _check_cap(self, user: User) -> None:
        count = db.session.execute(
            db.select(db.func.count(Factor.id)).filter_by(
                user_id=user.id, type=self.type, status="active"
            )
        ).scalar_one()
        if count >= self.svc.settings.mfa.max_totp_per_user:
            raise EnrollmentError(
                lazy_ngettext(
                    "You already have %(num)d authenticator app, the most allowed. Remove it "
                    "before adding another.",
                    "You already have %(num)d authenticator apps, the most allowed. Remove one "
                    "before adding another.",
                    count,
                )
            )

    def begin_enrollment(self, user: User, *, binding: str) -> dict[str, Any]:
        """Create (or reuse) the pending secret for this browser session."""
        self._check_cap(user)
        key = f"enroll:totp:{binding}"
        raw = self.svc.store.get(key)
        if raw is not None:
            secret = self.svc.secrets.decrypt(json.loads(raw)["s"], context=self._context(user))
        else:
            secret = totp.new_secret()
            blob = json.dumps({"s": self.svc.secrets.encrypt(secret, context=self._context(user))})
            self.svc.store.set(key, blob.encode(), ENROLL_TTL)
        issuer = self.svc.settings.ui.service_name
        uri = totp.provisioning_uri(secret, account=user.email, issuer=issuer)
        return {
            "uri": uri,
            "secret_grouped": totp.group_secret(secret),
            "qr": qr_svg(
                uri, title=_("QR code to add %(service)s to your authenticator app", service=issuer)
            ),
        }

    def finish_enrollment(self, user: User, code: str, label: str, *, binding: str) -> Factor:
        """Activate the pending secret once the user proves it with a valid code."""
        key = f"enroll:totp:{binding}"
        raw = self.svc.store.get(key)
        if raw is None:
            raise EnrollmentError(_l("The set-up expired. Start again to get a new QR code."))
        # Checked again: another browser of the same user may have finished meanwhile.
        self._check_cap(user)
        secret_enc = json.loads(raw)["s"]
        secret = self.svc.secrets.decrypt(secret_enc, context=self._context(user))
        try:
            step = totp.verify(secret, code, last_step=None)
        except totp.InvalidTOTPError:
            raise InvalidResponse(
                _l(
                    "That code did not match. Check that the time on your phone is right and "
                    "enter the current code."
                )
            ) from None
        # One pending secret is activated at most once, even if the form is posted twice.
        if self.svc.store.take(key) is None:
            raise EnrollmentError(_l("This set-up was already completed."))
        factor = Factor(
            user_id=user.id,
            type=self.type,
            label=label or _("Authenticator app"),
            status="active",
            secret_enc=secret_enc,
            last_step=step,
            activated_at=utcnow(),
            last_used_at=utcnow(),
        )
        db.session.add(factor)
        db.session.flush()
        return factor

    def verify(
        self, user: User, factors: list[Factor], payload: dict[str, Any], *, binding: str
    ) -> Verified:
        code = str(payload.get("code") or "")
        replayed = False
        for factor in factors:
            secret = self.svc.secrets.decrypt(factor.secret_enc or "", context=self._context(user))
            try:
                step = totp.verify(secret, code, last_step=factor.last_step)
            except totp.ReplayedTOTPError:
                replayed = True
                continue
            except totp.InvalidTOTPError:
                continue
            # Accept each time step once per factor, even under concurrent requests.
            won = db.session.execute(
                update(Factor)
                .where(
                    Factor.id == factor.id,
                    or_(Factor.last_step.is_(None), Factor.last_step < step),
                )
                .values(last_step=step, last_used_at=utcnow())
            ).rowcount
            if won != 1:
                raise Replayed(reason="totp step raced")
            return Verified(factor, ("otp",))
        if replayed:
            raise Replayed(reason="totp step reused")
        raise InvalidResponse(reason="totp mismatch")
