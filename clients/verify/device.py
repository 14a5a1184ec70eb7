"""The device key and the signed requests made with it.

The key is ES256 (ECDSA P-256, RFC 7518 section 3.4) by default, or Ed25519 (``EdDSA``,
RFC 8037). Every request carries a compact JWS (RFC 7515) in ``Authorization: Device
<jws>`` with DPoP-style claims (RFC 9449 section 4.2): ``htm`` (method), ``aud`` (the
endpoint URL), ``iat`` (now), ``jti`` (a fresh nonce) and ``sub`` (the device id).
This module is independent of the provider's code on purpose.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ALGORITHMS = ("ES256", "EdDSA")
TYP = "idp-verify+jwt"

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def generate(alg: str) -> PrivateKey:
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unsupported algorithm {alg!r} (use ES256 or EdDSA)")


def to_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def from_pem(pem: str) -> PrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise ValueError("the stored device key is neither P-256 nor Ed25519")
    return key


def algorithm_of(key: PrivateKey) -> str:
    return "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "EdDSA"


def public_jwk(key: PrivateKey) -> dict[str, str]:
    """The public half as a JWK (RFC 7518 section 6.2.1 / RFC 8037 section 2)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}


def sign(key: PrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS of *claims* (RFC 7515 section 7.1)."""
    alg = algorithm_of(key)
    protected = {"alg": alg, "typ": TYP, **header}
    signing_input = (
        b64url(json.dumps(protected, separators=(",", ":")).encode())
        + "."
        + b64url(json.dumps(claims, separators=(",", ":")).encode())
    ).encode("ascii")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input)
    return signing_input.decode("ascii") + "." + b64url(signature)


def request_claims(method: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "htm": method.upper(),
        "aud": url,
        "iat": int(time.time()),
        "jti": secrets.token_urlsafe(24),
        **extra,
    }
