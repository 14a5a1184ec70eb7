"""Authentication assurance: the acr values the provider offers and the amr values it emits.

acr (OIDC Core 2, ``acr``), from lowest to highest:

- ``http://idmanagement.gov/ns/assurance/aal/1``: a first step alone (the password);
- ``urn:idp:acr:mfa``: password + any second factor (email counts);
- ``http://idmanagement.gov/ns/assurance/aal/2``: password + an NIST SP 800-63B AAL2
  factor (TOTP, SMS, voice, number-matched push, WebAuthn, recovery code);
- ``http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true``: WebAuthn.

amr values follow RFC 8176: ``pwd`` (password), ``otp`` (authenticator app), ``hwk``
(device-bound security key), ``swk`` (synced passkey), ``user`` (user presence test of
a security key), ``mfa`` (more than one factor). One value is the project's own:
``lookup`` for a recovery code (NIST SP 800-63B "look-up secret"; RFC 8176 has none).
A number-matched push approval proves possession of the companion app's device key, a
key kept in software on the phone: ``swk`` (RFC 8176 section 2); RFC 8176 has no value
for push itself (docs/PUSH.md). Codes by text message and voice call earn RFC 8176's
``sms`` and ``tel``; a code by email earns the project's own ``email`` (RFC 8176 has no
value for it) and reaches only ``urn:idp:acr:mfa``: NIST SP 800-63B 5.1.3.1 forbids
email as an out-of-band authenticator, so it is not AAL2 (docs/DELIVERY.md).

The first step of a sign-in is the password (method ``pwd``) or a passkey alone (method
``passkey``): a WebAuthn assertion of a discoverable credential with user verification,
which names the user by itself. Such a sign-in is recorded as both steps (``passkey``
and ``webauthn``): possession of the key, plus the PIN, fingerprint or face the
authenticator checked (NIST SP 800-63B 5.1.9: a multi-factor cryptographic
authenticator), so it reaches ``aal/2?phishing_resistant=true`` and its ``amr`` is
``hwk`` or ``swk``, ``user`` and ``mfa``, never ``pwd`` (no password was used), plus
``pin``, ``fpt`` and the like only where the authenticator reported how it verified the
user (:func:`idp.mfa.webauthn.core.uvm_amr`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

ACR_AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"
ACR_AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
ACR_AAL2_PHISHING_RESISTANT = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"

#: The methods that are a first step: the password, or a passkey alone.
PASSWORD = "pwd"
PASSKEY = "passkey"
FIRST_STEPS: frozenset[str] = frozenset({PASSWORD, PASSKEY})

# Lowest first: a session that satisfies one level satisfies every level before it.
ACR_LEVELS: tuple[str, ...] = (ACR_AAL1, ACR_MFA, ACR_AAL2, ACR_AAL2_PHISHING_RESISTANT)

# Factor type -> the acr level it reaches together with a password.
FACTOR_LEVELS: dict[str, str] = {
    "totp": ACR_AAL2,
    "recovery": ACR_AAL2,
    "webauthn": ACR_AAL2_PHISHING_RESISTANT,
    # Number-matched push: a value passes between the two channels (NIST SP 800-63B).
    "push": ACR_AAL2,
    # Email is not an out-of-band authenticator (NIST SP 800-63B 5.1.3.1): MFA rule only.
    "email": ACR_MFA,
    # The telephone network is "restricted" (5.1.3.3) but still AAL2.
    "sms": ACR_AAL2,
    "voice": ACR_AAL2,
}


# The RFC 8176 values a method earns when nothing more precise is known (the factor
# types report their own, e.g. "swk" for a synced passkey; these serve sessions written
# before a method's values were recorded).
DEFAULT_AMR: dict[str, tuple[str, ...]] = {
    "pwd": ("pwd",),
    "passkey": ("hwk", "user"),
    "totp": ("otp",),
    "recovery": ("lookup",),
    "webauthn": ("hwk", "user"),
    "push": ("swk",),
    "email": ("email",),
    "sms": ("sms",),
    "voice": ("tel",),
}


def level_index(acr: str) -> int:
    return ACR_LEVELS.index(acr)


def has_first_step(methods: Iterable[str]) -> bool:
    """Whether *methods* include a first step (the password or a passkey alone)."""
    return not FIRST_STEPS.isdisjoint(methods)


def achieved(methods: Iterable[str]) -> str | None:
    """The highest acr the passed methods reach (``None`` without a first step).

    *methods* are first steps (``"pwd"``, ``"passkey"``) and factor types (``"totp"``,
    ``"webauthn"``, ...); a passkey sign-in counts both ``"passkey"`` and ``"webauthn"``.
    """
    methods = set(methods)
    if not has_first_step(methods):
        return None
    best = ACR_AAL1
    for method in methods:
        level = FACTOR_LEVELS.get(method)
        if level is not None and level_index(level) > level_index(best):
            best = level
    return best


def webauthn_impossible(issuer: str, rp_id: str = "") -> str | None:
    """Why browsers will refuse security keys and passkeys for this deployment, or None.

    The WebAuthn RP ID must be a domain name (WebAuthn Level 2 5.1.4.1; a "valid domain
    string" in the HTML sense): on an issuer such as ``http://127.0.0.1:5000`` every
    ceremony fails with a SecurityError. ``localhost`` works (a secure context)."""
    import ipaddress
    from urllib.parse import urlsplit

    host = rp_id or (urlsplit(issuer).hostname or "")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return (
        f"security keys and passkeys cannot work on {host}: browsers need a domain name "
        "(serve the provider on localhost or a real host name)"
    )


def offered_factors(settings: Any) -> tuple[str, ...]:
    """The factor types the deployment offers: ``[mfa] allowed_factors`` without those
    that cannot work where it runs (WebAuthn on an IP address)."""
    allowed = tuple(settings.mfa.allowed_factors)
    if webauthn_impossible(settings.issuer, settings.webauthn.rp_id):
        return tuple(t for t in allowed if t != "webauthn")
    return allowed


def factors_reaching(types: Iterable[str], acr: str) -> list[str]:
    """The factor types of *types* that reach *acr* together with the password."""
    need = level_index(acr)
    return [t for t in types if t in FACTOR_LEVELS and level_index(FACTOR_LEVELS[t]) >= need]


def reachable(allowed_factors: Iterable[str]) -> list[str]:
    """acr values a deployment offering *allowed_factors* can reach (for discovery)."""
    top = max([level_index(FACTOR_LEVELS[f]) for f in allowed_factors if f in FACTOR_LEVELS] + [0])
    return list(ACR_LEVELS[: top + 1])


def amr_for(methods: Iterable[str], amr: Iterable[str]) -> list[str]:
    """RFC 8176 amr list: the values the passed factors earned, plus ``mfa`` when a
    first step and a second factor passed (RFC 8176 section 2): the password and a
    factor, or a passkey with user verification (which is recorded as both)."""
    values = set(amr)
    methods = set(methods)
    if has_first_step(methods) and methods - FIRST_STEPS:
        values.add("mfa")
    return sorted(values)
