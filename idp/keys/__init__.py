"""Token signing keys: the on-disk key ring, rotation, JWKS and JWT signing."""

from .ring import (
    SUPPORTED_ALGS,
    KeyInfo,
    KeyRing,
    KeyRingError,
    TokenVerificationError,
    ensure_keys,
    generate_key,
    list_keys,
    rotate_keys,
)

__all__ = [
    "SUPPORTED_ALGS",
    "KeyInfo",
    "KeyRing",
    "KeyRingError",
    "TokenVerificationError",
    "ensure_keys",
    "generate_key",
    "list_keys",
    "rotate_keys",
]
