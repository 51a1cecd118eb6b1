"""LangGraphStore with index= (LangGraph's IndexConfig) on a search-capable server: ranked
search, fields and put(index=...), filters inside the query, re-embedding, deletes, TTL,
the typed errors, and the same on a Redis Cluster."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import pytest

pytest.importorskip("langgraph.store.base")

from langgraph.store.base import PutOp, SearchItem
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.acl import acl_setuser_args
from agentmem.errors import (
    EmbeddingError,
    IndexMismatchError,
    InvalidArgumentError,
    MemoryPermissionError,
    SearchUnavailableError,
)
from agentmem.integrations.langgraph import LangGraphStore
from agentmem.integrations.langgraph._filters import FIELD, filter_query, matches, value_tags
from agentmem.integrations.langgraph._keys import (
    store_item_key,
    store_search_index,
    store_vector_key,
    store_vector_prefix,
)
from agentmem.testing.embedders import HashEmbedder
from agentmem.testing.fixtures import StoreFactory
from agentmem.testing.provision import ServerInfo

DIMS = 64


def indexed(store: AgentMemoryStore, **config: Any) -> LangGraphStore:
    """A LangGraphStore whose index embeds with the deterministic bag-of-words HashEmbedder."""
    options = config.pop("store_options", {})
    config.setdefault("dims", DIMS)
    config.setdefault("embed", HashEmbedder(DIMS).embed)
    return LangGraphStore(store, index=config, **options)  # type: ignore[arg-type]


async def vector_keys(redis: Redis, store: AgentMemoryStore) -> list[str]:
    prefix = store_vector_prefix(store.config.prefix).replace("{", "\\{").replace("}", "\\}")
    return sorted(key.decode() for key in await redis.keys(prefix + "*") if isinstance(key, bytes))


def scores(found: list[SearchItem]) -> list[float]:
    """The items' scores, each one checked to be a float."""
    out = [item.score for item in found]
    assert all(isinstance(score, float) for score in out)
    return [score for score in out if score is not None]


@pytest.fixture
async def search_redis(agentmem_search_server: ServerInfo) -> Any:
    """A raw client on the search server, to assert what is stored."""
    client = Redis.from_url(agentmem_search_server.url)
    yield client
    await client.aclose()


async def test_ranked_search_puts_the_nearest_first_with_scores(
    agentmem_search_store: AgentMemoryStore, search_redis: Redis
) -> None:
    """query= ranks by cosine similarity: the nearest item first, score = cosine similarity."""
    store = indexed(agentmem_search_store)
    docs = {
        "doc1": "zany zebra xerxes",
        "doc2": "something about dogs",
        "doc3": "text about birds",
        "doc4": "the quick brown fox",
    }
    for key, text in docs.items():
        await store.aput(("test",), key, {"text": text})
    found = await store.asearch(("test",), query="zany zebra xerxes")
    assert found[0].key == "doc1"
    embedder = HashEmbedder(DIMS)
    query = embedder.vector("zany zebra xerxes")
    for item in found:  # "$": the whole value as JSON is embedded
        vector = embedder.vector(json.dumps(item.value, sort_keys=True))
        assert item.score == pytest.approx(sum(a * b for a, b in zip(query, vector, strict=True)), abs=1e-5)
    ranked = scores(found)
    assert ranked == sorted(ranked, reverse=True)
    assert len(found) == 4
    birds = await store.asearch(("test",), query="birds", limit=1)
    assert [item.key for item in birds] == ["doc3"]
    # one vector document per item (fields default to the whole value), and the index exists
    assert len(await vector_keys(search_redis, agentmem_search_store)) == 4
    names = await search_redis.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
    assert store_search_index(agentmem_search_store.config.prefix).encode() in names


async def test_an_empty_query_or_none_is_unranked(agentmem_search_store: AgentMemoryStore) -> None:
    """query="" and query=None return items in key order with score None (LangGraph's stores do the same)."""
    store = indexed(agentmem_search_store)
    await store.aput(("test",), "b", {"text": "beta"})
    await store.aput(("test",), "a", {"text": "alpha"})
    for query in ("", None):
        found = await store.asearch(("test",), query=query)
        assert [(item.key, item.score) for item in found] == [("a", None), ("b", None)]


async def test_one_match_among_many_non_matches_ranks_first(agentmem_search_store: AgentMemoryStore) -> None:
    """One match among 200 non-matches: limit=10 gives 10 distinct items, the match first."""
    store = indexed(agentmem_search_store, fields=["key1"])
    ops = [PutOp(("test", "M"), "M", {"key1": "mmm"})]
    ops += [PutOp(("test", side), f"{side}{i}", {"key1": "no"}) for side in "AZ" for i in range(100)]
    await store.abatch(ops)
    found = await store.asearch(("test",), query="mmm", limit=10)
    assert len(found) == 10
    assert len({item.key for item in found}) == 10
    assert found[0].key == "M"
    assert scores(found)[0] > scores(found)[1]


async def test_odd_queries_still_rank(agentmem_search_store: AgentMemoryStore) -> None:
    """A long query and one of punctuation rank like any other (lower scores), never a query syntax error."""
    store = indexed(agentmem_search_store, fields=["text"])
    await store.aput(("test",), "doc1", {"text": "test document"})
    perfect = scores(await store.asearch(("test",), query="test document"))[0]
    for query in ["foo " * 100, "test!@#$%^&*()", "-@f:{x} | *=>[KNN 1]", "{lgs}"]:
        found = await store.asearch(("test",), query=query)
        assert [item.key for item in found] == ["doc1"]
        assert scores(found)[0] <= perfect


async def test_fields_and_put_index_choose_what_is_embedded(
    agentmem_search_store: AgentMemoryStore, search_redis: Redis
) -> None:
    """fields= picks what is embedded (a vector per path, an item counted once); index=False: nothing."""
    store = indexed(agentmem_search_store, fields=["key0", "key1", "key3"])
    prefix = agentmem_search_store.config.prefix
    await store.aput(("test",), "doc1", {"key1": "xxx", "key2": "yyy", "key3": "zzz"})  # 2 vectors
    await store.aput(("test",), "doc2", {"key0": "uuu", "key1": "vvv", "key2": "www", "key3": "xxx"})  # 3
    assert len(await vector_keys(search_redis, agentmem_search_store)) == 5
    found = await store.asearch(("test",), query="xxx")
    assert len(found) == 2  # each item once, at its nearest vector
    first, second = scores(found)
    assert first == pytest.approx(second, abs=1e-5)
    assert first == pytest.approx(1.0, abs=1e-5)
    found = await store.asearch(("test",), query="uuu")
    assert found[0].key == "doc2"
    assert scores(found)[0] > scores(found)[1]
    unindexed = await store.asearch(("test",), query="www")  # key2 is not a field
    assert all(item.score is not None and item.score < 0.5 for item in unindexed)

    await store.aput(("test",), "doc3", {"key1": "www"}, index=False)
    assert await search_redis.exists(store_vector_key(prefix, "test", "doc3", 1)) == 0
    ranked = await store.asearch(("test",), query="www", limit=10)
    assert "doc3" not in [item.key for item in ranked]
    assert "doc3" in [item.key for item in await store.asearch(("test",), limit=10)]

    await store.aput(("test",), "doc4", {"key2": "www", "key1": "nope"}, index=["key2"])
    ranked = await store.asearch(("test",), query="www", limit=1)
    assert [item.key for item in ranked] == ["doc4"]
    assert await search_redis.hget(store_item_key(prefix, "test", "doc4"), "n") == b"1"


async def test_filters_apply_inside_the_query_and_limit_is_exact(
    agentmem_search_store: AgentMemoryStore,
) -> None:
    """40 items nearer the query fail the filter, 10 farther pass it: limit=5 still returns 5 that pass."""
    store = indexed(agentmem_search_store)
    ops = [
        PutOp(("docs",), f"near{i:02}", {"text": "red apple pie", "color": "red", "n": i}) for i in range(40)
    ]
    ops += [
        PutOp(("docs",), f"far{i:02}", {"text": f"apple {i} car", "color": "green", "n": i})
        for i in range(10)
    ]
    await store.abatch(ops)
    page = await store.asearch(("docs",), query="red apple pie", filter={"color": "green"}, limit=5)
    assert len(page) == 5
    assert all(item.value["color"] == "green" for item in page)
    second = await store.asearch(
        ("docs",), query="red apple pie", filter={"color": "green"}, limit=5, offset=5
    )
    assert len(second) == 5
    assert {i.key for i in page} | {i.key for i in second} == {f"far{i:02}" for i in range(10)}
    assert scores(page + second) == sorted(scores(page + second), reverse=True)
    assert await store.asearch(("docs",), query="apple", filter={"color": "green"}, offset=10) == []


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        ({"color": "red"}, {"doc1", "doc2"}),
        ({"color": {"$eq": "red"}}, {"doc1", "doc2"}),
        ({"color": {"$ne": "red"}}, {"doc3", "doc4", "doc5"}),
        ({"score": {"$gt": 3.5}}, {"doc1", "doc3"}),
        ({"score": {"$gte": 3.5}}, {"doc1", "doc3", "doc4"}),
        ({"score": {"$lt": 3.5}}, {"doc2"}),
        ({"score": {"$lte": 3.5, "$gt": -1}}, {"doc2", "doc4"}),
        ({"score": {"$gte": 4.0}, "color": "green"}, {"doc3"}),
        ({"meta": {"tier": 1}}, {"doc1"}),
        ({"tags": ["a", "b"]}, {"doc2"}),
        ({"color": None}, {"doc5"}),
        ({"score": 3}, {"doc2"}),  # 3 == 3.0
        ({"flag": 1}, set()),  # true is not 1
    ],
)
async def test_each_filter_operator_inside_the_query(
    agentmem_search_store: AgentMemoryStore, filter: dict[str, Any], expected: set[str]
) -> None:
    """$eq $ne $gt $gte $lt $lte, nested dicts, lists and None select the same items ranked as unranked."""
    store = indexed(agentmem_search_store)
    docs: dict[str, dict[str, Any]] = {
        "doc1": {"text": "red apple", "color": "red", "score": 4.5, "meta": {"tier": 1}, "flag": True},
        "doc2": {"text": "red car", "color": "red", "score": 3.0, "tags": ["a", "b"]},
        "doc3": {"text": "green apple", "color": "green", "score": 4.0},
        "doc4": {"text": "blue car", "color": "blue", "score": 3.5, "tags": ["a"]},
        "doc5": {"text": "no color", "score": "high"},
    }
    for key, value in docs.items():
        await store.aput(("test",), key, value)
    ranked = await store.asearch(("test",), query="apple", filter=filter, limit=10)
    assert {item.key for item in ranked} == expected
    unranked = await store.asearch(("test",), filter=filter, limit=10)
    assert {item.key for item in unranked} == expected


async def test_namespace_prefix_is_part_of_the_query(agentmem_search_store: AgentMemoryStore) -> None:
    """A ranked search sees its prefix's namespaces (and deeper ones) only, whatever is nearer elsewhere."""
    store = indexed(agentmem_search_store)
    for namespace in [("a",), ("a", "b"), ("ab",), ("b", "a")]:
        for i in range(3):
            await store.aput(namespace, f"k{i}", {"text": "same words here"})
    found = await store.asearch(("a",), query="same words here", limit=100)
    assert sorted({item.namespace for item in found}) == [("a",), ("a", "b")]
    assert len(found) == 6
    assert len(await store.asearch((), query="same words here", limit=100)) == 12


async def test_an_update_re_embeds_and_a_delete_removes_vectors(
    agentmem_search_store: AgentMemoryStore, search_redis: Redis
) -> None:
    """A new value replaces the item's vectors (fewer texts: the extra ones go); a delete removes all."""
    store = indexed(agentmem_search_store, fields=["a", "b", "c"])
    await store.aput(("t",), "doc1", {"a": "zany zebra", "b": "zebra", "c": "xerxes"})
    await store.aput(("t",), "doc2", {"a": "dogs"})
    initial = (await store.asearch(("t",), query="zany zebra"))[0]
    assert initial.key == "doc1"
    assert initial.score is not None
    assert len(await vector_keys(search_redis, agentmem_search_store)) == 4
    await store.aput(("t",), "doc1", {"a": "new text about dogs"})
    assert len(await vector_keys(search_redis, agentmem_search_store)) == 2
    found = await store.asearch(("t",), query="zany zebra")
    after = dict(zip([item.key for item in found], scores(found), strict=True))
    assert after["doc1"] < initial.score
    assert (await store.asearch(("t",), query="new text about dogs"))[0].key == "doc1"
    # a store without an index still removes the vectors it overwrites (more than it declared)
    await LangGraphStore(agentmem_search_store).aput(("t",), "doc1", {"a": "plain"})
    assert len(await vector_keys(search_redis, agentmem_search_store)) == 1
    await store.adelete(("t",), "doc2")
    assert await vector_keys(search_redis, agentmem_search_store) == []
    assert await store.asearch(("t",), query="dogs") == []


async def test_vectors_share_the_item_ttl_and_its_refresh(
    agentmem_search_store: AgentMemoryStore, search_redis: Redis
) -> None:
    """Vector documents expire with their item; a get or a ranked search renews both."""
    store = indexed(agentmem_search_store, fields=["a", "b"], store_options={"ttl": {"default_ttl": 2}})
    prefix = agentmem_search_store.config.prefix
    item = store_item_key(prefix, "t", "k")
    vectors = [store_vector_key(prefix, "t", "k", n) for n in (1, 2)]
    await store.aput(("t",), "k", {"a": "alpha", "b": "beta"})
    for key in [item, *vectors]:
        assert 115_000 < await search_redis.pttl(key) <= 120_000
    for key in [item, *vectors]:
        await search_redis.pexpire(key, 10_000)
    await store.aget(("t",), "k")
    for key in [item, *vectors]:
        assert await search_redis.pttl(key) > 115_000
    for key in [item, *vectors]:
        await search_redis.pexpire(key, 10_000)
    await store.asearch(("t",), query="alpha")
    for key in [item, *vectors]:
        assert await search_redis.pttl(key) > 115_000
    short = indexed(
        agentmem_search_store, store_options={"ttl": {"default_ttl": 0.02, "refresh_on_read": False}}
    )
    await short.aput(("s",), "gone", {"text": "alpha"})
    await asyncio.sleep(2.0)
    assert await short.asearch(("s",), query="alpha") == []
    assert await search_redis.exists(store_vector_key(prefix, "s", "gone", 1)) == 0


async def test_sync_ranked_search_from_a_thread(agentmem_search_store: AgentMemoryStore) -> None:
    """put and search(query=...) work from a worker thread on an indexed store."""
    store = indexed(agentmem_search_store)

    def in_thread() -> list[SearchItem]:
        store.put(("t",), "a", {"text": "alpha beta"})
        store.put(("t",), "b", {"text": "gamma delta"})
        return store.search(("t",), query="gamma")

    found = await asyncio.to_thread(in_thread)
    assert found[0].key == "b"


async def test_a_server_without_a_query_engine_raises_search_unavailable(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """index= on a server without the module: SearchUnavailableError, nothing written; other calls work."""
    store = indexed(agentmem_store)
    with pytest.raises(SearchUnavailableError, match="query engine"):
        await store.aput(("t",), "k", {"text": "hello"})
    assert await agentmem_redis.exists(store_item_key(agentmem_store.config.prefix, "t", "k")) == 0
    await store.aput(("t",), "k", {"text": "hello"}, index=False)
    assert (await store.aget(("t",), "k")) is not None
    assert [item.key for item in await store.asearch(("t",))] == ["k"]
    with pytest.raises(SearchUnavailableError):
        await store.asearch(("t",), query="hello")


async def test_an_index_of_other_dimensions_is_refused(agentmem_search_store: AgentMemoryStore) -> None:
    """A second store on the prefix with other dims gets IndexMismatchError, and the index is not dropped."""
    await indexed(agentmem_search_store).aput(("t",), "k", {"text": "hello"})
    other = indexed(agentmem_search_store, dims=32, embed=HashEmbedder(32).embed)
    with pytest.raises(IndexMismatchError, match="dims=64"):
        await other.aput(("t",), "k2", {"text": "hello"})
    found = await indexed(agentmem_search_store).asearch(("t",), query="hello")
    assert [item.key for item in found] == ["k"]


async def test_bad_embedder_output_and_bad_config_are_typed(
    agentmem_search_store: AgentMemoryStore, search_redis: Redis
) -> None:
    """Wrong-length vectors: EmbeddingError, nothing written; a bad IndexConfig or filter is refused."""
    store = indexed(agentmem_search_store, embed=lambda texts: [[1.0, 2.0] for _ in texts])
    with pytest.raises(EmbeddingError, match="dimensions"):
        await store.abatch([PutOp(("t",), "ok", {"text": "a"}), PutOp(("t",), "k", {"text": "b"})])
    assert await search_redis.exists(store_item_key(agentmem_search_store.config.prefix, "t", "ok")) == 0
    with pytest.raises(InvalidArgumentError):
        indexed(agentmem_search_store, dims=0)
    with pytest.raises(InvalidArgumentError):
        indexed(agentmem_search_store, distance_type="l2")
    with pytest.raises(InvalidArgumentError, match="index\\['embed'\\]"):
        indexed(agentmem_search_store, embed="nosuchprovider:model")
    good = indexed(agentmem_search_store)
    with pytest.raises(InvalidArgumentError, match="compares numbers"):
        await good.asearch(("t",), query="a", filter={"n": {"$gt": "3"}})
    with pytest.raises(InvalidArgumentError, match="unsupported filter operator"):
        await good.asearch(("t",), query="a", filter={"n": {"$in": [1]}})


async def test_ranked_search_on_a_cluster(agentmem_search_cluster_store: AgentMemoryStore) -> None:
    """On a Redis Cluster the index lives on the {lgs} slot's shard; ranked, filtered search works."""
    store = indexed(agentmem_search_cluster_store)
    for i in range(12):
        await store.aput(("c", str(i % 3)), f"k{i}", {"text": f"word{i} common", "i": i})
    found = await store.asearch(("c",), query="word7 common", filter={"i": {"$gte": 5}}, limit=3)
    assert found[0].key == "k7"
    assert len(found) == 3
    assert all(item.value["i"] >= 5 for item in found)


async def test_many_writers_of_one_indexed_item_leave_one_set_of_vectors(
    agentmem_search_store_factory: StoreFactory, search_redis: Redis
) -> None:
    """Concurrent puts of one item with 1..3 indexed fields leave the stored value's vectors, no orphans."""
    stores = [indexed(agentmem_search_store_factory(), fields=["a", "b", "c"]) for _ in range(2)]
    values = [{k: f"v{i}" for k in "abc"[: 1 + i % 3]} for i in range(31)]
    await asyncio.gather(*(stores[i % 2].aput(("t",), "k", value) for i, value in enumerate(values)))
    prefix = stores[0]._prefix
    count = int(await search_redis.hget(store_item_key(prefix, "t", "k"), "n") or b"-1")
    item = await stores[0].aget(("t",), "k")
    assert item is not None
    assert count == len(item.value)
    assert len(await vector_keys(search_redis, stores[0]._store)) == count


def random_value(rng: random.Random, depth: int = 0) -> Any:
    """A JSON value mixing the cases the rules care about: 1 vs 1.0 vs true, -0.0, null, nesting."""
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return {rng.choice("abc"): random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))}
    if depth < 2 and roll < 0.25:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 2))]
    return rng.choice([None, True, False, 0, 1, 1.0, -1, 2.5, -0.0, 3, 1e300, -1e-300, "x", "1", "y.z", ""])


def random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    field = rng.choice("abcd")
    roll = rng.random()
    if roll < 0.4:
        operator = rng.choice(["$gt", "$gte", "$lt", "$lte"])
        return {field: {operator: rng.choice([0, 1, 2.5, -1, 1e300, -0.0, 0.5])}}
    if roll < 0.6:
        return {field: {rng.choice(["$eq", "$ne"]): random_value(rng, 1)}}
    if roll < 0.7 and depth < 1:
        return {field: random_filter(rng, depth + 1)}
    return {field: random_value(rng, 1)}


async def test_the_index_query_selects_what_python_matching_selects(
    agentmem_search_store: AgentMemoryStore, search_redis: Redis
) -> None:
    """400 random filters over 300 random values: FT.SEARCH on the tags returns exactly the Python matches."""
    prefix = agentmem_search_store.config.prefix
    index = f"{prefix}:filters"
    await search_redis.execute_command(  # type: ignore[no-untyped-call]
        "FT.CREATE",
        index,
        "ON",
        "HASH",
        "PREFIX",
        "1",
        f"{prefix}:fdoc:",
        "SCHEMA",
        FIELD,
        "TAG",
        "CASESENSITIVE",
    )
    rng = random.Random(7)
    values = [{k: random_value(rng) for k in rng.sample("abcd", rng.randint(0, 4))} for _ in range(300)]
    for number, value in enumerate(values):
        await search_redis.hset(
            f"{prefix}:fdoc:{number}", mapping={FIELD: ",".join(value_tags(value)) or "-"}
        )
    nonempty = 0
    for _ in range(400):
        filter = random_filter(rng)
        if rng.random() < 0.3:
            filter.update(random_filter(rng))
        query = " ".join(filter_query(filter))
        reply = await search_redis.execute_command(  # type: ignore[no-untyped-call]
            "FT.SEARCH", index, query, "LIMIT", "0", "1000", "NOCONTENT", "DIALECT", "2"
        )
        ids = reply[1:] if isinstance(reply, list) else [row[b"id"] for row in reply[b"results"]]
        got = {int(key.decode().rsplit(":", 1)[1]) for key in ids}
        expected = {number for number, value in enumerate(values) if matches(value, filter)}
        assert got == expected, filter
        nonempty += bool(expected)
    assert nonempty > 200


async def test_the_langgraph_index_acl_rule_is_enough_and_needed(
    agentmem_search_server: ServerInfo, agentmem_search_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """`agentmem acl --integration langgraph-index` lets a user put and rank; `langgraph` alone: NOPERM."""
    admin = Redis.from_url(agentmem_search_server.url)
    user = agentmem_prefix.replace(":", "-")
    try:
        for name, integration in ((user, "langgraph-index"), (user + "-x", "langgraph")):
            args = acl_setuser_args(agentmem_prefix, name, password="pw", integrations=[integration])
            await admin.execute_command("ACL", "SETUSER", *args)  # type: ignore[no-untyped-call]
        narrow = indexed(agentmem_search_store_factory(username=user + "-x", password="pw", client_name=None))
        with pytest.raises(MemoryPermissionError):
            await narrow.aput(("t",), "k", {"text": "hello there"})
        store = indexed(agentmem_search_store_factory(username=user, password="pw", client_name=None))
        await store.aput(("t",), "k", {"text": "hello there"})
        found = await store.asearch(("t",), query="hello", filter={"text": {"$ne": "x"}})
        assert [item.key for item in found] == ["k"]
        assert (await store.aget(("t",), "k")) is not None
        await store.adelete(("t",), "k")
        assert await narrow.asearch(("t",)) == []  # everything without a query needs no FT.*
    finally:
        await admin.execute_command("ACL", "DELUSER", user, user + "-x")  # type: ignore[no-untyped-call]
        await admin.aclose()


async def test_a_lost_index_is_made_again_over_the_existing_vectors(
    agentmem_search_store: AgentMemoryStore, search_redis: Redis
) -> None:
    """An index gone from under the store (dropped; a reshard to a node without it) is made again by the
    next search, which waits for it to take in the vectors already there."""
    store = indexed(agentmem_search_store)
    await store.abatch([PutOp(("t",), f"k{i}", {"text": f"word{i} shared"}) for i in range(300)])
    name = store_search_index(agentmem_search_store.config.prefix)
    await search_redis.execute_command("FT.DROPINDEX", name)  # type: ignore[no-untyped-call]
    found = await store.asearch(("t",), query="word123 shared", limit=3)
    embedder = HashEmbedder(DIMS)
    query = embedder.vector("word123 shared")
    exact = sorted(
        (
            sum(
                a * b
                for a, b in zip(query, embedder.vector(json.dumps({"text": f"word{i} shared"})), strict=True)
            )
            for i in range(300)
        ),
        reverse=True,
    )
    assert scores(found) == pytest.approx(exact[:3], abs=1e-5)  # all 300 indexed again, exact top 3
    assert name.encode() in await search_redis.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
