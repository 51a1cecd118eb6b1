"""The class is the choice: JournaledStore's own constructors, open_store() for
config-driven code, and the 0.3 spelling AgentMemoryStore.from_url(fallback=...) deprecated."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, InvalidArgumentError, JournaledStore, open_store
from agentmem.keys import KeySchema


async def test_journaled_store_constructors_make_a_journaled_store(
    agentmem_server: Any, agentmem_prefix: str, agentmem_redis: Redis
) -> None:
    """JournaledStore.from_url and JournaledStore(client) are journaled stores whose writes reach Redis."""
    client = Redis.from_url(agentmem_server.url)
    by_url = JournaledStore.from_url(agentmem_server.url, prefix=agentmem_prefix)
    by_client = JournaledStore(client, prefix=agentmem_prefix)
    try:
        for store in (by_url, by_client):
            assert type(store) is JournaledStore
            assert store.config.fallback == "journal"
            assert store.journal_backlog == 0
        await by_url.save_context("a", {"n": 1})
        await by_client.save_context("b", {"n": 2})
        schema = KeySchema(agentmem_prefix)
        assert await agentmem_redis.exists(schema.session("a").base, schema.session("b").base) == 2
    finally:
        await by_url.aclose()
        await by_client.aclose()
        await client.aclose()


async def test_open_store_picks_the_class_from_fallback(agentmem_server: Any, agentmem_prefix: str) -> None:
    """open_store(url or client, fallback=...): JournaledStore for "journal", the core store otherwise."""
    client = Redis.from_url(agentmem_server.url)
    stores = [
        open_store(agentmem_server.url, prefix=agentmem_prefix, fallback="journal"),
        open_store(client, prefix=agentmem_prefix, fallback="journal"),
        open_store(agentmem_server.url, prefix=agentmem_prefix),
        open_store(client, prefix=agentmem_prefix, fallback="raise"),
    ]
    try:
        assert [type(store) for store in stores] == [
            JournaledStore,
            JournaledStore,
            AgentMemoryStore,
            AgentMemoryStore,
        ]
        with pytest.raises(InvalidArgumentError, match="fallback"):
            open_store(agentmem_server.url, prefix=agentmem_prefix, fallback="ignore")
    finally:
        for store in stores:
            await store.aclose()
        await client.aclose()


async def test_the_0_3_spelling_still_works_with_a_deprecation_warning(
    agentmem_server: Any, agentmem_prefix: str
) -> None:
    """AgentMemoryStore.from_url(..., fallback="journal") warns, naming 0.4, and gives a JournaledStore."""
    with pytest.warns(DeprecationWarning, match=r"goes in 0\.4.*JournaledStore\.from_url"):
        store = AgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix, fallback="journal")
    try:
        assert type(store) is JournaledStore
        assert store.config.fallback == "journal"
    finally:
        await store.aclose()


async def test_the_core_constructor_no_longer_picks_the_class(
    agentmem_server: Any, agentmem_prefix: str
) -> None:
    """AgentMemoryStore(client, fallback="journal") raises TypeError naming JournaledStore and open_store."""
    client = Redis.from_url(agentmem_server.url)
    try:
        with pytest.raises(TypeError, match=r"JournaledStore\(client.*open_store"):
            AgentMemoryStore(client, prefix=agentmem_prefix, fallback="journal")
    finally:
        await client.aclose()
