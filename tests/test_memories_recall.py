"""store.memories' results: exact nearest neighbours, filters inside the query, isolation."""

from __future__ import annotations

import math
import random
from array import array
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from agentmem import AgentMemoryStore
from agentmem.memories.index import info_fields
from agentmem.testing.fixtures import StoreFactory

DIMS = 16


class TableEmbedder:
    """Precomputed vectors: each text's vector is drawn once from a seeded generator."""

    def __init__(self, seed: int = 7) -> None:
        self.random = random.Random(seed)
        self.vectors: dict[str, list[float]] = {}

    def __call__(self, texts: list[str]) -> list[list[float]]:
        for text in texts:
            if text not in self.vectors:
                self.vectors[text] = [self.random.gauss(0, 1) for _ in range(DIMS)]
        return [self.vectors[text] for text in texts]


def _f32(vector: list[float]) -> list[float]:
    return list(array("f", vector))


def cosine_distance(a: list[float], b: list[float]) -> float:
    a, b = _f32(a), _f32(b)
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


@pytest.fixture
def table() -> TableEmbedder:
    return TableEmbedder()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A fake wall clock for created_at: each add is one second after the previous one."""
    now = [1_700_000_000_000]

    def tick() -> int:
        now[0] += 1000
        return now[0]

    monkeypatch.setattr("agentmem.memories.api.now_ms", tick)
    return now


async def _fill(store: AgentMemoryStore, users: list[str], per_user: int) -> dict[str, list[tuple[str, str]]]:
    """Memories "u<i>-<n>" for each user, every third tagged "x"; (id, text) per user."""
    added: dict[str, list[tuple[str, str]]] = {}
    for user in users:
        for n in range(per_user):
            text = f"{user}-{n}"
            memory = await store.memories.add(user, text, tags=["x"] if n % 3 == 0 else ["y"])
            added.setdefault(user, []).append((memory.id, text))
    return added


async def test_per_user_search_equals_brute_force_cosine(
    agentmem_search_store_factory: StoreFactory, table: TableEmbedder
) -> None:
    """Per-user search returns exactly the k nearest by cosine, computed here by brute force."""
    store = agentmem_search_store_factory(embedder=table)
    added = await _fill(store, ["alice", "bob", "carol"], 40)
    for user in ("alice", "bob"):
        for q in range(5):
            query = f"query-{q}"
            (qv,) = table([query])
            expected = sorted(
                (cosine_distance(table.vectors[text], qv), ident) for ident, text in added[user]
            )[:10]
            hits = await store.memories.search(user, query, k=10)
            assert [h.memory.id for h in hits] == [ident for _, ident in expected]
            for hit, (distance, _) in zip(hits, expected, strict=True):
                assert hit.distance == pytest.approx(distance, abs=1e-5)
                assert hit.memory.user_id == user


async def test_filters_are_inside_the_query(
    agentmem_search_store_factory: StoreFactory, table: TableEmbedder, clock: list[int]
) -> None:
    """With a tag filter, k hits come back whenever k match (not k nearest then filtered)."""
    store = agentmem_search_store_factory(embedder=table)
    added = await _fill(store, ["alice"], 60)
    tagged = [(ident, text) for n, (ident, text) in enumerate(added["alice"]) if n % 3 == 0]
    (qv,) = table(["q"])
    expected = sorted((cosine_distance(table.vectors[text], qv), ident) for ident, text in tagged)[:15]
    hits = await store.memories.search("alice", "q", k=15, tags=["x"])
    assert [h.memory.id for h in hits] == [ident for _, ident in expected]
    assert all(h.memory.tags == ("x",) for h in hits)


async def test_time_bounds_and_max_distance(
    agentmem_search_store_factory: StoreFactory, table: TableEmbedder, clock: list[int]
) -> None:
    """since/until bound created_at (inclusive); max_distance drops farther hits."""
    store = agentmem_search_store_factory(embedder=table)
    memories = [await store.memories.add("alice", f"m{n}") for n in range(10)]
    since, until = memories[3].created_at, memories[6].created_at
    hits = await store.memories.search("alice", "q", k=10, since=since, until=until)
    assert sorted(h.memory.id for h in hits) == sorted(m.id for m in memories[3:7])
    everything = await store.memories.search("alice", "q", k=10)
    cutoff = everything[4].distance
    near = await store.memories.search("alice", "q", k=10, max_distance=cutoff)
    assert [h.memory.id for h in near] == [h.memory.id for h in everything[:5]]
    later = await store.memories.search("alice", "q", since=datetime.now(timezone.utc) + timedelta(days=1))
    assert later == []


async def test_time_bounds_finer_than_a_millisecond_stay_inclusive_and_exact(
    agentmem_search_store_factory: StoreFactory, table: TableEmbedder, clock: list[int]
) -> None:
    """A since/until between two milliseconds keeps only memories whose created_at lies inside."""
    store = agentmem_search_store_factory(embedder=table)
    first, second = [await store.memories.add("alice", f"m{n}") for n in range(2)]
    half = timedelta(microseconds=500)
    after_first = await store.memories.search("alice", "q", k=10, since=first.created_at + half)
    assert [h.memory.id for h in after_first] == [second.id]
    before_second = await store.memories.search("alice", "q", k=10, until=second.created_at - half)
    assert [h.memory.id for h in before_second] == [first.id]


async def test_ties_come_newest_first(agentmem_search_store_factory: StoreFactory, clock: list[int]) -> None:
    """Memories at the same distance come back newest first."""
    same = [1.0] + [0.0] * (DIMS - 1)
    store = agentmem_search_store_factory(embedder=lambda texts: [same for _ in texts])
    added = [await store.memories.add("alice", f"m{n}") for n in range(5)]
    hits = await store.memories.search("alice", "q", k=3)
    assert [h.memory.id for h in hits] == [m.id for m in reversed(added)][:3]


UNUSUAL = ["a.b", "a-b", "a%2Eb", "a b", "{x}", "a,b", "a|b", "~", "*", "a\\b", "é", "@u:{a}", "a:b"]


async def test_unusual_ids_and_tags_are_escaped(agentmem_search_store: AgentMemoryStore) -> None:
    """Ids and tags with query syntax in them never see or match another's memories."""
    store = agentmem_search_store
    for user in UNUSUAL:
        await store.memories.add(user, "the same text", tags=[user])
        await store.memories.add(user, f"own text of {user}")
    for user in UNUSUAL:
        hits = await store.memories.search(user, "the same text", k=50)
        assert {h.memory.user_id for h in hits} == {user}
        assert len(hits) == 2
        tagged = await store.memories.search(None, "the same text", k=50, tags=[user])
        assert [(h.memory.user_id, h.memory.tags) for h in tagged] == [(user, (user,))]
        assert {m.user_id for m in await store.memories.list(user)} == {user}


async def test_search_of_every_user(
    agentmem_search_store_factory: StoreFactory, table: TableEmbedder
) -> None:
    """search(None, ...) ranks every user's memories together, exactly."""
    store = agentmem_search_store_factory(embedder=table)
    added = await _fill(store, ["alice", "bob", "carol"], 10)
    everyone = [item for items in added.values() for item in items]
    (qv,) = table(["q"])
    expected = sorted((cosine_distance(table.vectors[text], qv), ident) for ident, text in everyone)[:7]
    hits = await store.memories.search(None, "q", k=7)
    assert [h.memory.id for h in hits] == [ident for _, ident in expected]


async def test_forget_user_erases_memories_and_index_entries(
    agentmem_search_store: AgentMemoryStore, agentmem_search_server: Any
) -> None:
    """forget_user deletes the user's memory hashes (so the index forgets them), not others'."""
    from redis.asyncio import Redis

    store = agentmem_search_store
    for n in range(3):
        await store.memories.add("alice", f"alice {n}")
    await store.memories.add("bob", "bob 0")
    assert await store.forget_user("alice") is True
    assert await store.memories.list("alice") == []
    assert await store.memories.search("alice", "alice 1") == []
    assert len(await store.memories.list("bob")) == 1
    raw = Redis.from_url(agentmem_search_server.url)
    try:
        left = [k async for k in raw.scan_iter(match=store.engine.keys.memory_prefix() + "*")]
        info = await raw.execute_command("FT.INFO", store.engine.keys.memory_index())  # type: ignore[no-untyped-call]
    finally:
        await raw.aclose()
    assert len(left) == 1
    assert b"{m:bob}" in left[0]
    assert int(info_fields(info)["num_docs"]) == 1
    assert await store.forget_user("alice") is False
