"""Security keys and passkeys (WebAuthn Level 2, through py_webauthn).

Challenges live in the store under the browser session and are taken (read and
deleted atomically) when the response arrives, so each can be answered once.
A passkey counts as phishing-resistant; ``amr`` is ``hwk`` for a device-bound key and
``swk`` for a synced passkey (RFC 8176), plus ``user`` (the user-presence test).
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError

from ... import audit
from ...extensions import db
from ...models import Factor, User
from ...models.base import utcnow
from ...notify import notify
from ...services import Services
from ..base import EnrollmentError, FactorPages, InvalidResponse, Verified
from . import core

CHALLENGE_TTL = 300


class WebAuthnFactor(FactorPages):
    type = "webauthn"
    display_name = "Security key or passkey"
    description = (
        "Use a passkey on your phone or computer (fingerprint, face or screen lock), or a "
        "USB/NFC security key. The strongest option: it cannot be phished."
    )
    first_factor = True
    challenge_template = "mfa/challenge/webauthn.html"

    def __init__(self, svc: Services):
        self.svc = svc
        s = svc.settings
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(s.issuer))
        self.rp = core.RelyingParty(
            rp_id=s.webauthn.rp_id or (urlsplit(s.issuer).hostname or "localhost"),
            rp_name=s.webauthn.rp_name or s.ui.service_name,
            origins=tuple(s.webauthn.origins) or (origin,),
        )

    def setup_page(self, ctx: Any) -> Any:
        from .views import setup

        return setup(ctx, self)

    # -- helpers -------------------------------------------------------------------
    @staticmethod
    def _stored(f: Factor) -> core.StoredCredential:
        return core.StoredCredential(
            credential_id=core.b64url_decode(f.credential_id or ""),
            public_key=f.public_key or b"",
            sign_count=f.sign_count or 0,
            transports=tuple(f.transports or ()),
        )

    def _credentials(self, user: User) -> list[Factor]:
        return list(
            db.session.execute(
                db.select(Factor).filter_by(user_id=user.id, type=self.type, status="active")
            ).scalars()
        )

    def _handle(self, user: User) -> bytes:
        if not user.webauthn_handle:
            user.webauthn_handle = core.b64url(secrets.token_bytes(32))
            db.session.commit()
        return core.b64url_decode(user.webauthn_handle)

    @staticmethod
    def _amr(device_type: str) -> tuple[str, ...]:
        return ("swk" if device_type == "multi_device" else "hwk", "user")

    # -- registration --------------------------------------------------------------------
    def registration_options(self, user: User, *, binding: str) -> str:
        options, challenge = core.registration_options(
            self.rp,
            user_handle=self._handle(user),
            user_name=user.email,
            display_name=user.name or user.email,
            exclude=[self._stored(f) for f in self._credentials(user)],
        )
        self.svc.store.set(f"webauthn:register:{binding}", challenge, CHALLENGE_TTL)
        return options

    def finish_enrollment(
        self, user: User, response: str, label: str, *, binding: str
    ) -> tuple[Factor, tuple[str, ...]]:
        challenge = self.svc.store.take(f"webauthn:register:{binding}")
        if challenge is None:
            raise EnrollmentError(
                "The request timed out. Try again.", reason="no pending registration challenge"
            )
        try:
            cred = core.verify_registration(self.rp, response=response, challenge=challenge)
        except core.WebAuthnError as exc:
            raise EnrollmentError(exc.message, reason=exc.reason) from None
        factor = Factor(
            user_id=user.id,
            type=self.type,
            label=label or ("Passkey" if cred.device_type == "multi_device" else "Security key"),
            status="active",
            credential_id=core.b64url(cred.credential_id),
            public_key=cred.public_key,
            sign_count=cred.sign_count,
            transports=list(cred.transports),
            aaguid=cred.aaguid,
            device_type=cred.device_type,
            activated_at=utcnow(),
            last_used_at=utcnow(),
            data={"alg": cred.alg, "user_verified": cred.user_verified},
        )
        db.session.add(factor)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            raise EnrollmentError(
                "This security key is already registered.", reason="duplicate credential id"
            ) from None
        return factor, self._amr(cred.device_type)

    # -- authentication ------------------------------------------------------------------
    def authentication_options(self, user: User, *, binding: str) -> str:
        options, challenge = core.authentication_options(
            self.rp, allow=[self._stored(f) for f in self._credentials(user)]
        )
        self.svc.store.set(f"webauthn:authenticate:{binding}", challenge, CHALLENGE_TTL)
        return options

    def verify(
        self, user: User, factors: list[Factor], payload: dict[str, Any], *, binding: str
    ) -> Verified:
        response = payload.get("credential") or ""
        challenge = self.svc.store.take(f"webauthn:authenticate:{binding}")
        if challenge is None:
            raise InvalidResponse(
                "The request timed out or was already used. Try again.",
                reason="no pending authentication challenge",
            )
        try:
            cred_id = core.b64url(core.credential_id_of(response))
        except core.WebAuthnError as exc:
            raise InvalidResponse(exc.message, reason=exc.reason) from None
        factor = next((f for f in factors if f.credential_id == cred_id), None)
        if factor is None:
            # Unknown here, or another user's credential: the same answer for both.
            raise InvalidResponse(
                "This security key is not registered to your account.",
                reason="credential not registered to this user",
            )
        try:
            result = core.verify_authentication(
                self.rp, response=response, challenge=challenge, credential=self._stored(factor)
            )
        except core.PossibleClone as exc:
            audit.record_now("mfa.webauthn_possible_clone", outcome="failure", user_id=user.id,
                             factor_id=factor.id, reason=exc.reason)  # fmt: skip
            notify(user, "possible_clone", label=factor.label)
            raise InvalidResponse(exc.message, reason="possible clone") from None
        except core.WebAuthnError as exc:
            raise InvalidResponse(exc.message, reason=exc.reason) from None
        factor.sign_count = result.new_sign_count
        factor.device_type = result.device_type
        return Verified(factor, self._amr(result.device_type))
