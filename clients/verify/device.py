"""The device key and the signed requests made with it.

The key is ES256 (ECDSA P-256, RFC 7518 section 3.4) by default, or Ed25519 (``EdDSA``,
RFC 8037). Every request carries a compact JWS (RFC 7515) in ``Authorization: Device
<jws>`` with DPoP-style claims (RFC 9449 section 4.2): ``htm`` (method), ``aud`` (the
endpoint URL), ``iat`` (now), ``jti`` (a fresh nonce) and ``sub`` (the device id).

Keys, JWKs and signatures are joserfc's (``joserfc.jwk``, ``joserfc.jwt``): nothing
here encodes a signature or a key by hand. The wire name of Ed25519 stays ``EdDSA``
(what providers accept); joserfc 1.8 deprecates that polymorphic name (RFC 9864), so
the registry below signs it with joserfc's fully specified ``Ed25519`` algorithm, the
same computation restricted to Ed25519 keys, without a deprecation warning.

This module is independent of the provider's code on purpose.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from joserfc import jwk, jws, jwt
from joserfc.errors import JoseError

ALGORITHMS = ("ES256", "EdDSA")
TYP = "idp-verify+jwt"

PrivateKey = jwk.ECKey | jwk.OKPKey

# The key type and curve of each algorithm.
_KEYS: dict[str, tuple[str, str]] = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}
# The members of the public JWK sent at enrollment.
_JWK_MEMBERS = ("kty", "crv", "x", "y")


class _Registry(jws.JWSRegistry):
    """joserfc's JWS registry with the two algorithms of the app."""

    algorithms = {
        "ES256": jws.JWSRegistry.algorithms["ES256"],
        # "EdDSA" on the wire, signed by joserfc's fully specified Ed25519 (RFC 9864);
        # a joserfc older than RFC 9864 has only EdDSA (Ed448 keys are refused anyway).
        "EdDSA": jws.JWSRegistry.algorithms.get("Ed25519") or jws.JWSRegistry.algorithms["EdDSA"],
    }
    recommended: list[str] = []


_REGISTRY = _Registry(algorithms=ALGORITHMS)


def generate(alg: str) -> PrivateKey:
    if alg not in _KEYS:
        raise ValueError(f"unsupported algorithm {alg!r} (use ES256 or EdDSA)")
    kty, crv = _KEYS[alg]
    if kty == "EC":
        return jwk.ECKey.generate_key(crv, private=True)
    return jwk.OKPKey.generate_key(crv, private=True)


def to_pem(key: PrivateKey) -> str:
    """PKCS #8 PEM, unencrypted (the state file is private)."""
    return key.as_pem(private=True).decode("ascii")


def from_pem(pem: str) -> PrivateKey:
    for kty, crv in _KEYS.values():
        try:
            key = jwk.import_key(pem, kty)
        except (JoseError, TypeError, ValueError):
            continue
        if isinstance(key, jwk.ECKey | jwk.OKPKey) and key.is_private and key.curve_name == crv:
            return key
    raise ValueError("the stored device key is neither P-256 nor Ed25519")


def algorithm_of(key: PrivateKey) -> str:
    for alg, (kty, crv) in _KEYS.items():
        if key.key_type == kty and key.curve_name == crv:
            return alg
    raise ValueError("the device key is neither P-256 nor Ed25519")


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public half as a JWK (RFC 7518 section 6.2.1 / RFC 8037 section 2): the key
    material only."""
    exported = key.as_dict(private=False)
    return {m: exported[m] for m in _JWK_MEMBERS if m in exported}


def sign(key: PrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS of *claims* (RFC 7515 section 7.1)."""
    protected = {"alg": algorithm_of(key), "typ": TYP, **header}
    return jwt.encode(protected, claims, key, registry=_REGISTRY, default_type=None)


def request_claims(method: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "htm": method.upper(),
        "aud": url,
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(24),
        **extra,
    }
