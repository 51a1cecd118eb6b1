"""LangGraphStore (a LangGraph BaseStore) on a real server: namespaces, search, filters,
paging, TTL, corruption, concurrent writers, bad input and faults."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langgraph.store.base")

from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.errors import (
    ContextTooLargeError,
    InvalidArgumentError,
    MemoryCorruptedError,
    SerializationError,
)
from agentmem.integrations.langgraph import LangGraphStore
from agentmem.integrations.langgraph._keys import store_index_key, store_item_key
from agentmem.testing import EmbeddedServer, kill_connections
from agentmem.testing.fixtures import StoreFactory


async def keys_of(store: LangGraphStore) -> list[bytes]:
    keys = await store._store.client.keys(store._prefix + ":{lgs}:*")
    return sorted(key for key in keys if isinstance(key, bytes))


async def test_put_get_delete_round_trip_with_timestamps(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """A put is one hash plus an index member; an update keeps created_at; a delete removes both."""
    store = LangGraphStore(agentmem_store)
    await store.aput(("users", "u1"), "prefs", {"color": "blue"})
    first = await store.aget(("users", "u1"), "prefs")
    assert first is not None
    assert first.value == {"color": "blue"}
    await asyncio.sleep(0.01)
    await store.aput(("users", "u1"), "prefs", {"color": "red"})
    second = await store.aget(("users", "u1"), "prefs")
    assert second is not None
    assert second.value == {"color": "red"}
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    prefix = agentmem_store.config.prefix
    item = store_item_key(prefix, "users.u1", "prefs")
    assert await agentmem_redis.hget(item, "v") == b'{"color":"red"}'
    assert await agentmem_redis.zrange(store_index_key(prefix), 0, -1) == [b"users.u1\0prefs"]
    assert await agentmem_redis.pttl(item) == -1  # no TTL configured: never expires
    await store.adelete(("users", "u1"), "prefs")
    assert await store.aget(("users", "u1"), "prefs") is None
    assert await keys_of(store) == []


async def test_search_by_namespace_prefix_over_three_labels(agentmem_store: AgentMemoryStore) -> None:
    """A prefix matches its own namespace and deeper ones, never a label that merely starts alike."""
    store = LangGraphStore(agentmem_store)
    for namespace in [("a",), ("a", "b"), ("a", "b", "c"), ("ab",), ("a-b",), ("b", "a")]:
        await store.aput(namespace, "k", {"ns": list(namespace)})
    found = await store.asearch(("a",), limit=100)
    assert [item.namespace for item in found] == [("a",), ("a", "b"), ("a", "b", "c")]
    deep = await store.asearch(("a", "b", "c"))
    assert [item.value for item in deep] == [{"ns": ["a", "b", "c"]}]
    everything = await store.asearch((), limit=100)
    assert len(everything) == 6


async def test_search_filters_and_pages_in_namespace_key_order(agentmem_store: AgentMemoryStore) -> None:
    """filter (equality, nested, $gt/$lte/$ne) picks items; offset/limit page the matches in key order."""
    store = LangGraphStore(agentmem_store)
    for i in range(12):
        await store.aput(
            ("docs",), f"d{i:02}", {"n": i, "kind": "even" if i % 2 == 0 else "odd", "m": {"x": i % 3}}
        )
    evens = await store.asearch(("docs",), filter={"kind": "even"}, limit=3, offset=1)
    assert [item.key for item in evens] == ["d02", "d04", "d06"]
    ranged = await store.asearch(("docs",), filter={"n": {"$gt": 3, "$lte": 6}})
    assert [item.value["n"] for item in ranged] == [4, 5, 6]
    nested = await store.asearch(("docs",), filter={"m": {"x": 0}, "kind": {"$ne": "odd"}}, limit=100)
    assert [item.value["n"] for item in nested] == [0, 6]
    page = await store.asearch(("docs",), limit=5, offset=10)
    assert [item.key for item in page] == ["d10", "d11"]


async def test_search_walks_past_one_scan_batch(agentmem_store: AgentMemoryStore) -> None:
    """A filter whose matches lie beyond the first 200 index members still finds them."""
    store = LangGraphStore(agentmem_store)
    await store.abatch([PutOp(("bulk",), f"k{i:04}", {"hit": i >= 450}) for i in range(500)])
    hits = await store.asearch(("bulk",), filter={"hit": True}, limit=100)
    assert [item.key for item in hits] == [f"k{i:04}" for i in range(450, 500)]


async def test_query_without_a_vector_index_raises(agentmem_store: AgentMemoryStore) -> None:
    """search(query=...) raises InvalidArgumentError: there is no index to rank by."""
    store = LangGraphStore(agentmem_store)
    await store.aput(("docs",), "a", {"text": "hello"})
    with pytest.raises(InvalidArgumentError, match="no vector index"):
        await store.asearch(("docs",), query="hello")


async def test_list_namespaces_with_conditions_depth_and_paging(agentmem_store: AgentMemoryStore) -> None:
    """Prefix/suffix conditions (with * wildcards), max_depth, limit and offset, sorted."""
    store = LangGraphStore(agentmem_store)
    for namespace in [("a", "x", "1"), ("a", "y", "1"), ("a", "y", "2"), ("b", "x", "1")]:
        await store.aput(namespace, "k", {})
    assert await store.alist_namespaces() == [
        ("a", "x", "1"),
        ("a", "y", "1"),
        ("a", "y", "2"),
        ("b", "x", "1"),
    ]
    assert await store.alist_namespaces(prefix=("a",), max_depth=2) == [("a", "x"), ("a", "y")]
    assert await store.alist_namespaces(suffix=("1",), prefix=("*", "x")) == [
        ("a", "x", "1"),
        ("b", "x", "1"),
    ]
    assert await store.alist_namespaces(limit=2, offset=1) == [("a", "y", "1"), ("a", "y", "2")]


async def test_ttl_in_minutes_with_refresh_on_read(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """default_ttl (minutes) sets the item's expiry; a read renews it unless refresh_ttl=False."""
    store = LangGraphStore(agentmem_store, ttl={"default_ttl": 2, "refresh_on_read": True})
    await store.aput(("t",), "k", {"v": 1})
    await store.aput(("t",), "own", {"v": 2}, ttl=10)
    item = store_item_key(agentmem_store.config.prefix, "t", "k")
    assert 115_000 < await agentmem_redis.pttl(item) <= 120_000
    assert await agentmem_redis.pttl(store_item_key(agentmem_store.config.prefix, "t", "own")) > 595_000
    await agentmem_redis.pexpire(item, 10_000)
    await store.aget(("t",), "k", refresh_ttl=False)
    assert await agentmem_redis.pttl(item) <= 10_000
    await store.aget(("t",), "k")
    assert await agentmem_redis.pttl(item) > 115_000
    await agentmem_redis.pexpire(item, 10_000)
    await store.asearch(("t",))
    assert await agentmem_redis.pttl(item) > 115_000


async def test_search_with_refresh_ttl_false_refreshes_nothing(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """asearch(refresh_ttl=False) leaves every found item's TTL as it was (refresh_on_read on)."""
    store = LangGraphStore(agentmem_store, ttl={"default_ttl": 2, "refresh_on_read": True})
    items = [store_item_key(agentmem_store.config.prefix, "t", k) for k in ("a", "b")]
    for key in ("a", "b"):
        await store.aput(("t",), key, {"v": key})
    for item in items:
        await agentmem_redis.pexpire(item, 10_000)
    found = await store.asearch(("t",), refresh_ttl=False)
    assert sorted(i.key for i in found) == ["a", "b"]
    for item in items:
        assert 0 < await agentmem_redis.pttl(item) <= 10_000


async def test_an_expired_item_is_gone_from_every_read(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """After its TTL an item is absent from get, search and list_namespaces; its index member is dropped."""
    store = LangGraphStore(agentmem_store, ttl={"default_ttl": 0.02, "refresh_on_read": False})  # 1.2 s
    await store.aput(("short",), "k", {"v": 1})
    await store.aput(("long",), "k", {"v": 1}, ttl=None)
    await asyncio.sleep(2.0)
    assert await store.aget(("short",), "k") is None
    assert await store.asearch(("short",)) == []
    assert await store.alist_namespaces() == [("long",)]
    index = store_index_key(agentmem_store.config.prefix)
    assert await agentmem_redis.zrange(index, 0, -1) == [b"long\0k"]


async def test_a_corrupt_item_raises_memory_corrupted(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """An item whose stored JSON does not parse raises MemoryCorruptedError on get and search."""
    store = LangGraphStore(agentmem_store)
    await store.aput(("docs",), "bad", {"v": 1})
    await agentmem_redis.hset(store_item_key(agentmem_store.config.prefix, "docs", "bad"), "v", b"{not json")
    with pytest.raises(MemoryCorruptedError):
        await store.aget(("docs",), "bad")
    with pytest.raises(MemoryCorruptedError):
        await store.asearch(("docs",))


async def test_concurrent_writers_lose_nothing(agentmem_store_factory: StoreFactory) -> None:
    """Two stores putting 100 items concurrently into one namespace: all 100 are found."""
    stores = [LangGraphStore(agentmem_store_factory()) for _ in range(2)]
    await asyncio.gather(*(stores[i % 2].aput(("shared",), f"k{i:03}", {"i": i}) for i in range(100)))
    found = await stores[0].asearch(("shared",), limit=1000)
    assert sorted(item.value["i"] for item in found) == list(range(100))
    assert len(await keys_of(stores[0])) == 101  # 100 items + the index


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (PutOp(("docs",), "k", {"x": object()}), SerializationError),
        (PutOp(("docs",), "k", {"x": [1.0, float("nan")]}), SerializationError),
        (PutOp(("docs",), "k", {"x": "y" * 5000}), ContextTooLargeError),
        (PutOp(("docs",), "k\0", {}), InvalidArgumentError),
        (PutOp(("docs",), "k", {}, ttl=-1), InvalidArgumentError),
        (PutOp(("do.cs",), "k", {}), InvalidNamespaceError),
        (PutOp((), "k", {}), InvalidArgumentError),
    ],
)
async def test_a_bad_operation_fails_the_batch_with_nothing_written(
    agentmem_store_factory: StoreFactory, bad: PutOp, error: type[Exception]
) -> None:
    """A batch holding one bad put raises its typed error before anything is sent."""
    store = LangGraphStore(agentmem_store_factory(max_value_bytes=1000))
    with pytest.raises(error):
        await store.abatch([PutOp(("docs",), "good", {"v": 1}), bad])
    assert await keys_of(store) == []


def test_a_bad_ttl_config_is_refused(agentmem_store: AgentMemoryStore) -> None:
    """An unknown TTLConfig key or a non-positive default_ttl raises at construction."""
    with pytest.raises(InvalidArgumentError):
        LangGraphStore(agentmem_store, ttl={"default_tll": 5})  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        LangGraphStore(agentmem_store, ttl={"default_ttl": 0})


async def test_batch_reads_see_earlier_writes(agentmem_store: AgentMemoryStore) -> None:
    """abatch applies operations in order: a get after a put in one batch sees it."""
    store = LangGraphStore(agentmem_store)
    results: list[Any] = await store.abatch(
        [GetOp(("n",), "k"), PutOp(("n",), "k", {"v": 1}), GetOp(("n",), "k"), PutOp(("n",), "k", None)]
    )
    assert results[0] is None
    assert results[2].value == {"v": 1}
    assert await store.aget(("n",), "k") is None


async def test_a_killed_connection_is_retried(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """Killing the store's connections between calls costs nothing: reads and writes go on."""
    store = LangGraphStore(agentmem_store)
    await store.aput(("n",), "k", {"v": 1})
    name = agentmem_store.config.client_name
    assert name is not None
    assert await kill_connections(agentmem_redis, name) >= 1
    item = await store.aget(("n",), "k")
    assert item is not None
    assert item.value == {"v": 1}
    await kill_connections(agentmem_redis, name)
    await store.aput(("n",), "k2", {"v": 2})
    assert len(await store.asearch(("n",))) == 2


@pytest.mark.slow
async def test_items_survive_a_restart_of_a_persistent_server(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory
) -> None:
    """The same LangGraphStore object reads its items again after the server restarts."""
    server: EmbeddedServer = agentmem_server_factory(persistence=True, appendfsync="always")
    store = LangGraphStore(agentmem_store_factory(url=server.url))
    await store.aput(("n",), "k", {"v": 1})
    server.restart()
    item = await store.aget(("n",), "k")
    assert item is not None
    assert item.value == {"v": 1}
    await store.aput(("n",), "k2", {"v": 2})
    assert await store.alist_namespaces() == [("n",)]
