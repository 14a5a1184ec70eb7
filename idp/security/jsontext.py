"""JSON from requests: one parsing rule with a depth limit.

Python's ``json`` recurses once per level of nesting and raises ``RecursionError``
(not ``ValueError``) past about a thousand levels: a 500 for a small body such as
``[[[[...]]]]``. Every piece of request data read as JSON goes through
:func:`parse_json`, which counts the nesting first (linearly, without recursion) and
refuses ``NaN`` and ``Infinity``, which RFC 8259 does not allow.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: The deepest nesting of arrays and objects accepted in request JSON. Real payloads
#: (client metadata with a JWKS, a claims request, a WebAuthn response) stay under 8;
#: Python's json raises RecursionError past about 1000 levels.
MAX_JSON_DEPTH = 32

_JSON_SYNTAX = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


class JSONRefused(ValueError):
    """Request JSON that is not JSON (RFC 8259), or is nested too deeply."""


class JSONTooDeep(JSONRefused):
    """Request JSON nested deeper than :data:`MAX_JSON_DEPTH`."""


def json_depth(text: str, limit: int | None = None) -> int:
    """The deepest nesting of ``[`` and ``{`` in *text*, brackets inside strings aside.

    No recursion and no parsing: linear in the length, and stops as soon as *limit* is
    exceeded. Text that is not JSON still gets a depth (its brackets are counted)."""
    depth = deepest = 0
    in_string = False
    for match in _JSON_SYNTAX.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:  # a bracket in a string, or an escape
            continue
        elif token in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if limit is not None and deepest > limit:
                    return deepest
        else:
            depth = max(0, depth - 1)
    return deepest


def looks_like_json(value: str) -> bool:
    """True when *value* starts (after JSON whitespace) with ``[`` or ``{``: the only
    text a JSON parser can recurse into."""
    return value.lstrip(" \t\r\n")[:1] in ("[", "{")


def _no_constant(name: str) -> Any:
    raise JSONRefused(f"{name} is not a JSON number (RFC 8259 6).")


def parse_json(raw: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse request JSON (RFC 8259) with a nesting limit: the one way request data is
    read as JSON (the request edge, the claims parameter, registration bodies).

    Raises :class:`JSONTooDeep` past *max_depth* levels and :class:`JSONRefused` for
    anything else that is not JSON (bad UTF-8, ``NaN``/``Infinity``, syntax errors)."""
    if isinstance(raw, bytes | bytearray):
        try:
            text = bytes(raw).decode(json.detect_encoding(raw))
        except (UnicodeDecodeError, LookupError):
            raise JSONRefused("The JSON is not valid UTF-8 text.") from None
    else:
        text = raw
    if json_depth(text, max_depth) > max_depth:
        raise JSONTooDeep(f"The JSON is nested more than {max_depth} levels deep.")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:  # unreachable after the depth check; never a 500 regardless
        raise JSONTooDeep(f"The JSON is nested more than {max_depth} levels deep.") from None
    except JSONRefused:
        raise
    except ValueError as exc:
        raise JSONRefused(f"The JSON is not valid: {exc}.") from None
