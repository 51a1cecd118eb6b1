"""Option checking: bad configuration fails at construction, naming the option."""

from __future__ import annotations

import dataclasses
import re
from datetime import timedelta
from pathlib import Path

import pytest

from agentmem import StoreConfig


def _readme_defaults() -> dict[str, str]:
    """``option -> default`` from the README's Configuration table (rows naming one or two options)."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    table = text[text.index("## Configuration") :]
    table = table[: table.index("\n\n", table.index("| option |"))]
    defaults: dict[str, str] = {}
    for row in re.finditer(r"^\| (`[^|]+`) \| (`[^|]+`) \|", table, re.MULTILINE):
        names = re.findall(r"`(\w+)`", row.group(1))
        values = re.findall(r"`([^`]+)`", row.group(2))
        if len(names) == len(values):
            defaults.update(zip(names, values, strict=True))
    return defaults


def test_defaults_match_the_readme() -> None:
    """Every option has a row in the README's Configuration table, with the real default."""
    documented = _readme_defaults()
    for option in dataclasses.fields(StoreConfig):
        assert option.name in documented, f"{option.name} is missing from the README's table"
        default = getattr(StoreConfig(), option.name)
        shown = documented[option.name]
        expected = f'"{default}"' if isinstance(default, str) else str(default)
        assert shown in (expected, str(default).removesuffix(".0")), (option.name, shown, default)


def test_durations_accept_timedelta() -> None:
    """A timedelta is normalised to seconds."""
    config = StoreConfig.from_options(ttl=timedelta(minutes=2), profile_ttl=timedelta(days=1))
    assert config.ttl == 120.0
    assert config.profile_ttl == 86400.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ttl": 0}, "ttl"),
        ({"ttl": -1}, "ttl"),
        ({"max_connections": 0}, "max_connections"),
        ({"retries": -1}, "retries"),
        ({"prefix": ""}, "prefix"),
        ({"prefix": "a{b"}, "prefix"),
        ({"fallback": "ignore"}, "fallback"),
        ({"max_history": True}, "max_history"),
    ],
)
def test_bad_options_raise(options: dict[str, object], message: str) -> None:
    """Each bad option raises ValueError naming it."""
    with pytest.raises(ValueError, match=message):
        StoreConfig.from_options(**options)


def test_unknown_option_is_named() -> None:
    """A misspelt option raises TypeError that names it."""
    with pytest.raises(TypeError, match="max_conections"):
        StoreConfig.from_options(max_conections=3)
