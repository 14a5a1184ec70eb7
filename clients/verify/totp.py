"""RFC 6238 time-based codes (HMAC-SHA-1, 6 digits, 30 s), for the offline ``codes``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
import time


def code(secret: str, *, now: float | None = None, digits: int = 6, period: int = 30) -> str:
    """The code for the time step containing *now* (RFC 6238 section 4; RFC 4226 5.3)."""
    key = base64.b32decode(secret.replace(" ", "").upper() + "=" * (-len(secret) % 8))
    step = int((time.time() if now is None else now) // period)
    mac = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 10**digits:0{digits}d}"


def seconds_left(*, now: float | None = None, period: int = 30) -> int:
    t = time.time() if now is None else now
    return period - int(t % period)
