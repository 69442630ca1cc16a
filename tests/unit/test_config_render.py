"""config/render.py: the effective configuration as TOML that reads back as the same values."""

from __future__ import annotations

import tomllib
from typing import Any

from crucible.config import Settings, describe
from crucible.config.render import to_toml


def test_the_default_configuration_reads_back_unchanged() -> None:
    view = describe(Settings(), {})
    text = to_toml(view)
    parsed = tomllib.loads(text)
    # api_key_env is None by default: left out, as TOML has no null.
    expected = {
        **view,
        "providers": [{k: v for k, v in p.items() if v is not None} for p in view["providers"]],
    }
    assert parsed == expected
    assert text.count("[[providers]]") == 1


def test_awkward_values_stay_valid_toml() -> None:
    view: dict[str, Any] = {
        "name": 'quote " backslash \\ tab \t newline \n del \x7f é',
        "odd key": 1.5,
        "nested": {"inner": {"flag": False, "list": [1, 2]}, "items": [{"a": 1}, {"a": 2}]},
    }
    assert tomllib.loads(to_toml(view)) == view
