"""store.memories' failures: typed errors, nothing half-written, retries never store two."""

from __future__ import annotations

import asyncio
from array import array
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import (
    EmbeddingError,
    IndexMismatchError,
    InvalidArgumentError,
    InvalidKeyError,
    MemoryUnavailableError,
    SearchUnavailableError,
    SerializationError,
)
from agentmem.testing.embedders import HashEmbedder
from agentmem.testing.fixtures import ProxyFactory, StoreFactory
from agentmem.testing.provision import ServerInfo
from agentmem.testing.server import EmbeddedServer


async def _memory_keys(url: str, prefix: str) -> list[bytes]:
    raw = Redis.from_url(url)
    try:
        return [key async for key in raw.scan_iter(match=f"{prefix}:{{m:*")]
    finally:
        await raw.aclose()


async def test_no_embedder_names_the_option(agentmem_search_store_factory: StoreFactory) -> None:
    """Every memories call without embedder= raises InvalidArgumentError naming the option."""
    store = agentmem_search_store_factory(embedder=None)
    for call in (
        store.memories.add("alice", "x"),
        store.memories.search("alice", "x"),
        store.memories.get("alice", "0" * 32),
        store.memories.delete("alice", "0" * 32),
        store.memories.list("alice"),
    ):
        with pytest.raises(InvalidArgumentError, match="embedder="):
            await call


async def test_server_without_query_engine(
    agentmem_private_server: EmbeddedServer, agentmem_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """Without a query engine memories.* raise SearchUnavailableError naming what is needed;
    nothing is written and every other call keeps working."""
    store = agentmem_store_factory(url=agentmem_private_server.url, embedder=HashEmbedder())
    for call in (
        store.memories.add("alice", "my dog is named Rex"),
        store.memories.search("alice", "dog"),
        store.memories.search(None, "dog"),
        store.memories.search("alice", "dog", tags=[]),  # matches nothing, but the engine is checked
        store.memories.list("alice"),
        store.memories.get("alice", "0" * 32),
        store.memories.delete("alice", "0" * 32),
    ):
        with pytest.raises(SearchUnavailableError, match=r"Redis 8.*valkey-search"):
            await call
    assert await _memory_keys(agentmem_private_server.url, agentmem_prefix) == []
    await store.remember("alice", {"dog": "Rex"})
    assert await store.recall("alice") == {"dog": "Rex"}
    assert await store.forget_user("alice") is True


def _broken(kind: str) -> Any:
    """An embedder that works once (the index gets 64 dimensions), then fails as ``kind``."""
    good = HashEmbedder()

    def embed(texts: list[str]) -> Any:
        if not good.calls:
            return good.embed(texts)
        if kind == "raises":
            raise RuntimeError("model offline")
        if kind == "count":
            return [[1.0] * 64] * (len(texts) + 1)
        if kind == "dims":
            return [[1.0] * 32 for _ in texts]
        if kind == "nan":
            return [[float("nan")] * 64 for _ in texts]
        if kind == "nan-float32":
            return [array("f", [float("nan")] * 64) for _ in texts]
        if kind == "zeros-float32":
            return [array("f", [0.0] * 64) for _ in texts]
        if kind == "beyond-float32":  # finite as float64, infinite as FLOAT32
            return [[1e39] + [1.0] * 63 for _ in texts]
        if kind == "below-float32":  # non-zero as float64, all zeros as FLOAT32
            return [[1e-46] * 64 for _ in texts]
        return None

    return embed


@pytest.mark.parametrize(
    "kind",
    [
        "raises",
        "count",
        "dims",
        "nan",
        "nan-float32",
        "zeros-float32",
        "beyond-float32",
        "below-float32",
        "none",
    ],
)
async def test_embedding_errors_write_nothing(
    agentmem_search_store_factory: StoreFactory,
    agentmem_search_server: ServerInfo,
    agentmem_prefix: str,
    kind: str,
) -> None:
    """An embedder that fails, miscounts or changes dimension raises EmbeddingError; nothing written."""
    store = agentmem_search_store_factory(embedder=_broken(kind))
    await store.memories.add("alice", "first")  # the index now has 64 dimensions
    with pytest.raises(EmbeddingError):
        await store.memories.add("alice", "second")
    with pytest.raises(EmbeddingError):
        await store.memories.search("alice", "second")
    assert len(await _memory_keys(agentmem_search_server.url, agentmem_prefix)) == 1


async def test_index_of_other_dimensions_is_not_dropped(
    agentmem_search_store_factory: StoreFactory, agentmem_search_server: ServerInfo, agentmem_prefix: str
) -> None:
    """A store whose embedder has other dimensions than the existing index gets IndexMismatchError."""
    await agentmem_search_store_factory().memories.add("alice", "first")
    other = agentmem_search_store_factory(embedder=HashEmbedder(dims=32))
    with pytest.raises(IndexMismatchError, match=r"FT\.DROPINDEX"):
        await other.memories.add("alice", "second")
    hnsw = agentmem_search_store_factory(memory_index="hnsw")
    with pytest.raises(IndexMismatchError):
        await hnsw.memories.search("alice", "first")
    assert len(await _memory_keys(agentmem_search_server.url, agentmem_prefix)) == 1


async def test_bad_arguments_are_refused_before_anything_is_sent(
    agentmem_search_store: Any, agentmem_search_server: ServerInfo, agentmem_prefix: str
) -> None:
    """Out-of-range arguments raise typed errors and write nothing."""
    memories = agentmem_search_store.memories
    cases: list[tuple[type[Exception], Any]] = [
        (InvalidArgumentError, memories.add("alice", "")),
        (InvalidArgumentError, memories.add("alice", "   \n")),
        (InvalidArgumentError, memories.add("alice", "x" * (64 * 1024 + 1))),
        (InvalidArgumentError, memories.add("alice", "x", tags=["ok", ""])),
        (InvalidArgumentError, memories.add("alice", "x", tags="pets")),
        (SerializationError, memories.add("alice", "x", metadata={"v": float("nan")})),
        (SerializationError, memories.add("alice", "x", metadata={"v": object()})),
        (InvalidKeyError, memories.add("", "x")),
        (InvalidArgumentError, memories.search("alice", " ")),
        (InvalidArgumentError, memories.search("alice", "x", k=0)),
        (InvalidArgumentError, memories.search("alice", "x", k=1001)),
        (InvalidArgumentError, memories.search("alice", "x", since=datetime(2024, 1, 1))),
        (InvalidArgumentError, memories.search("alice", "x", max_distance=-1)),
        (InvalidArgumentError, memories.list("alice", limit=0)),
    ]
    for error, call in cases:
        with pytest.raises(error):
            await call
    assert await _memory_keys(agentmem_search_server.url, agentmem_prefix) == []


async def test_tags_the_index_cannot_match_are_refused(
    agentmem_search_store: Any, agentmem_search_server: ServerInfo, agentmem_prefix: str
) -> None:
    """A tag over 1024 UTF-8 bytes is refused at add (nothing written) and search; one at the
    limit (percent-encoded 3072 bytes) is found by that tag."""
    memories = agentmem_search_store.memories
    with pytest.raises(InvalidArgumentError, match="1024"):
        await memories.add("alice", "x", tags=["t" * 1025])
    assert await _memory_keys(agentmem_search_server.url, agentmem_prefix) == []
    with pytest.raises(InvalidArgumentError, match="1024"):
        await memories.search("alice", "x", tags=["t" * 5000])
    widest = "\u00e9" * 512  # 2 bytes each in UTF-8, 6 characters each percent-encoded
    added = await memories.add("alice", "x", tags=[widest])
    hits = await memories.search("alice", "x", tags=[widest])
    assert [h.memory.id for h in hits] == [added.id]


async def test_retried_add_stores_one_memory(
    agentmem_search_store_factory: StoreFactory,
    agentmem_proxy_factory: ProxyFactory,
    agentmem_search_server: ServerInfo,
    agentmem_prefix: str,
) -> None:
    """The server applies an add, the reply is cut: the retry returns it and stores nothing twice."""
    proxy = agentmem_proxy_factory(agentmem_search_server.url)
    store = agentmem_search_store_factory(url=proxy.url, retries=3, auto_pipeline=False)
    await store.memories.add("alice", "warm up")  # the index exists, its check is cached
    proxy.cut_next_reply()
    memory = await store.memories.add("alice", "my dog is named Rex")
    assert proxy.replies_cut == 1
    assert store.retry_stats.retries >= 1
    assert len(await _memory_keys(agentmem_search_server.url, agentmem_prefix)) == 2
    assert next(m.id for m in await store.memories.list("alice")) == memory.id


async def test_concurrent_adds_of_one_text_store_one(
    agentmem_search_store: Any, agentmem_search_server: ServerInfo, agentmem_prefix: str
) -> None:
    """Many tasks adding the same text at once store one memory and all get it back."""
    results = await asyncio.gather(*(agentmem_search_store.memories.add("alice", "same") for _ in range(20)))
    assert len({m.id for m in results}) == 1
    assert len({m.created_at for m in results}) == 1
    assert len(await _memory_keys(agentmem_search_server.url, agentmem_prefix)) == 1


@pytest.mark.parametrize("fallback", ["raise", "journal"])
async def test_outage_raises_memory_unavailable(
    agentmem_search_store_factory: StoreFactory,
    agentmem_proxy_factory: ProxyFactory,
    agentmem_search_server: ServerInfo,
    agentmem_prefix: str,
    fallback: str,
) -> None:
    """During an outage memories.* raise MemoryUnavailableError, journal or not (never journaled)."""
    proxy = agentmem_proxy_factory(agentmem_search_server.url)
    store = agentmem_search_store_factory(
        url=proxy.url, fallback=fallback, retry_deadline=0.3, socket_timeout=0.2
    )
    await store.memories.add("alice", "before")
    proxy.refuse()
    proxy.reset()
    with pytest.raises(MemoryUnavailableError):
        await store.memories.add("alice", "during")
    with pytest.raises(MemoryUnavailableError):
        await store.memories.search("alice", "during")
    proxy.restore()
    assert len(await _memory_keys(agentmem_search_server.url, agentmem_prefix)) == 1  # "before" only
