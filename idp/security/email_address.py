"""Email addresses: one normalisation and one validity rule for every form.

An address is normalised once, where it enters (NFKC, surrounding white space removed,
lower case), then checked with *full* matches: a ``$`` anchor would let a trailing
newline through (``"abc\\n@example.com"``), which later breaks the headers of the
messages sent to it. The accepted syntax is a practical subset of RFC 5322 addr-spec:
a dot-atom local part of at most 64 octets (RFC 5321 4.5.3.1), a dotted domain of
letters, digits and hyphens, at most 254 characters in all.
"""

from __future__ import annotations

import re
import unicodedata

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
MAX_LENGTH = 254


def normalize(raw: str, *, lower: bool = True) -> str:
    """The canonical form of a typed address: NFKC (full-width letters become ASCII,
    NIST SP 800-63B applies the same to secrets), stripped, and (for an account's
    address, the default) lower case."""
    text = unicodedata.normalize("NFKC", raw or "").strip()
    return text.lower() if lower else text


def is_valid(address: str) -> bool:
    """True for a plain internet mail address (see the module docstring). Expects a
    normalised address; control characters and white space anywhere are refused."""
    if not address or len(address) > MAX_LENGTH or address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not _LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return False
    return not labels[-1].isdigit()  # (ASCII only: the labels matched [A-Za-z0-9-])
