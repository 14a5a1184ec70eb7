"""Security keys and passkeys (WebAuthn Level 2, through py_webauthn).

Challenges live in the store under the browser session and are taken (read and
deleted atomically) when the response arrives, so each can be answered once.
A passkey counts as phishing-resistant; ``amr`` is ``hwk`` for a device-bound key and
``swk`` for a synced passkey (RFC 8176), plus ``user`` (the user-presence test), plus
``pin``, ``fpt``... where the authenticator reports how it verified the user.

A credential *signs in alone* (:func:`signs_in_alone`, "can sign in without a
password" on the account page) when it is discoverable and its authenticator verifies
the user: the browser said so at set-up (the ``credProps`` extension; a synced passkey,
which is always discoverable in practice, when the browser did not say), or it already
signed in alone. Any other credential is a second step only. A sign-in with a passkey
alone (:meth:`WebAuthnFactor.passkey_options`, :meth:`WebAuthnFactor.verify_passkey`)
asks for a discoverable credential of any user; the credential id finds the factor,
and the user handle in the signed response must be its owner's (WebAuthn L2 7.2
step 6).
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any
from urllib.parse import urlsplit

from flask_babel import lazy_gettext as _l
from sqlalchemy.exc import IntegrityError

from ... import audit
from ...extensions import db
from ...models import Factor, User
from ...models.base import utcnow
from ...notify import notify
from ...security.crypto import equal
from ...services import Services
from ..base import EnrollmentError, FactorPages, InvalidResponse, Verified
from . import core

CHALLENGE_TTL = 300


def signs_in_alone(factor: Factor) -> bool:
    """Whether this security key or passkey can sign in without a password: a
    discoverable credential whose authenticator verifies its user. A credential set up
    before this was recorded counts as a second step until it signs in alone once."""
    data = factor.data or {}
    return (
        factor.type == "webauthn"
        and data.get("discoverable") is True
        and data.get("user_verified") is True
    )


class WebAuthnFactor(FactorPages):
    type = "webauthn"
    display_name = _l("Security key or passkey")
    description = _l(
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
    def _amr(device_type: str, verification: tuple[str, ...] = ()) -> tuple[str, ...]:
        return ("swk" if device_type == "multi_device" else "hwk", "user", *verification)

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
                _l("The request timed out. Try again."), reason="no pending registration challenge"
            )
        try:
            cred = core.verify_registration(self.rp, response=response, challenge=challenge)
        except core.WebAuthnError as exc:
            raise EnrollmentError(exc.message, reason=exc.reason) from None
        # credProps says whether the credential is discoverable; a browser that did not
        # say made a synced passkey (always discoverable in practice) or we do not know.
        discoverable = cred.discoverable
        if discoverable is None and cred.device_type == "multi_device":
            discoverable = True
        passkey = discoverable is True and cred.user_verified
        kind = cred.device_type
        factor = Factor(
            user_id=user.id,
            type=self.type,
            label=label or ("Passkey" if passkey or kind == "multi_device" else "Security key"),
            status="active",
            credential_id=core.b64url(cred.credential_id),
            public_key=cred.public_key,
            sign_count=cred.sign_count,
            transports=list(cred.transports),
            aaguid=cred.aaguid,
            device_type=cred.device_type,
            activated_at=utcnow(),
            last_used_at=utcnow(),
            data={
                "alg": cred.alg,
                "user_verified": cred.user_verified,
                "discoverable": discoverable,
            },
        )
        db.session.add(factor)
        try:
            db.session.flush()
        except IntegrityError:
            db.session.rollback()
            raise EnrollmentError(
                _l("This security key is already registered."), reason="duplicate credential id"
            ) from None
        return factor, self._amr(cred.device_type)

    # -- authentication ------------------------------------------------------------------
    def _check_assertion(
        self, user: User, factor: Factor, response: str, challenge: bytes
    ) -> core.Assertion:
        """The assertion *response* to *challenge*, verified against *factor* (WebAuthn
        L2 7.2); a sign-count regression (a possible clone) is audited and emailed.
        Raises :class:`InvalidResponse`."""
        try:
            return core.verify_authentication(
                self.rp, response=response, challenge=challenge, credential=self._stored(factor)
            )
        except core.PossibleClone as exc:
            audit.record_now("mfa.webauthn_possible_clone", outcome="failure", user_id=user.id,
                             factor_id=factor.id, reason=exc.reason)  # fmt: skip
            notify(user, "possible_clone", label=factor.label)
            raise InvalidResponse(exc.message, reason="possible clone") from None
        except core.WebAuthnError as exc:
            raise InvalidResponse(exc.message, reason=exc.reason) from None

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
                _l("The request timed out or was already used. Try again."),
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
                _l("This security key is not registered to your account."),
                reason="credential not registered to this user",
            )
        result = self._check_assertion(user, factor, response, challenge)
        factor.sign_count = result.new_sign_count
        factor.device_type = result.device_type
        return Verified(factor, self._amr(result.device_type, result.verification_amr))

    # -- a sign-in with a passkey alone ----------------------------------------------------
    def passkey_options(self, *, binding: str) -> str:
        """Request options for a discoverable credential of any user (an empty allow list)
        with user verification required (WebAuthn L2 5.5, 5.8.6); the challenge is kept
        under *binding* (this browser and this sign-in) for one answer."""
        options, challenge = core.authentication_options(
            self.rp, allow=(), user_verification="required"
        )
        self.svc.store.set(f"webauthn:passkey:{binding}", challenge, CHALLENGE_TTL)
        return options

    def take_passkey_challenge(self, *, binding: str) -> bytes | None:
        """The challenge issued for *binding*, taken (it can be answered once)."""
        return self.svc.store.take(f"webauthn:passkey:{binding}")

    @staticmethod
    def credential_key(response: str) -> str:
        """The response's credential id (base64url), or '' when it has none to read."""
        try:
            return core.b64url(core.credential_id_of(response))
        except core.WebAuthnError:
            return ""

    def find_credential(self, response: str) -> tuple[Factor | None, bytes]:
        """The active factor the response's credential id names (any user's), and the
        id. Raises :class:`InvalidResponse` for a response without a readable id."""
        try:
            raw_id = core.credential_id_of(response)
        except core.WebAuthnError as exc:
            raise InvalidResponse(exc.message, reason=exc.reason) from None
        factor = db.session.execute(
            db.select(Factor).filter_by(
                type=self.type, status="active", credential_id=core.b64url(raw_id)
            )
        ).scalar_one_or_none()
        return factor, raw_id

    def refuse_unknown(self, response: str, raw_id: bytes, challenge: bytes) -> None:
        """Refuse an assertion of a credential registered to nobody, after the same work
        a registered one costs (verified against a decoy key), so that neither the answer
        nor its timing tells whether a credential id exists."""
        with contextlib.suppress(core.WebAuthnError):
            core.verify_authentication(
                self.rp, response=response, challenge=challenge, credential=core.decoy(raw_id)
            )
        raise InvalidResponse(
            core.WebAuthnError.default_message, reason="credential not registered"
        )

    def verify_passkey(
        self, user: User, factor: Factor, response: str, challenge: bytes
    ) -> core.Assertion:
        """Verify a passkey sign-in's assertion for *factor* (found by its credential id)
        and *user*, its owner: the signature, the challenge, origin and RP ID, the user
        handle (WebAuthn L2 7.2 step 6: it must name the credential's owner) and the
        sign count (a regression is refused, audited and emailed). Never commits; the
        new sign count is set on *factor* whether or not the user was verified, and a
        verified sign-in marks the credential as one that signs in alone.

        Raises :class:`InvalidResponse`."""
        result = self._check_assertion(user, factor, response, challenge)
        handle = core.b64url(result.user_handle) if result.user_handle else ""
        if not handle or not user.webauthn_handle or not equal(handle, user.webauthn_handle):
            raise InvalidResponse(
                core.WebAuthnError.default_message,
                reason="user handle does not name the credential's owner",
            )
        factor.sign_count = result.new_sign_count
        factor.device_type = result.device_type
        if result.user_verified:
            factor.data = {**(factor.data or {}), "discoverable": True, "user_verified": True}
        return result

    def passkey_amr(self, result: core.Assertion) -> tuple[str, ...]:
        """The RFC 8176 values a verified passkey sign-in earns (without ``mfa``, which
        the session adds for the two steps it stands for)."""
        return self._amr(result.device_type, result.verification_amr)
