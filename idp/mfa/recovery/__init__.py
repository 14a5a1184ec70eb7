"""Recovery codes: ten look-up secrets, shown once, each usable once."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import update

from ...extensions import db
from ...models import Factor, RecoveryCode, User
from ...models.base import utcnow
from ...services import Services
from ..base import FactorPages, InvalidResponse, Verified
from . import codes as recovery


class RecoveryFactor(FactorPages):
    type = "recovery"
    display_name = _l("Recovery codes")
    description = _l(
        "Ten one-time codes to print or save, for when you do not have your phone or key."
    )
    first_factor = False
    challenge_template = "mfa/challenge/recovery.html"

    def __init__(self, svc: Services):
        self.svc = svc

    def setup_page(self, ctx: Any) -> Any:
        from .views import setup

        return setup(ctx, self)

    def remaining(self, user: User) -> int:
        return db.session.execute(
            db.select(db.func.count(RecoveryCode.id)).filter_by(user_id=user.id, used_at=None)
        ).scalar_one()

    def generate(self, user: User) -> tuple[Factor, list[str]]:
        """Create a new set, invalidating the old one. Returns the factor and the codes
        (the only time they exist in clear)."""
        db.session.execute(db.delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        codes = recovery.generate()
        for code in codes:
            db.session.add(
                RecoveryCode(
                    user_id=user.id,
                    code_hash=recovery.code_hash(
                        self.svc.settings.secret_key, recovery.normalize(code) or ""
                    ),
                )
            )
        factor = db.session.execute(
            db.select(Factor).filter_by(user_id=user.id, type=self.type)
        ).scalar_one_or_none()
        if factor is None:
            factor = Factor(user_id=user.id, type=self.type, label=_("Recovery codes"))
            db.session.add(factor)
        factor.status = "active"
        factor.activated_at = utcnow()
        db.session.flush()
        return factor, codes

    def verify(
        self, user: User, factors: list[Factor], payload: dict[str, Any], *, binding: str
    ) -> Verified:
        normalized = recovery.normalize(str(payload.get("code") or ""))
        if normalized is None or not factors:
            raise InvalidResponse(_l("That is not a recovery code."), reason="malformed code")
        digest = recovery.code_hash(self.svc.settings.secret_key, normalized)
        # Burn atomically: of two concurrent uses exactly one updates the row.
        burned = db.session.execute(
            update(RecoveryCode)
            .where(
                RecoveryCode.user_id == user.id,
                RecoveryCode.code_hash == digest,
                RecoveryCode.used_at.is_(None),
            )
            .values(used_at=utcnow())
        ).rowcount
        if burned != 1:
            raise InvalidResponse(
                _l("That recovery code is not right or was already used."),
                reason="unknown or used",
            )
        factor = factors[0]
        factor.last_used_at = utcnow()
        if self.remaining(user) == 0:
            factor.status = "used_up"
        return Verified(factor, ("lookup",))
