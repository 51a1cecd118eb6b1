"""Every FT.SEARCH agentmem sends (store.memories and LangGraphStore(index=...)) carries
TIMEOUT 0: RediSearch's default query timeout (500 ms, ON_TIMEOUT RETURN) would answer a
slow search under load with the hits found so far, a partial result that looks complete."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.testing.embedders import HashEmbedder
from agentmem.testing.fixtures import StoreFactory
from agentmem.testing.provision import ServerInfo


async def searches_sent(url: str, prefix: str, work: Callable[[], Awaitable[None]]) -> list[str]:
    """The FT.SEARCH commands on ``prefix``'s indexes the server saw (MONITOR) while ``work`` ran."""
    watcher = Redis.from_url(url)
    other = Redis.from_url(url)
    done = f"agentmem-monitor-done-{secrets.token_hex(4)}"
    seen: list[str] = []
    try:
        async with watcher.monitor() as monitor:

            async def collect() -> None:
                async for entry in monitor.listen():
                    command = str(entry["command"])
                    if done in command:
                        return
                    seen.append(command)

            task = asyncio.create_task(collect())
            await work()
            await other.echo(done)
            await asyncio.wait_for(task, 10)
    finally:
        await other.aclose()
        await watcher.aclose()
    return [c for c in seen if c.upper().startswith("FT.SEARCH") and prefix in c]


def assert_no_timeout(commands: list[str]) -> None:
    assert commands, "no FT.SEARCH was seen"
    for command in commands:
        words = command.split()
        upper = [w.upper() for w in words]
        assert "TIMEOUT" in upper, command
        assert words[upper.index("TIMEOUT") + 1] == "0", command


async def test_memories_searches_never_time_out_partially(
    agentmem_search_store: AgentMemoryStore, agentmem_search_server: ServerInfo
) -> None:
    """memories.search (one user and every user), list and forget_user send FT.SEARCH with TIMEOUT 0."""
    store = agentmem_search_store

    async def work() -> None:
        await store.memories.add("alice", "my dog is named Rex", tags=["pets"])
        await store.memories.search("alice", "dog", k=3)
        await store.memories.search(None, "dog", k=3)
        await store.memories.list("alice")
        await store.forget_user("alice")

    commands = await searches_sent(agentmem_search_server.url, store.config.prefix, work)
    assert len(commands) >= 4
    assert_no_timeout(commands)


async def test_langgraph_index_searches_never_time_out_partially(
    agentmem_search_store_factory: StoreFactory, agentmem_search_server: ServerInfo
) -> None:
    """LangGraphStore(index=...)'s ranked search sends FT.SEARCH with TIMEOUT 0."""
    pytest.importorskip("langgraph.store.base")
    from agentmem.integrations.langgraph import LangGraphStore

    store = agentmem_search_store_factory()
    index: Any = {"dims": 64, "embed": HashEmbedder(64).embed, "fields": ["text"]}
    lg = LangGraphStore(store, index=index)

    async def work() -> None:
        await lg.aput(("users", "u1"), "m1", {"text": "my dog is named Rex"})
        hits = await lg.asearch(("users",), query="dog", limit=3)
        assert [hit.key for hit in hits] == ["m1"]

    assert_no_timeout(await searches_sent(agentmem_search_server.url, store.config.prefix, work))
