"""Password hashing with argon2id (NIST SP 800-63B 3.1.1.2, OWASP parameters).

Hashes carry their parameters, so raising the cost later only needs a rehash at the
next successful sign-in (:meth:`PasswordHasher.needs_rehash`).
"""

from __future__ import annotations

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


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
        """True when *password* matches; a missing or corrupt hash is a mismatch."""
        try:
            return self._argon2.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
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
