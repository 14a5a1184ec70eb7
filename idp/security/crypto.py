"""Small cryptographic helpers: hashing of high-entropy secrets, random tokens,
and AES-256-GCM encryption of secrets at rest with a key id for rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def random_token(nbytes: int = 32) -> str:
    """A URL-safe random token with *nbytes* bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def hash_token(token: str) -> str:
    """SHA-256 of a high-entropy token (codes, refresh tokens, client secrets).

    A slow hash adds nothing for 256-bit random values; a fast one keeps the token
    endpoint fast. Never use this for passwords.
    """
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time equality of two secrets or digests, text or bytes.

    The one place the provider compares secrets: ``hmac.compare_digest`` refuses ``str``
    arguments with non-ASCII characters (a ``TypeError``, a 500 for whoever sends one),
    so text is compared as its UTF-8 bytes.
    """
    if isinstance(a, str):
        a = a.encode("utf-8", "surrogatepass")
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(a, b)


def token_matches(token: str, expected_hash: str | None) -> bool:
    """Constant-time comparison of a presented token against its stored hash."""
    if not expected_hash:
        return False
    return equal(hash_token(token), expected_hash)


class DecryptionError(Exception):
    """Ciphertext is malformed, was encrypted under an unknown key, or was altered."""


class SecretBox:
    """AES-256-GCM with a key id prefix: ``<kid>.<base64url(nonce || ciphertext)>``.

    Encrypts with the active key and decrypts with any configured key, so keys can
    be rotated by adding a new active key and re-encrypting lazily.
    """

    def __init__(self, keys: Mapping[str, str], active: str):
        self._keys = {kid: AESGCM(base64.urlsafe_b64decode(k)) for kid, k in keys.items()}
        if active not in self._keys:
            raise ValueError(f"active encryption key {active!r} is not configured")
        self._active = active

    def encrypt(self, plaintext: str, *, context: str) -> str:
        """Encrypt *plaintext*; *context* (e.g. ``"totp:42"``) is bound as associated data."""
        nonce = os.urandom(12)
        ct = self._keys[self._active].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{self._active}.{base64.urlsafe_b64encode(nonce + ct).decode()}"

    def decrypt(self, token: str, *, context: str) -> str:
        kid, _, body = token.partition(".")
        aead = self._keys.get(kid)
        if aead is None or not body:
            raise DecryptionError("unknown encryption key id")
        try:
            raw = base64.urlsafe_b64decode(body)
            return aead.decrypt(raw[:12], raw[12:], context.encode()).decode()
        except Exception as exc:  # InvalidTag, binascii.Error, UnicodeDecodeError
            raise DecryptionError("ciphertext could not be decrypted") from exc

    def needs_reencrypt(self, token: str) -> bool:
        return not token.startswith(self._active + ".")
