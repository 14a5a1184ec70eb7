"""Parsing small values out of request text.

``str.isdigit()`` is true for "²", "٣" and other Unicode digits that ``int()`` refuses
(or reads as another number), so "digits only" checks written with it let such input
through to a ``ValueError``: a 500 for whoever sends it. Numbers from requests, cookies
and tokens are read with :func:`ascii_int` instead.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

#: An ASCII host name (punycode for others): labels of letters, digits and hyphens.
_HOST_NAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                        r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # fmt: skip


def is_ascii_digits(value: str) -> bool:
    """True when *value* is one or more of the ASCII digits 0-9 and nothing else."""
    return value.isascii() and value.isdigit()


def ascii_int(value: str | None, *, max_digits: int = 18) -> int | None:
    """The non-negative integer *value* spells in ASCII digits, or None (empty, other
    characters, or longer than *max_digits*, so it always fits a 64-bit column)."""
    if not value or len(value) > max_digits or not is_ascii_digits(value):
        return None
    return int(value)


def web_origin(uri: str | None) -> str | None:
    """The origin (RFC 6454) ``scheme://host[:port]`` of an http(s) *uri* whose host is
    a plain host name and whose port is a number, or None. Built from the parsed parts,
    never copied from the text, so it is safe to write into a header such as a
    Content-Security-Policy source list (no ``;``, space or quote can come through)."""
    try:
        parts = urlsplit(uri or "")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    if not _HOST_NAME.fullmatch(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
