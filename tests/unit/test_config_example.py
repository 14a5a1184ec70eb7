"""config.example.toml documents the model exactly: a setting added, renamed or given a
new default without the example following fails here."""

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from idp.config import Settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"
DEFAULTS = Settings()
SECTIONS = [f.name for f in dataclasses.fields(Settings) if dataclasses.is_dataclass(f.type)]
TOP_LEVEL = [f.name for f in dataclasses.fields(Settings) if f.name not in SECTIONS]


def example() -> dict[str, Any]:
    return tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))


def model_keys(section: str) -> list[str]:
    return [f.name for f in dataclasses.fields(getattr(DEFAULTS, section))]


def as_toml(value: Any) -> Any:
    """A default as TOML writes it: tuples are arrays, read-only mappings are tables."""
    if isinstance(value, tuple):
        return list(value)
    return dict(value) if isinstance(value, Mapping) else value


def test_every_section_and_top_level_key_of_the_model_is_in_the_example() -> None:
    data = example()
    missing = [name for name in TOP_LEVEL + SECTIONS if name not in data]
    assert not missing, f"config.example.toml lacks {missing}"


@pytest.mark.parametrize("section", SECTIONS)
def test_every_key_of_a_section_is_in_the_example(section: str) -> None:
    missing = set(model_keys(section)) - set(example().get(section, {}))
    assert not missing, f"config.example.toml [{section}] lacks {sorted(missing)}"


def test_every_key_of_the_example_is_in_the_model() -> None:
    unknown = []
    for name, value in example().items():
        if name in SECTIONS:
            unknown += [f"[{name}] {key}" for key in value if key not in model_keys(name)]
        elif name not in TOP_LEVEL:
            unknown.append(name)
    assert not unknown, f"config.example.toml has keys the model does not: {unknown}"


def test_every_value_in_the_example_is_the_default() -> None:
    """The example shows each key with its default (the tests above catch missing keys)."""
    data, wrong = example(), []
    places = [("", DEFAULTS, data, TOP_LEVEL)]
    places += [(s, getattr(DEFAULTS, s), data.get(s, {}), model_keys(s)) for s in SECTIONS]
    for section, defaults, written, keys in places:
        for key in (key for key in keys if key in written):
            default = as_toml(getattr(defaults, key))
            if written[key] != default:
                wrong.append((f"[{section}] {key}" if section else key, written[key], default))
    assert not wrong, f"(key, value in the example, default): {wrong}"


def test_every_section_has_a_docstring_and_every_setting_a_description() -> None:
    undocumented = []
    for section in [None, *SECTIONS]:
        cls = type(getattr(DEFAULTS, section)) if section else Settings
        assert cls.__doc__ and cls.__doc__.strip(), cls
        for key, info in cls.__pydantic_fields__.items():
            if key not in SECTIONS and not (info.description or "").strip():
                undocumented.append(f"[{section}] {key}" if section else key)
    assert not undocumented, f"settings without a description: {undocumented}"
