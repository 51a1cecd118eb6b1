"""The agentmem.testing fixtures against a real server: what they hand out and clean up."""

from __future__ import annotations

import pytest
import redis.exceptions
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.testing import EmbeddedServer, ServerInfo
from agentmem.testing.fixtures import StoreFactory, make_prefix


def test_server_info_describes_the_server(agentmem_server: ServerInfo) -> None:
    """agentmem_server reports url, flavor, source and a parsed version."""
    assert agentmem_server.url.startswith("redis://")
    assert agentmem_server.flavor in ("redis", "valkey")
    assert agentmem_server.source in ("url", "docker", "embedded")
    assert agentmem_server.version_info[0] >= 6
    assert ".".join(map(str, agentmem_server.version_info)).startswith(agentmem_server.version.split("-")[0])


@pytest.mark.parametrize("name", ["test_x[a*b?]", "t{1}", "a\\b[c]", "x" * 300, "ü ñ"])
def test_prefix_is_safe_for_keys_and_patterns(name: str) -> None:
    """make_prefix drops glob characters and braces, bounds the length, varies per call."""
    prefix = make_prefix("gw3", name)
    assert not set(prefix) & set("{}*?[]\\ ")
    assert prefix.startswith("test:gw3:")
    assert len(prefix) <= 70
    assert make_prefix("gw3", name) != prefix


async def test_redis_fixture_is_raw_bytes(agentmem_redis: Redis, agentmem_prefix: str) -> None:
    """agentmem_redis returns bytes (decode_responses=False) and reaches the server."""
    await agentmem_redis.set(f"{agentmem_prefix}:k", "v")
    assert await agentmem_redis.get(f"{agentmem_prefix}:k") == b"v"


async def test_flushall_refused_on_shared_server(
    agentmem_server: ServerInfo, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A server the plugin started refuses FLUSHALL and FLUSHDB; no key is lost."""
    if agentmem_server.source == "url":
        pytest.skip("a --redis-url server is not configured by the plugin; not flushing it")
    await agentmem_redis.set(f"{agentmem_prefix}:survivor", "1")
    with pytest.raises(redis.exceptions.ResponseError):
        await agentmem_redis.flushall()
    with pytest.raises(redis.exceptions.ResponseError):
        await agentmem_redis.flushdb()
    assert await agentmem_redis.get(f"{agentmem_prefix}:survivor") == b"1"


async def test_flushall_refused_on_private_server(agentmem_private_server: EmbeddedServer) -> None:
    """A private server refuses FLUSHALL and FLUSHDB too."""
    async with Redis.from_url(agentmem_private_server.url) as client:
        with pytest.raises(redis.exceptions.ResponseError):
            await client.flushall()
        with pytest.raises(redis.exceptions.ResponseError):
            await client.flushdb()


async def test_store_fixture_uses_prefix_and_client_name(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """agentmem_store carries the test's prefix and a client name unique to the test."""
    assert agentmem_store.config.prefix == agentmem_prefix
    name = agentmem_store.config.client_name
    assert name is not None
    assert agentmem_prefix.rsplit(":", 1)[1] in name
    await agentmem_store.client.ping()
    names = {client["name"] for client in await agentmem_redis.client_list()}
    assert name in names


async def test_store_factory_fills_prefix_and_distinct_names(
    agentmem_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """Stores from the factory share the prefix, get distinct client names, honour options."""
    first = agentmem_store_factory()
    second = agentmem_store_factory(retries=0, prefix=agentmem_prefix + ":other")
    assert first.config.prefix == agentmem_prefix
    assert second.config.prefix == agentmem_prefix + ":other"
    assert second.config.retries == 0
    assert first.config.client_name != second.config.client_name
    assert await first.client.ping()


@pytest.mark.min_server_version("6.0")
def test_min_server_version_lets_newer_servers_run(agentmem_server: ServerInfo) -> None:
    """A server at least as new as min_server_version runs the test."""
    assert agentmem_server.version_info >= (6, 0)


def test_server_fixture_users_are_marked_real_redis(
    request: pytest.FixtureRequest, agentmem_server: ServerInfo
) -> None:
    """Using a server fixture adds the real_redis marker, so -m real_redis selects the test."""
    assert request.node.get_closest_marker("real_redis") is not None
