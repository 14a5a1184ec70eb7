"""Password hashing with argon2id (NIST SP 800-63B 3.1.1.2, OWASP parameters).

Hashes carry their parameters, so raising the cost later only needs a rehash at the
next successful sign-in (:meth:`PasswordHasher.needs_rehash`).

Imported accounts (``idp users import``) keep the hash their old system made until the
user next signs in, when it is replaced by today's argon2id. Accepted formats:

============================  ==========================================================
argon2 (PHC string)           ``$argon2id$v=19$m=...,t=...,p=...$salt$hash`` (also
                              ``argon2i``/``argon2d``): argon2-cffi, passlib, Django
                              (``argon2$argon2id$...``), Keycloak (converted on import)
bcrypt (modular crypt)        ``$2a$``/``$2b$``/``$2y$`` (passlib, PHP, most exports);
                              Django's ``bcrypt$$2b$...`` and ``bcrypt_sha256$$2b$...``
PBKDF2 (Django)               ``pbkdf2_sha256$<iterations>$<salt>$<base64 hash>`` and
                              ``pbkdf2_sha1$...``
PBKDF2 (passlib)              ``$pbkdf2-sha256$<rounds>$<ab64 salt>$<ab64 hash>``, also
                              ``$pbkdf2-sha512$`` and ``$pbkdf2$`` (SHA-1); Keycloak's
                              ``pbkdf2-sha256`` credentials are stored in this form
============================  ==========================================================

PBKDF2 is RFC 8018 section 5.2 (``hashlib.pbkdf2_hmac``); bcrypt is verified with the
``bcrypt`` package, which refuses passwords over 72 bytes: like the systems that made
those hashes, only the first 72 bytes count. Work factors an attacker could inflate to
slow every sign-in down are capped (:data:`MAX_PBKDF2_ITERATIONS`, :data:`MAX_BCRYPT_COST`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import bcrypt as _bcrypt
from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from .crypto import equal

#: Highest PBKDF2 iteration count accepted (Django 5.2 uses 1,000,000; OWASP 600,000).
MAX_PBKDF2_ITERATIONS = 2_000_000
#: Highest bcrypt cost accepted (each step doubles the time; 14 is about one second).
MAX_BCRYPT_COST = 14

_PBKDF2_DIGESTS = {"sha1": "sha1", "sha256": "sha256", "sha512": "sha512"}
_DJANGO_PBKDF2 = re.compile(r"pbkdf2_(sha1|sha256)\$(\d{1,9})\$([^$]{1,128})\$([A-Za-z0-9+/=]+)")
_PASSLIB_PBKDF2 = re.compile(r"\$pbkdf2(?:-(sha256|sha512))?\$(\d{1,9})\$([A-Za-z0-9./]+)"
                             r"\$([A-Za-z0-9./]+)")  # fmt: skip
_BCRYPT = re.compile(r"\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}")


class UnsupportedHash(ValueError):
    """A stored hash in no format this module can verify (the message says why)."""


def _ab64_decode(text: str) -> bytes:
    """passlib's "adapted base64": ``.`` for ``+``, no padding."""
    text = text.replace(".", "+")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def ab64_encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode().replace("+", ".").rstrip("=")


def hash_scheme(stored: str) -> str:
    """The scheme of a stored hash: ``argon2``, ``bcrypt``, ``pbkdf2``; or raise
    :class:`UnsupportedHash` with the reason (format or an excessive work factor)."""
    if stored.startswith(("$argon2id$", "$argon2i$", "$argon2d$")):
        return "argon2"
    if stored.startswith("argon2$argon2"):  # Django's Argon2PasswordHasher
        return "argon2"
    if stored.startswith(("bcrypt$", "bcrypt_sha256$")):
        stored = stored.split("$", 1)[1]
    m = _BCRYPT.fullmatch(stored)
    if m:
        if int(m[1]) > MAX_BCRYPT_COST:
            raise UnsupportedHash(f"bcrypt cost {int(m[1])} is above {MAX_BCRYPT_COST}")
        return "bcrypt"
    m = _DJANGO_PBKDF2.fullmatch(stored) or _PASSLIB_PBKDF2.fullmatch(stored)
    if m:
        if not 1 <= int(m[2]) <= MAX_PBKDF2_ITERATIONS:
            raise UnsupportedHash(f"PBKDF2 iterations {int(m[2])} are outside 1 to "
                                  f"{MAX_PBKDF2_ITERATIONS:,}")  # fmt: skip
        try:
            if m.re is _PASSLIB_PBKDF2:
                _ab64_decode(m[3]), _ab64_decode(m[4])
            else:
                base64.b64decode(m[4], validate=True)
        except (binascii.Error, ValueError):
            raise UnsupportedHash("PBKDF2 salt or hash is not valid base64") from None
        return "pbkdf2"
    raise UnsupportedHash("not an argon2, bcrypt or PBKDF2 hash in a known format")


def _verify_pbkdf2(stored: str, password: str) -> bool:
    secret = password.encode("utf-8")
    m = _DJANGO_PBKDF2.fullmatch(stored)
    if m:
        expected = base64.b64decode(m[4])
        salt = m[3].encode("utf-8")
        digest = m[1]
    else:
        m = _PASSLIB_PBKDF2.fullmatch(stored)
        if m is None:
            return False
        salt, expected = _ab64_decode(m[3]), _ab64_decode(m[4])
        digest = m[1] or "sha1"
    got = hashlib.pbkdf2_hmac(_PBKDF2_DIGESTS[digest], secret, salt, int(m[2]), len(expected))
    return equal(got, expected)


def _verify_bcrypt(stored: str, password: str) -> bool:
    secret = password.encode("utf-8")
    if stored.startswith("bcrypt_sha256$"):
        # Django's BCryptSHA256PasswordHasher: bcrypt over the hex SHA-256 of the password.
        stored, secret = stored.split("$", 1)[1], hashlib.sha256(secret).hexdigest().encode()
    elif stored.startswith("bcrypt$"):
        stored = stored.split("$", 1)[1]
    return _bcrypt.checkpw(secret[:72], stored.encode("ascii"))


class PasswordHasher:
    """argon2id with the configured cost; verification never raises on bad input."""

    def __init__(self, *, memory_cost: int = 19456, time_cost: int = 2, parallelism: int = 1):
        self._argon2 = _Argon2(
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verifying against a real hash when the account does not exist keeps the
        # timing of "no such user" equal to "wrong password" (no enumeration).
        self._dummy = self._argon2.hash("timing-equaliser-not-a-password")

    def hash(self, password: str) -> str:
        return self._argon2.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when *password* matches; a missing or corrupt hash is a mismatch.

        Imported bcrypt and PBKDF2 hashes are verified too (see the module docstring);
        :meth:`needs_rehash` is true for them, so a sign-in replaces them.
        """
        if stored_hash and not stored_hash.startswith("$argon2"):
            return self._verify_imported(stored_hash, password)
        try:
            return self._argon2.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _verify_imported(self, stored: str, password: str) -> bool:
        try:
            scheme = hash_scheme(stored)
            if scheme == "argon2":  # Django's "argon2$" prefix
                return self._argon2.verify(stored.removeprefix("argon2"), password)
            if scheme == "bcrypt":
                return _verify_bcrypt(stored, password)
            return _verify_pbkdf2(stored, password)
        except (UnsupportedHash, ValueError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        if not stored_hash.startswith("$argon2id$"):
            return True  # argon2i/d, bcrypt, PBKDF2: replaced by argon2id at sign-in
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True


def validate_new_password(password: str, *, min_length: int, max_length: int) -> str | None:
    """Return an error message for an unacceptable new password, else ``None``.

    NIST SP 800-63B 3.1.1.2: length limits only, every character allowed, no
    composition rules. (Breached and context-specific checks arrive with
    self-service registration.)
    """
    if len(password) < min_length:
        return f"Use at least {min_length} characters."
    if len(password) > max_length:
        return f"Use at most {max_length} characters."
    if password.strip() == "":
        return "The password cannot be only spaces."
    return None
