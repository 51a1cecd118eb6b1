"""Option checking: bad configuration fails at construction, naming the option."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, InvalidArgumentError, StoreConfig
from agentmem.config import POOL_OPTIONS


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


@pytest.mark.parametrize("option", POOL_OPTIONS)
async def test_pool_options_with_a_caller_client_are_refused(agentmem_redis: Redis, option: str) -> None:
    """A pool option passed with the caller's own client raises TypeError naming it, keyword or config."""
    value: Any = "name" if option == "client_name" else 7
    with pytest.raises(TypeError, match=option):
        AgentMemoryStore(agentmem_redis, **{option: value})
    with pytest.raises(TypeError, match=option):
        AgentMemoryStore(agentmem_redis, config=StoreConfig.from_options(**{option: value}))
    AgentMemoryStore(agentmem_redis, prefix="p", ttl=5, retries=1)  # the store's own options are fine


async def test_url_query_options_become_the_config(agentmem_server: Any, agentmem_prefix: str) -> None:
    """?socket_timeout=&max_connections=&timeout=&client_name= are the pool's settings and store.config's."""
    name = f"{agentmem_prefix}-url"[-40:].replace(":", "-")
    url = (
        f"{agentmem_server.url}?socket_timeout=9&max_connections=3&timeout=4.5"
        f"&socket_connect_timeout=2&health_check_interval=11&client_name={name}"
    )
    async with AgentMemoryStore.from_url(url, prefix=agentmem_prefix) as store:
        config = store.config
        assert (config.socket_timeout, config.max_connections, config.pool_timeout) == (9.0, 3, 4.5)
        assert (config.socket_connect_timeout, config.health_check_interval) == (2.0, 11.0)
        pool = store.client.connection_pool
        assert pool.max_connections == 3
        assert pool.connection_kwargs["socket_timeout"] == 9.0
        assert pool.connection_kwargs["health_check_interval"] == 11.0
        assert pool.timeout == 4.5  # type: ignore[attr-defined]
        await store.load_context("s")
        clients = await store.client.client_list()
        assert [c["name"] for c in clients if c["name"] == name] == [name]  # the server saw it


def test_an_option_in_the_url_and_a_keyword_is_refused() -> None:
    """The same option in the URL and as a keyword raises TypeError naming it, before connecting."""
    with pytest.raises(TypeError, match="max_connections"):
        AgentMemoryStore.from_url("redis://127.0.0.1:1/0?max_connections=999", max_connections=4)
    with pytest.raises(InvalidArgumentError, match="socket_timeout"):
        AgentMemoryStore.from_url("redis://127.0.0.1:1/0?socket_timeout=soon")
