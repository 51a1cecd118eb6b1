"""store.memories on a Redis Cluster of search-capable nodes: one index per primary."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.crc import key_slot

from agentmem import AgentMemoryStore
from agentmem.memories.index import info_fields
from agentmem.testing.cluster import ClusterGroup, move_slot
from agentmem.testing.embedders import HashEmbedder

USERS = [f"user-{n}" for n in range(12)]


async def _indexes(url: str, prefix: str) -> list[str]:
    client = Redis.from_url(url)
    try:
        names: Any = await client.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()
    return [n.decode() for n in names if n.decode().startswith(prefix)]


async def _fill(store: AgentMemoryStore) -> None:
    for user in USERS:
        for n in range(3):
            await store.memories.add(user, f"{user} fact {n}", tags=["t"] if n == 0 else [])


async def test_per_user_search_is_complete_on_every_shard(
    agentmem_search_cluster_store: AgentMemoryStore, agentmem_search_cluster: list[str]
) -> None:
    """Each user's search and list return all of that user's memories, whichever shard holds them."""
    store = agentmem_search_cluster_store
    await _fill(store)
    for user in USERS:
        hits = await store.memories.search(user, f"{user} fact 1", k=10)
        assert sorted(h.memory.text for h in hits) == [f"{user} fact {n}" for n in range(3)]
        assert hits[0].memory.text == f"{user} fact 1"
        assert {h.memory.user_id for h in hits} == {user}
        assert len(await store.memories.list(user)) == 3
        tagged = await store.memories.search(user, "fact", tags=["t"])
        assert [h.memory.text for h in tagged] == [f"{user} fact 0"]


async def test_every_primary_has_an_index(
    agentmem_search_cluster_store: AgentMemoryStore, agentmem_search_cluster: list[str]
) -> None:
    """The store creates one index on each primary (12 users spread over the 3 shards)."""
    store = agentmem_search_cluster_store
    await _fill(store)
    prefix = store.config.prefix
    per_node = [await _indexes(url, prefix) for url in agentmem_search_cluster]
    names = {name for names in per_node for name in names}
    assert len(names) == 3
    assert sum(1 for names in per_node if names) == 6  # replicas got FT.CREATE too


async def test_search_of_every_user_fans_out_and_merges(
    agentmem_search_cluster_store: AgentMemoryStore,
) -> None:
    """search(None, ...) reaches every primary: the nearest across all users, merged by distance."""
    store = agentmem_search_cluster_store
    await _fill(store)
    hits = await store.memories.search(None, "fact 0", k=36)
    assert len(hits) == 36
    assert {h.memory.user_id for h in hits} == set(USERS)
    assert [h.distance for h in hits] == sorted(h.distance for h in hits)
    tagged = await store.memories.search(None, "fact", k=100, tags=["t"])
    assert sorted(h.memory.text for h in tagged) == sorted(f"{u} fact 0" for u in USERS)


async def test_forget_user_on_a_cluster(agentmem_search_cluster_store: AgentMemoryStore) -> None:
    """forget_user erases a user's memories on its shard, no one else's."""
    store = agentmem_search_cluster_store
    await _fill(store)
    assert await store.forget_user(USERS[0]) is True
    assert await store.memories.list(USERS[0]) == []
    assert len(await store.memories.list(USERS[1])) == 3


async def test_failover_and_reshard_keep_memories_searchable(
    agentmem_private_search_cluster: ClusterGroup,
) -> None:
    """After a primary fails over, and after a slot moves to another primary, each user's
    search still finds all of its memories (the index is created where it is missing)."""
    group = agentmem_private_search_cluster
    store = AgentMemoryStore.from_url(group.url, prefix="fo", embedder=HashEmbedder(), retry_deadline=10)
    try:
        await _fill(store)
        old = group.kill_primary()
        group.wait_for_promotion(old.port)
        for user in USERS:
            assert len(await store.memories.search(user, "fact", k=10)) == 3
        slot = key_slot(store.engine.keys.memory(USERS[0], "0").encode())
        source = group.primary_for(slot)
        target = next(p for p in group.primary_ports() if p != source)
        assert move_slot(slot, source, target) == 3
        for user in USERS:
            assert len(await store.memories.search(user, "fact", k=10)) == 3
        await store.memories.add(USERS[0], "after the move")
        assert len(await store.memories.list(USERS[0])) == 4
        client = Redis(port=target)
        try:
            names = await _indexes(f"redis://127.0.0.1:{target}", "fo")
            assert names
            info = info_fields(await client.execute_command("FT.INFO", names[0]))  # type: ignore[no-untyped-call]
            assert int(info["num_docs"]) >= 4
        finally:
            await client.aclose()
    finally:
        await store.aclose()


async def test_inspect_lists_memories_on_a_cluster(
    agentmem_search_cluster_store: AgentMemoryStore, agentmem_search_cluster: list[str]
) -> None:
    """agentmem inspect reads a user's memories where they live on a cluster."""
    from redis.cluster import RedisCluster

    from agentmem.inspector import Inspector

    store = agentmem_search_cluster_store
    await _fill(store)
    client = RedisCluster.from_url(agentmem_search_cluster[0])
    try:
        for user in USERS[:4]:
            memories = Inspector(client, store.config.prefix).user(user).as_dict()["memories"]
            assert sorted(m["text"] for m in memories) == [f"{user} fact {n}" for n in range(3)]
    finally:
        client.close()


async def test_a_memory_deleted_while_a_search_runs_is_left_out(
    agentmem_search_cluster_store: AgentMemoryStore, monkeypatch: Any
) -> None:
    """A hit deleted between FT.SEARCH and the read of its fields is left out (not a
    MemoryCorruptedError): on a cluster most hits' fields are read after the search."""
    store = agentmem_search_cluster_store
    await _fill(store)
    memories = store.memories
    complete = memories._complete
    deleted: list[str] = []
    current = [""]

    async def delete_one_first(hits: Any, operation: str) -> Any:
        if hits and not deleted:
            deleted.append(hits[0][0].rsplit(":", 1)[1])
            assert await memories.delete(current[0], deleted[0]) is True
        return await complete(hits, operation)

    monkeypatch.setattr(memories, "_complete", delete_one_first)
    for user in USERS:
        current[0] = user
        deleted.clear()
        hits = await memories.search(user, f"{user} fact 0", k=3)
        assert len(hits) == 2
        assert deleted[0] not in {h.memory.id for h in hits}
        deleted.clear()
        listed = await memories.list(user)
        assert len(listed) == 1
        assert deleted[0] not in {m.id for m in listed}
