"""Push approval with number matching in the companion app (``idp-verify``).

The verification that counts is the app's answer: the number the user picked among
three is compared with the one the browser shows (NIST SP 800-63B: a value passes
between the two channels). It walks :meth:`idp.mfa.service.MFAService.verify` like
every factor (lock, rate limit, a wrong number counts as a failure); the browser then
completes the sign-in with the approved challenge (:meth:`PushService.complete`).
See :mod:`idp.mfa.push` and docs/PUSH.md.
"""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l

from ...models import Factor, User
from ...services import Services
from ..base import FactorPages, InvalidResponse, Verified
from .service import PushService


class PushFactor(FactorPages):
    type = "push"
    display_name = _l("Push approval (idp-verify app)")
    description = _l(
        "Approve sign-ins in the idp-verify companion app by picking the number shown on "
        "the screen. The app also gives 6-digit codes when your phone is offline."
    )
    first_factor = True
    challenge_template = "mfa/challenge/push.html"

    def __init__(self, svc: Services):
        self.svc = svc
        self.service = PushService(svc)

    def setup_page(self, ctx: Any) -> Any:
        from .views import setup

        return setup(ctx, self)

    def challenge_action(self, ctx: Any) -> Any:
        """Every push form of the challenge page is an action (send, continue)."""
        from .views import challenge_action

        return challenge_action(ctx, self)

    def challenge_vars(self, ctx: Any) -> dict[str, Any]:
        from .views import challenge_vars

        return challenge_vars(ctx)

    def verify(
        self, user: User, factors: list[Factor], payload: dict[str, Any], *, binding: str
    ) -> Verified:
        """*payload* is the app's answer: ``device_id``, ``challenge`` and ``number``
        (the device already authenticated by its signature)."""
        device = next((f for f in factors if f.credential_id == payload.get("device_id")), None)
        if device is None:
            raise InvalidResponse(
                _l("This device is not registered."), reason="push unknown device"
            )
        return self.service.answer(
            device, str(payload.get("challenge") or ""), payload.get("number")
        )

    def clear_lock(self, user: User) -> bool:
        return self.service.clear_lock(user)
