"""Recovery codes (NIST SP 800-63B 5.1.2 look-up secrets).

Ten codes of 12 Crockford base32 characters (60 bits each), shown as ``XXXX-XXXX-XXXX``.
They are stored as HMAC-SHA256 under a key derived from the server secret for this one
purpose: a database dump alone cannot be searched offline, and a presented code is
found by an indexed lookup instead of ten slow hash checks. Each is burned with
``UPDATE ... WHERE used_at IS NULL`` so exactly one of two concurrent uses wins.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
CODE_LENGTH = 12
GROUP = 4
COUNT = 10
LOW_WATERMARK = 3
_CONFUSABLE = str.maketrans({"I": "1", "L": "1", "O": "0"})


def generate(count: int = COUNT) -> list[str]:
    return [format_code("".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH)))
            for _ in range(count)]  # fmt: skip


def format_code(raw: str) -> str:
    return "-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP))


def normalize(code: str) -> str | None:
    """Canonical form of a typed code (case, spaces, dashes and I/L/O forgiven), or None."""
    raw = "".join(ch for ch in code.upper() if ch not in " -\t").translate(_CONFUSABLE)
    if len(raw) != CODE_LENGTH or any(ch not in ALPHABET for ch in raw):
        return None
    return raw


def code_hash(secret_key: str, code: str) -> str:
    """Keyed hash of a normalized code; the key is derived for this purpose only."""
    key = hashlib.sha256(b"idp.recovery-code|" + secret_key.encode()).digest()
    return hmac.new(key, code.encode(), hashlib.sha256).hexdigest()
