"""Authentication assurance: the acr values the provider offers and the amr values it emits.

acr (OIDC Core 2, ``acr``), from lowest to highest:

- ``http://idmanagement.gov/ns/assurance/aal/1``: password alone;
- ``urn:idp:acr:mfa``: password + any second factor (email counts);
- ``http://idmanagement.gov/ns/assurance/aal/2``: password + an NIST SP 800-63B AAL2
  factor (TOTP, SMS, voice, number-matched push, WebAuthn, recovery code);
- ``http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true``: WebAuthn.

amr values follow RFC 8176 (``pwd``, ``otp``, ``sms``, ``tel``, ``hwk``, ``swk``, ``user``,
``mfa``); the second-factor table below grows as factors are added.
"""

from __future__ import annotations

ACR_AAL1 = "http://idmanagement.gov/ns/assurance/aal/1"
ACR_MFA = "urn:idp:acr:mfa"
ACR_AAL2 = "http://idmanagement.gov/ns/assurance/aal/2"
ACR_AAL2_PHISHING_RESISTANT = "http://idmanagement.gov/ns/assurance/aal/2?phishing_resistant=true"

# Lowest first: a session that satisfies one level satisfies every level before it.
ACR_LEVELS: tuple[str, ...] = (ACR_AAL1, ACR_MFA, ACR_AAL2, ACR_AAL2_PHISHING_RESISTANT)

# Second-factor amr value -> the highest acr level it can reach together with a password.
# Empty until the MFA factors land; the policy already treats an empty table as
# "nothing above password alone can be met".
SECOND_FACTOR_LEVELS: dict[str, str] = {}


def level_index(acr: str) -> int:
    return ACR_LEVELS.index(acr)


def achieved_acr(methods: set[str]) -> str | None:
    """The highest acr the given passed methods reach (``None`` without a password)."""
    if "pwd" not in methods:
        return None
    best = ACR_AAL1
    for method in methods:
        level = SECOND_FACTOR_LEVELS.get(method)
        if level is not None and level_index(level) > level_index(best):
            best = level
    return best


def amr_for(methods: set[str]) -> list[str]:
    """RFC 8176 amr list; adds ``mfa`` when more than one kind of factor passed."""
    amr = sorted(methods)
    if len(methods) > 1:
        amr.append("mfa")
    return amr
