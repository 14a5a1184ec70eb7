"""Parsing small values out of request text.

``str.isdigit()`` is true for "²", "٣" and other Unicode digits that ``int()`` refuses
(or reads as another number), so "digits only" checks written with it let such input
through to a ``ValueError``: a 500 for whoever sends it. Numbers from requests, cookies
and tokens are read with :func:`ascii_int` instead.
"""

from __future__ import annotations


def is_ascii_digits(value: str) -> bool:
    """True when *value* is one or more of the ASCII digits 0-9 and nothing else."""
    return value.isascii() and value.isdigit()


def ascii_int(value: str | None, *, max_digits: int = 18) -> int | None:
    """The non-negative integer *value* spells in ASCII digits, or None (empty, other
    characters, or longer than *max_digits*, so it always fits a 64-bit column)."""
    if not value or len(value) > max_digits or not is_ascii_digits(value):
        return None
    return int(value)
