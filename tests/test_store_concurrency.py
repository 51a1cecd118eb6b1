"""Concurrency against a real server: no lost update, a bounded pool that never leaks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.keys import KeySchema

StoreFactory = Callable[..., AgentMemoryStore]


async def test_concurrent_updates_lose_nothing(agentmem_store: AgentMemoryStore) -> None:
    """50 concurrent update_context calls on different fields of one session all land."""
    await asyncio.gather(*(agentmem_store.update_context("s", {f"field{i}": i}) for i in range(50)))
    assert await agentmem_store.load_context("s") == {f"field{i}": i for i in range(50)}


async def test_concurrent_appends_keep_every_message(agentmem_store_factory: StoreFactory) -> None:
    """100 concurrent appends each store their message exactly once."""
    store = agentmem_store_factory(max_history=1000)
    lengths = await asyncio.gather(*(store.append_messages("s", [{"n": i}]) for i in range(100)))
    assert sorted(lengths) == list(range(1, 101))
    assert sorted(m["n"] for m in await store.load_history("s", last=1000)) == list(range(100))


async def _clients_named(admin: Redis, name: str) -> int:
    return sum(1 for c in await admin.client_list() if c.get("name") == name)


@pytest.mark.single_node  # counts one server's connections (a cluster has a pool per primary)
async def test_burst_larger_than_pool_waits_and_succeeds(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """200 concurrent calls through a pool of 4 all succeed; the server never sees more than 4."""
    name = f"{agentmem_prefix}-pool"[-60:].replace(" ", "_")
    store = agentmem_store_factory(max_connections=4, pool_timeout=10.0, client_name=name)
    peak = 0
    done = asyncio.Event()

    async def watch() -> None:
        # Stopped by the event between calls, never cancelled inside one: a CLIENT LIST
        # cancelled mid-reply leaves its connection for the garbage collector to warn about.
        nonlocal peak
        while not done.is_set():
            peak = max(peak, await _clients_named(agentmem_redis, name))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(done.wait(), 0.005)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.gather(
            *(store.update_context(f"s{i % 10}", {f"f{i}": "x" * 2000}) for i in range(200)),
            *(store.load_turn(f"s{i % 10}") for i in range(100)),
        )
    finally:
        done.set()
        await watcher
    assert 1 <= peak <= 4
    health = await store.health()
    assert health.pool_in_use == 0  # every connection went back to the pool
    assert health.pool_size == 4
    for i in range(10):
        assert len(await store.load_context(f"s{i}") or {}) == 20


async def test_aclose_releases_every_connection(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """After aclose(), none of the store's connections is left open on the server."""
    name = f"{agentmem_prefix}-close"[-60:].replace(" ", "_")
    store = agentmem_store_factory(max_connections=8, client_name=name)
    await asyncio.gather(*(store.load_context(f"s{i}") for i in range(50)))
    assert await _clients_named(agentmem_redis, name) >= 1
    await store.aclose()
    for _ in range(50):
        if await _clients_named(agentmem_redis, name) == 0:
            break
        await asyncio.sleep(0.02)
    assert await _clients_named(agentmem_redis, name) == 0


@pytest.mark.single_node  # counts one server's connections
async def test_aclose_waits_for_calls_made_without_auto_pipelining(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy_factory: Any,
    agentmem_server: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
) -> None:
    """auto_pipeline=False: calls on the wire when aclose() starts complete (no StoreClosedError,
    writes on the server) before aclose() returns, and no connection of the store stays open."""
    proxy = agentmem_proxy_factory(agentmem_server.url)
    proxy.latency(0.05)
    name = f"{agentmem_prefix}-direct"[-60:].replace(" ", "_")
    store = agentmem_store_factory(url=proxy.url, auto_pipeline=False, client_name=name)
    saves = [asyncio.ensure_future(store.save_context(f"s{i}", {"i": i})) for i in range(20)]
    await asyncio.sleep(0.02)  # every call is on the wire, none answered yet
    await store.aclose()
    assert all(save.done() for save in saves)  # aclose() waited for each of them
    assert [save.exception() for save in saves] == [None] * 20
    keys = KeySchema(agentmem_prefix)
    assert sum([await agentmem_redis.exists(keys.session(f"s{i}").base) for i in range(20)]) == 20
    assert await _clients_named(agentmem_redis, name) == 0
