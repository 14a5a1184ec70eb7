"""The contract every second factor follows, and the exceptions of the MFA layer.

Every verification walks one path (:meth:`idp.mfa.service.MFAService.verify`):
check the lock and the rate limit -> the factor verifies -> a failure is counted ->
replays are refused -> one-time values are burned atomically -> success resets the count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from flask_babel.speaklater import LazyString

from ..models import Factor, User

if TYPE_CHECKING:
    from flask import Response


def english(text: Any) -> str:
    """A message as written, in English (the audit trail's language), whatever the
    page's language: a lazy message (``lazy_gettext``) is rendered in English."""
    if isinstance(text, LazyString):
        with force_locale("en"):
            return str(text)
    return str(text)


class MFAError(Exception):
    """Base class; ``message`` is safe to show to the user: a lazy message
    (``lazy_gettext``), shown in the page's language. ``reason`` (for the audit trail)
    defaults to the message in English."""

    message: Any = _l("That did not work. Try again.")

    def __init__(self, message: Any = None, *, reason: str = ""):
        super().__init__(english(message or self.message))
        self.message = message or self.message
        self.reason = reason or english(self.message)


class InvalidResponse(MFAError):
    """Wrong code, bad signature, unknown credential: counts as a failed attempt."""

    message = _l("That code is not right. Check it and try again.")


class Replayed(InvalidResponse):
    """A one-time value that was already used."""

    message = _l("That code was already used. Wait for a new one and try again.")


class SecondFactorLocked(MFAError):
    """Too many failed attempts: the second-factor step is paused."""

    message = _l("Too many failed attempts. Verification is paused for a while.")

    def __init__(self, retry_after: int):
        super().__init__()
        self.retry_after = retry_after


class EnrollmentError(MFAError):
    """The factor could not be set up (cap reached, expired set-up, bad response)."""


class UserNotVerified(MFAError):
    """A passkey answered without verifying its user (no PIN, fingerprint or face): a
    valid assertion, so not counted as a guess, but it stands for one factor only and
    cannot sign in without the password (it can still be the second step)."""

    message = _l(
        "This passkey did not check that it is you (with a PIN, fingerprint or face), so "
        "it cannot sign you in without your password. Sign in with your password; you "
        "can still use the passkey as your second step."
    )


@dataclass(frozen=True)
class Verified:
    """A passed second factor: which one, and the RFC 8176 amr values it earned."""

    factor: Factor
    amr: tuple[str, ...]


class FactorPages:
    """The page hooks every factor type has; the shared pages (:mod:`idp.mfa.views`)
    call them with the page's context (:class:`idp.mfa.pages.Ctx`), so a factor package
    holds its own pages and the shared code knows no factor by name."""

    #: The part of the challenge page that asks for this factor.
    challenge_template = ""

    def setup_page(self, ctx: Any) -> Response:
        """The set-up page (GET shows it, POST acts on it)."""
        raise NotImplementedError(f"{type(self).__name__} must define setup_page")

    def challenge_action(self, ctx: Any) -> Response | None:
        """A POST on the challenge page that is not an answer to verify (send a code, send
        a push request); None to verify the posted answer the usual way."""
        return None

    def challenge_vars(self, ctx: Any) -> dict[str, Any]:
        """What :attr:`challenge_template` needs besides the common variables."""
        return {}


class FactorType(Protocol):
    """One kind of second factor. Each lives in its own package under ``idp.mfa``
    (``totp``, ``webauthn``, ``push``, ``codes``, ``recovery``) and also has the page
    hooks of :class:`FactorPages`."""

    type: str  # "totp", "webauthn", "recovery"
    display_name: str  # "Authenticator app"
    description: str  # one sentence for the set-up list
    first_factor: bool  # may be the user's first factor

    def verify(self, user: User, factors: list[Factor], payload: dict[str, Any],
               *, binding: str) -> Verified:  # fmt: skip
        """Check the user's response against their active factors of this type.

        ``binding`` ties challenge state to the browser session. Raise
        :class:`InvalidResponse` (or :class:`Replayed`) on failure; never commit.
        """
        ...
