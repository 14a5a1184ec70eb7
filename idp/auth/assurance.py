"""Authentication assurance: the acr values the provider offers and the amr values it emits.

acr (OIDC Core 2, ``acr``), from lowest to highest:

- ``http://idmanagement.gov/ns/assurance/aal/1``: password alone;
- ``urn:idp:acr:mfa``: password + any second factor (email counts);
- ``http://idmanagement.gov/ns/assurance/aal/2``: password + an NIST SP 800-63B AAL2
  factor (TOTP, SMS, voice, number-matched push, WebAuthn, recovery code);
- ``http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true``: WebAuthn.

amr values follow RFC 8176: ``pwd`` (password), ``otp`` (authenticator app), ``hwk``
(device-bound security key), ``swk`` (synced passkey), ``user`` (user presence test of
a security key), ``mfa`` (more than one factor). One value is the project's own:
``lookup`` for a recovery code (NIST SP 800-63B "look-up secret"; RFC 8176 has none).
"""

from __future__ import annotations

from collections.abc import Iterable

ACR_AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"
ACR_AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
ACR_AAL2_PHISHING_RESISTANT = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"

# Lowest first: a session that satisfies one level satisfies every level before it.
ACR_LEVELS: tuple[str, ...] = (ACR_AAL1, ACR_MFA, ACR_AAL2, ACR_AAL2_PHISHING_RESISTANT)

# Factor type -> the acr level it reaches together with a password.
FACTOR_LEVELS: dict[str, str] = {
    "totp": ACR_AAL2,
    "recovery": ACR_AAL2,
    "webauthn": ACR_AAL2_PHISHING_RESISTANT,
}


def level_index(acr: str) -> int:
    return ACR_LEVELS.index(acr)


def achieved(methods: Iterable[str]) -> str | None:
    """The highest acr the passed methods reach (``None`` without a password).

    *methods* are ``"pwd"`` and factor types (``"totp"``, ``"webauthn"``, ...).
    """
    methods = set(methods)
    if "pwd" not in methods:
        return None
    best = ACR_AAL1
    for method in methods:
        level = FACTOR_LEVELS.get(method)
        if level is not None and level_index(level) > level_index(best):
            best = level
    return best


def reachable(allowed_factors: Iterable[str]) -> list[str]:
    """acr values a deployment offering *allowed_factors* can reach (for discovery)."""
    top = max([level_index(FACTOR_LEVELS[f]) for f in allowed_factors if f in FACTOR_LEVELS] + [0])
    return list(ACR_LEVELS[: top + 1])


def amr_for(methods: Iterable[str], amr: Iterable[str]) -> list[str]:
    """RFC 8176 amr list: the values the passed factors earned, plus ``mfa`` when a
    second factor passed after the password (RFC 8176 section 2)."""
    values = set(amr)
    if "pwd" in set(methods) and len(set(methods)) > 1:
        values.add("mfa")
    return sorted(values)
