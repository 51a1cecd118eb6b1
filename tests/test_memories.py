"""store.memories on one search-capable server: add, search, get, delete, list, forget."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

from agentmem import AgentMemoryStore, MemoryHit
from agentmem.memories.index import info_fields, shape_of
from agentmem.testing.provision import ServerInfo


async def _raw(server: ServerInfo) -> Redis:
    return Redis.from_url(server.url)


async def test_add_then_search_returns_the_nearest_first(agentmem_search_store: AgentMemoryStore) -> None:
    """A search returns memories nearest first, with their text, tags and metadata."""
    store = agentmem_search_store
    rex = await store.memories.add("alice", "my dog is named Rex", tags=["pets"], metadata={"source": "chat"})
    await store.memories.add("alice", "I live in Paris")
    hits = await store.memories.search("alice", "dog named Rex", k=5)
    assert [h.memory.text for h in hits] == ["my dog is named Rex", "I live in Paris"]
    assert isinstance(hits[0], MemoryHit)
    assert hits[0].distance < hits[1].distance
    assert hits[0].memory == rex
    assert rex.tags == ("pets",)
    assert rex.metadata == {"source": "chat"}
    assert rex.created_at.tzinfo is not None


async def test_add_writes_one_hash_with_every_indexed_field(
    agentmem_search_store: AgentMemoryStore, agentmem_search_server: ServerInfo
) -> None:
    """The memory is one hash under the user's hash tag holding every field, vector as FLOAT32."""
    store = agentmem_search_store
    memory = await store.memories.add("alice", "my dog is named Rex")
    key = store.engine.keys.memory("alice", memory.id)
    assert "{m:alice}" in key
    raw = await _raw(agentmem_search_server)
    try:
        fields = await raw.hgetall(key)
    finally:
        await raw.aclose()
    assert set(fields) == {b"user", b"text", b"tags", b"meta", b"created", b"vec"}
    assert len(fields[b"vec"]) == 64 * 4
    assert fields[b"tags"] == b""


async def test_same_text_is_stored_once(
    agentmem_search_store: AgentMemoryStore, agentmem_search_server: ServerInfo
) -> None:
    """The same whitespace-normalized text for one user gives back the memory already stored."""
    store = agentmem_search_store
    first = await store.memories.add("alice", "my dog  is named Rex ", tags=["a"])
    again = await store.memories.add("alice", "  my dog is\tnamed Rex", tags=["b"])
    assert again == first
    assert [m.id for m in await store.memories.list("alice")] == [first.id]


async def test_get_delete_list(agentmem_search_store: AgentMemoryStore) -> None:
    """get finds by id, delete removes (True then False), list is newest first."""
    store = agentmem_search_store
    one = await store.memories.add("alice", "one")
    two = await store.memories.add("alice", "two")
    assert await store.memories.get("alice", one.id) == one
    assert await store.memories.get("bob", one.id) is None
    assert [m.id for m in await store.memories.list("alice")] == [two.id, one.id]
    assert await store.memories.delete("alice", one.id) is True
    assert await store.memories.delete("alice", one.id) is False
    assert await store.memories.get("alice", one.id) is None
    assert [m.id for m in await store.memories.list("alice", limit=1)] == [two.id]


async def test_user_without_memories_gets_nothing(agentmem_search_store: AgentMemoryStore) -> None:
    """A search or list for a user with no memories (no index yet, too) is empty."""
    store = agentmem_search_store
    assert await store.memories.list("nobody") == []
    assert await store.memories.search("nobody", "anything") == []
    await store.memories.add("alice", "something")
    assert await store.memories.search("nobody", "something") == []


async def test_index_creation_is_safe_when_stores_start_at_once(
    agentmem_search_store_factory: Any, agentmem_search_server: ServerInfo, agentmem_prefix: str
) -> None:
    """Several stores of one prefix adding at once create one index; every add lands in it."""
    stores = [agentmem_search_store_factory() for _ in range(4)]
    await asyncio.gather(*(s.memories.add(f"user-{i}", f"text {i}") for i, s in enumerate(stores)))
    raw = await _raw(agentmem_search_server)
    try:
        names = await raw.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
        info = info_fields(await raw.execute_command("FT.INFO", stores[0].engine.keys.memory_index()))  # type: ignore[no-untyped-call]
    finally:
        await raw.aclose()
    assert [n for n in names if n.decode().startswith(agentmem_prefix)] == [
        stores[0].engine.keys.memory_index().encode()
    ]
    assert int(info["num_docs"]) == 4
    for i, store in enumerate(stores):
        assert len(await store.memories.search(f"user-{i}", "text")) == 1


async def test_hnsw_option_builds_an_hnsw_index(
    agentmem_search_store_factory: Any, agentmem_search_server: ServerInfo
) -> None:
    """memory_index="hnsw" builds the vector field as HNSW; searches work on it."""
    store = agentmem_search_store_factory(memory_index="hnsw")
    await store.memories.add("alice", "my dog is named Rex")
    raw = await _raw(agentmem_search_server)
    try:
        info = await raw.execute_command("FT.INFO", store.engine.keys.memory_index())  # type: ignore[no-untyped-call]
    finally:
        await raw.aclose()
    shape = shape_of(info)
    assert shape is not None
    assert shape.algorithm == "HNSW"
    assert [h.memory.text for h in await store.memories.search("alice", "dog")] == ["my dog is named Rex"]
