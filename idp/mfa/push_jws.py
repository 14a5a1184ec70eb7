"""Signed requests from the companion app (idp-verify), as small pure functions.

Every request the app sends carries a compact JWS (RFC 7515 section 7.1) signed with
the device key, in ``Authorization: Device <jws>``. The claims follow the pattern of
DPoP proofs (RFC 9449 section 4.2): ``htm`` (HTTP method), ``aud`` (the full endpoint
URL), ``iat`` (seconds since the epoch; refused outside the allowed clock skew) and
``jti`` (a nonce, refused when seen twice), plus ``sub`` (the device id, also the
header's ``kid``) and the request's own fields.

Algorithms: ``ES256`` (ECDSA P-256 with SHA-256, RFC 7518 section 3.4: the signature is
``r || s``, 32 bytes each) and ``EdDSA`` with Ed25519 (RFC 8037 section 3.1). ``none``
and everything else are refused (RFC 8725 section 3.1). The enrollment request is signed
by the new key and carries its public key as ``jwk`` in the protected header (as DPoP
does), proving possession of the private key.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..security.jsontext import parse_json

ALGORITHMS = ("ES256", "EdDSA")
TYP = "idp-verify+jwt"
MAX_TOKEN_LENGTH = 8192

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


class SignatureError(Exception):
    """The request is unsigned, malformed, badly signed, stale, replayed or misdirected.

    ``code`` is the JSON error code answered to the app; ``str(exc)`` says why.
    """

    def __init__(self, reason: str, code: str = "invalid_signature"):
        super().__init__(reason)
        self.code = code


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        raise SignatureError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise SignatureError("not base64url") from None


def _split(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise SignatureError("missing or oversized signature", "unsigned_request")
    parts = token.split(".")
    if len(parts) != 3:
        raise SignatureError("not a compact JWS")
    try:
        # The request JSON rule (a depth limit: a deep header is a refusal, not a 500).
        header = parse_json(b64url_decode(parts[0]))
        claims = parse_json(b64url_decode(parts[1]))
    except ValueError:
        raise SignatureError("header or payload is not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise SignatureError("header and payload must be JSON objects")
    if header.get("alg") not in ALGORITHMS:
        raise SignatureError(f"algorithm {header.get('alg')!r} is not accepted", "unsigned_request")
    if header.get("typ") != TYP:
        raise SignatureError("typ must be " + TYP)
    if not parts[2]:
        raise SignatureError("empty signature", "unsigned_request")
    return header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2])


def peek_header(token: str) -> dict[str, Any]:
    """The protected header, unverified (to find the key by ``kid``)."""
    return _split(token)[0]


def public_key_from_jwk(jwk: Any) -> tuple[str, PublicKey]:
    """``(alg, key)`` for a P-256 (``kty: EC``) or Ed25519 (``kty: OKP``) public JWK
    (RFC 7518 section 6.2.1, RFC 8037 section 2). Private members are refused."""
    if not isinstance(jwk, dict) or "d" in jwk:
        raise SignatureError("jwk must be a public key object", "invalid_key")
    try:
        if jwk.get("kty") == "EC" and jwk.get("crv") == "P-256":
            x, y = b64url_decode(jwk["x"]), b64url_decode(jwk["y"])
            if len(x) != 32 or len(y) != 32:
                raise SignatureError("bad P-256 coordinates", "invalid_key")
            point = b"\x04" + x + y
            return "ES256", ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519":
            raw = b64url_decode(jwk["x"])
            return "EdDSA", ed25519.Ed25519PublicKey.from_public_bytes(raw)
    except (KeyError, TypeError, ValueError):
        raise SignatureError("malformed jwk", "invalid_key") from None
    raise SignatureError("only P-256 (ES256) and Ed25519 (EdDSA) keys are accepted", "invalid_key")


def public_key_der(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER, as stored in ``Factor.public_key``."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_public_key(der: bytes, alg: str) -> PublicKey:
    key = serialization.load_der_public_key(der)
    if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
        return key
    if alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
        return key
    raise SignatureError("stored key does not match its algorithm", "invalid_key")


def verify(token: str, key: PublicKey, alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the signature with *key* for *alg* (the device's registered algorithm:
    the header cannot choose another one). Returns ``(header, claims)``."""
    header, claims, signing_input, signature = _split(token)
    if header["alg"] != alg:
        raise SignatureError("algorithm does not match the device key")
    try:
        if alg == "ES256" and isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                raise SignatureError("ES256 signatures are 64 bytes")
            r = int.from_bytes(signature[:32], "big")
            s = int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
        elif alg == "EdDSA" and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, signing_input)
        else:
            raise SignatureError("algorithm does not match the device key")
    except InvalidSignature:
        raise SignatureError("bad signature") from None
    return header, claims


def check_claims(claims: dict[str, Any], *, aud: str, htm: str, now: int, skew: int) -> None:
    """The DPoP-style checks (RFC 9449 section 4.3, steps 9-12): method, URL, freshness,
    and that a nonce is present (the caller refuses a nonce seen before)."""
    if claims.get("htm") != htm:
        raise SignatureError(
            "the request was signed for another method", "invalid_request_signature"
        )
    if claims.get("aud") != aud:
        raise SignatureError("the request was signed for another URL", "invalid_request_signature")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int):
        raise SignatureError("iat must be an integer", "invalid_request_signature")
    if abs(now - iat) > skew:
        raise SignatureError("the request is stale or from the future", "stale_request")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not 16 <= len(jti) <= 128:
        raise SignatureError(
            "jti must be a nonce of 16 to 128 characters", "invalid_request_signature"
        )
