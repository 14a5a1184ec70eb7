"""Signed requests from the companion app (idp-verify), as small pure functions.

Every request the app sends carries a compact JWS (RFC 7515 section 7.1) signed with
the device key, in ``Authorization: Device <jws>``. The claims follow the pattern of
DPoP proofs (RFC 9449 section 4.2): ``htm`` (HTTP method), ``aud`` (the full endpoint
URL), ``iat`` (seconds since the epoch; refused outside the allowed clock skew) and
``jti`` (a nonce, refused when seen twice), plus ``sub`` (the device id, also the
header's ``kid``) and the request's own fields.

Algorithms: ``ES256`` (ECDSA P-256 with SHA-256, RFC 7518 section 3.4) and ``EdDSA``
with Ed25519 (RFC 8037 section 3.1). ``none`` and everything else are refused (RFC 8725
section 3.1). The enrollment request is signed by the new key and carries its public
key as ``jwk`` in the protected header (as DPoP does), proving possession of the
private key.

All of the JOSE work is joserfc's: compact serialization parsing (``jws.extract_compact``),
signature verification (``jws.validate_compact``, which also does the ``r || s``
encoding of ES256), the algorithm allow-list (a :class:`joserfc.jws.JWSRegistry`), the
header checks (``typ``, ``crit``) and JWK import/export (``joserfc.jwk``). What stays
here is the policy: which algorithms and curves, the depth-limited JSON rule for the
header and the payload, and the DPoP-style claim checks.

``EdDSA`` naming: joserfc 1.8 deprecates the polymorphic ``EdDSA`` name (RFC 9864) and
registers the fully specified ``Ed25519``. The app sends ``alg: "EdDSA"`` and devices
are stored with that algorithm, so the wire name stays ``EdDSA``; the registry below
verifies it with joserfc's ``Ed25519`` algorithm, which is the same computation
restricted to Ed25519 keys (RFC 9864 section 2): Ed448 keys are refused and joserfc's
deprecation warning is not raised on every request.
"""

from __future__ import annotations

import binascii
from typing import Any

from joserfc import jwk, jws
from joserfc.errors import (
    ExceededSizeError,
    InvalidKeyCurveError,
    JoseError,
    KeyParameterError,
    MissingAlgorithmError,
    UnsupportedAlgorithmError,
)
from joserfc.registry import HeaderParameter
from joserfc.util import urlsafe_b64decode

from ...security.jsontext import parse_json

ALGORITHMS = ("ES256", "EdDSA")
TYP = "idp-verify+jwt"
MAX_TOKEN_LENGTH = 8192
#: The encoded protected header (``kid``, or the enrollment ``jwk``: about 250 characters).
MAX_HEADER_LENGTH = 1024

PublicKey = jwk.ECKey | jwk.OKPKey

# The key type and curve each algorithm is used with.
_KEYS: dict[str, tuple[str, str]] = {"ES256": ("EC", "P-256"), "EdDSA": ("OKP", "Ed25519")}
# The members of a public JWK read at enrollment (others, such as ``use``, are ignored).
_JWK_MEMBERS = ("kty", "crv", "x", "y")


class SignatureError(Exception):
    """The request is unsigned, malformed, badly signed, stale, replayed or misdirected.

    ``code`` is the JSON error code answered to the app; ``str(exc)`` says why.
    """

    def __init__(self, reason: str, code: str = "invalid_signature"):
        super().__init__(reason)
        self.code = code


def _parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object read with the request JSON rule (a depth limit: a deeply nested
    header or payload is a refusal, not a 500)."""
    try:
        value = parse_json(raw)
    except ValueError:
        raise SignatureError("header or payload is not JSON") from None
    if not isinstance(value, dict):
        raise SignatureError("header and payload must be JSON objects")
    return value


def _typ(value: Any) -> None:
    if value != TYP:
        raise ValueError("must be " + TYP)


class _Registry(jws.JWSRegistry):
    """joserfc's JWS registry, narrowed to this API: two algorithms, explicit typing
    (RFC 8725 section 3.11), no unencoded payloads (RFC 7797), and size limits."""

    algorithms = {
        "ES256": jws.JWSRegistry.algorithms["ES256"],
        # "EdDSA" on the wire, verified by joserfc's fully specified Ed25519 (RFC 9864);
        # a joserfc older than RFC 9864 has only EdDSA (Ed448 keys are refused anyway).
        "EdDSA": jws.JWSRegistry.algorithms.get("Ed25519") or jws.JWSRegistry.algorithms["EdDSA"],
    }
    recommended: list[str] = []
    max_header_length = MAX_HEADER_LENGTH
    max_payload_length = MAX_TOKEN_LENGTH
    max_signature_length = 128  # both algorithms sign 64 bytes: 86 characters

    def __init__(self, algorithms: tuple[str, ...]):
        super().__init__(
            header_registry={
                "typ": HeaderParameter("Type", _typ, required=True),
                "b64": HeaderParameter("Unencoded payload (RFC 7797), refused", "none"),
            },
            algorithms=algorithms,
            # Unknown header parameters are ignored (RFC 7515 section 4), unless in crit.
            strict_check_header=False,
        )

    def validate_header_size(self, header: bytes) -> None:
        # joserfc calls this with the encoded header before its own json.loads: the
        # place to apply the depth-limited JSON rule first.
        super().validate_header_size(header)
        try:
            raw = urlsafe_b64decode(header)
        except (binascii.Error, TypeError, ValueError):
            raise SignatureError("not base64url") from None
        _parse_object(raw)


# Reading a token (any accepted algorithm); verifying with a device's own algorithm.
_ANY = _Registry(ALGORITHMS)
_BY_ALG = {alg: _Registry((alg,)) for alg in ALGORITHMS}


def _extract(token: str) -> tuple[jws.CompactSignature, dict[str, Any], dict[str, Any]]:
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise SignatureError("missing or oversized signature", "unsigned_request")
    try:
        obj = jws.extract_compact(token.encode(), registry=_ANY)
    except MissingAlgorithmError:
        raise SignatureError("algorithm None is not accepted", "unsigned_request") from None
    except ExceededSizeError:
        raise SignatureError("oversized header, payload or signature") from None
    except (JoseError, ValueError, TypeError):
        raise SignatureError("not a compact JWS") from None
    header = obj.protected
    claims = _parse_object(obj.payload)
    alg = header.get("alg")
    try:
        _ANY.get_alg(alg if isinstance(alg, str) else "")
    except UnsupportedAlgorithmError:
        raise SignatureError(f"algorithm {alg!r} is not accepted", "unsigned_request") from None
    if header.get("typ") != TYP:
        raise SignatureError("typ must be " + TYP)
    if not obj.segments["signature"]:
        raise SignatureError("empty signature", "unsigned_request")
    return obj, header, claims


def peek_header(token: str) -> dict[str, Any]:
    """The protected header, unverified (to find the key by ``kid``)."""
    return _extract(token)[1]


def _import(data: dict[str, Any] | bytes, alg: str) -> PublicKey:
    """A public key of *alg*'s type and curve, imported by joserfc."""
    kty, crv = _KEYS[alg]
    key = jwk.import_key(data, kty)
    if not isinstance(key, jwk.ECKey | jwk.OKPKey) or key.curve_name != crv:
        raise SignatureError(f"not a {crv} key", "invalid_key")
    if key.is_private:
        raise SignatureError("a public key is expected", "invalid_key")
    return key


def public_key_from_jwk(value: Any) -> tuple[str, PublicKey]:
    """``(alg, key)`` for a P-256 (``kty: EC``) or Ed25519 (``kty: OKP``) public JWK
    (RFC 7518 section 6.2.1, RFC 8037 section 2). Private members are refused, and so
    is a non-canonical encoding of the key (RFC 7518 section 6.2.1.2: full-length
    coordinates)."""
    if not isinstance(value, dict) or "d" in value:
        raise SignatureError("jwk must be a public key object", "invalid_key")
    pair = (value.get("kty"), value.get("crv"))
    alg = next((a for a, kty_crv in _KEYS.items() if pair == kty_crv), None)
    if alg is None:
        raise SignatureError(
            "only P-256 (ES256) and Ed25519 (EdDSA) keys are accepted", "invalid_key"
        )
    members = {m: value[m] for m in _JWK_MEMBERS if m in value}
    try:
        # Imported, then exported and imported again as stored (DER): joserfc keeps an
        # imported JWK as given, the stored key's JWK is computed from the key itself.
        key = _import(_import(members, alg).as_der(private=False), alg)
    except (JoseError, KeyError, TypeError, ValueError):
        raise SignatureError("malformed jwk", "invalid_key") from None
    canonical = key.as_dict(private=False)
    if any(members.get(m) != canonical[m] for m in canonical):
        raise SignatureError("malformed jwk", "invalid_key")
    return alg, key


def public_key_der(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo DER, as stored in ``Factor.public_key``."""
    return key.as_der(private=False)


def load_public_key(der: bytes, alg: str) -> PublicKey:
    """The stored key of a device registered with *alg*."""
    if alg not in _KEYS:
        raise SignatureError("stored key does not match its algorithm", "invalid_key")
    try:
        return _import(bytes(der), alg)
    except (JoseError, SignatureError, TypeError, ValueError):
        raise SignatureError("stored key does not match its algorithm", "invalid_key") from None


def verify(token: str, key: PublicKey, alg: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify the signature with *key* for *alg* (the device's registered algorithm:
    the header cannot choose another one). Returns ``(header, claims)``."""
    obj, header, claims = _extract(token)
    registry = _BY_ALG.get(alg)
    if header["alg"] != alg or registry is None:
        raise SignatureError("algorithm does not match the device key")
    try:
        valid = jws.validate_compact(obj, key, registry=registry)
    except (UnsupportedAlgorithmError, KeyParameterError, InvalidKeyCurveError):
        raise SignatureError("algorithm does not match the device key") from None
    except (JoseError, TypeError, ValueError) as exc:
        reason = exc.description if isinstance(exc, JoseError) else "malformed header"
        raise SignatureError(f"header refused: {reason}") from None
    if not valid:
        raise SignatureError("bad signature")
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
