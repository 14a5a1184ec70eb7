"""``[push] max_polls_per_device``: how many long-polls one device may hold open."""

from __future__ import annotations

import pytest

from idp.config import ConfigError, load_settings


def test_default_allows_two_polls_per_device() -> None:
    assert load_settings(environ={}).push.max_polls_per_device == 2


@pytest.mark.parametrize("value", ["1", "10"])
def test_values_in_range_are_accepted(value: str) -> None:
    settings = load_settings(environ={"IDP_PUSH_MAX_POLLS_PER_DEVICE": value})
    assert settings.push.max_polls_per_device == int(value)


@pytest.mark.parametrize("value", ["0", "11", "-1"])
def test_values_out_of_range_are_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"IDP_PUSH_MAX_POLLS_PER_DEVICE": value})
    message = str(info.value)
    assert "[push] max_polls_per_device" in message and "between 1 and 10" in message
