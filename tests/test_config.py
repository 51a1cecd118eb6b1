"""Option checking: bad configuration fails at construction, naming the option."""

from __future__ import annotations

from datetime import timedelta

import pytest

from agentmem import StoreConfig


def test_defaults() -> None:
    """Defaults match the README's table."""
    config = StoreConfig()
    assert (config.ttl, config.max_history, config.max_value_bytes) == (3600.0, 200, 1024 * 1024)
    assert (config.retries, config.retry_deadline, config.sliding_ttl) == (3, 2.0, True)
    assert config.profile_ttl is None


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
