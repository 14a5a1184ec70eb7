"""Email addresses: one normalisation (NFKC, case) and full-match validity."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from idp.security.email_address import is_valid, normalize

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "raw",
    [
        "abc\n@example.com",
        "abc@example.com\n",
        "abc@example.com\r\nBcc: x@evil.example",
        "a b@example.com",
        "abc@exa mple.com",
        "abc\x00@example.com",
        "abc@example.com\t",
        ".abc@example.com",
        "a..bc@example.com",
        "abc@-example.com",
        "abc@example",
        "abc@example.123",
        "ab@c@example.com",
        "x" * 65 + "@example.com",
        "a@" + "b" * 250 + ".com",
    ],
)
def test_invalid_addresses(raw):
    assert not is_valid(raw)
    # Even after normalisation, nothing with a line break or NUL inside passes.
    assert not is_valid(normalize(raw)) or "\n" not in raw.strip()


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("Ada@Example.COM", "ada@example.com"),
        ("  ada@example.com \n", "ada@example.com"),  # edges only: stripped
        ("ａｄａ@ｅｘａｍｐｌｅ.ｃｏｍ", "ada@example.com"),  # full-width letters (NFKC)
        ("o'brien+portal@example.gov", "o'brien+portal@example.gov"),
    ],
)
def test_normalised_once_then_valid(raw, normal):
    assert normalize(raw) == normal
    assert is_valid(normal)


def test_no_dollar_anchored_pattern_is_used_to_validate_input():
    """The class of bug: ``re.match(r"^...$")`` accepts a trailing newline. Patterns in
    the provider are compiled without ``$`` and used with ``fullmatch`` (or end with
    ``\\Z``)."""
    offenders = []
    for path in (ROOT / "idp").rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.func.attr in ("compile", "match", "search")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and re.search(r"(?<!\\)\$$", node.args[0].value)
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"'$' lets a trailing newline through; use fullmatch: {offenders}"
