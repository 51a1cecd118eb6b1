"""Store behaviour against a real server: round trips, merges, history, facts, turns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from stored import stored_fields, version

from agentmem import AgentMemoryStore, InvalidArgumentError, Turn
from agentmem.codec import VERSION_BYTES
from agentmem.keys import KeySchema, escape_glob

StoreFactory = Callable[..., AgentMemoryStore]


async def test_context_round_trip(agentmem_store: AgentMemoryStore) -> None:
    """A saved context loads back equal, nested values included."""
    context = {"phone": "13800138000", "intent": "return_order", "order": {"id": 7, "items": [1, 2]}}
    await agentmem_store.save_context("s1", context)
    assert await agentmem_store.load_context("s1") == context


async def test_missing_context_is_none(agentmem_store: AgentMemoryStore) -> None:
    """No context is None, and an empty saved context is {} (not None)."""
    assert await agentmem_store.load_context("never-saved") is None
    await agentmem_store.save_context("empty", {})
    assert await agentmem_store.load_context("empty") == {}


async def test_save_replaces_the_whole_context(agentmem_store: AgentMemoryStore) -> None:
    """save_context drops fields the new context does not have."""
    await agentmem_store.save_context("s", {"a": 1, "b": 2})
    await agentmem_store.save_context("s", {"c": 3})
    assert await agentmem_store.load_context("s") == {"c": 3}


async def test_update_of_another_field_keeps_the_first(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A second update_context of a different field keeps the first one, on the server."""
    await agentmem_store.update_context("s", {"name": "Li Wei"})
    await agentmem_store.update_context("s", {"phone": "138"})
    raw = await stored_fields(agentmem_redis, KeySchema(agentmem_prefix).session("s").context)
    assert raw == {
        b"name": b'"Li Wei"',
        b"phone": b'"138"',
    }
    assert await agentmem_store.load_context("s") == {"name": "Li Wei", "phone": "138"}


async def test_update_merges_and_creates(agentmem_store: AgentMemoryStore) -> None:
    """update_context creates a missing context, then merges top-level fields."""
    await agentmem_store.update_context("s", {"name": "Li Wei"})
    await agentmem_store.update_context("s", {"phone": "138", "name": "Li"})
    assert await agentmem_store.load_context("s") == {"name": "Li", "phone": "138"}


async def test_history_appends_in_order_and_trims(agentmem_store_factory: StoreFactory) -> None:
    """append_messages returns the new length, keeps the newest max_history, oldest first."""
    store = agentmem_store_factory(max_history=5)
    assert await store.append_messages("s", [{"n": 0}, {"n": 1}]) == 2
    for n in range(2, 8):
        length = await store.append_messages("s", [{"n": n}])
    assert length == 5
    assert [m["n"] for m in await store.load_history("s", last=20)] == [3, 4, 5, 6, 7]
    assert [m["n"] for m in await store.load_history("s", last=2)] == [6, 7]
    assert await store.load_history("nobody") == []


async def test_empty_append_changes_nothing(agentmem_store: AgentMemoryStore) -> None:
    """Appending no messages returns the current length."""
    await agentmem_store.append_messages("s", [{"n": 1}])
    assert await agentmem_store.append_messages("s", []) == 1
    assert len(await agentmem_store.load_history("s")) == 1


@pytest.mark.parametrize("last", [0, -1, 1.5, True, 2**53, 10**17])
async def test_bad_last_is_refused(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, last: Any
) -> None:
    """`last` outside [1, 2**53 - 1] raises InvalidArgumentError (also a ValueError) before any I/O."""
    await agentmem_store.append_messages("s", [{"n": 1}])
    history = KeySchema(agentmem_prefix).session("s").history
    await agentmem_redis.pexpire(history, 5000)
    with pytest.raises(InvalidArgumentError, match="last"):
        await agentmem_store.load_history("s", last=last)
    with pytest.raises(ValueError, match="last"):
        await agentmem_store.load_turn("s", last=last)
    assert 0 < await agentmem_redis.pttl(history) <= 5000  # no read reached the server to slide it


async def test_largest_last_reads_everything(agentmem_store: AgentMemoryStore) -> None:
    """The largest accepted `last` (2**53 - 1) reaches the server intact and returns the whole history."""
    await agentmem_store.append_messages("s", [{"n": i} for i in range(3)])
    assert [m["n"] for m in await agentmem_store.load_history("s", last=2**53 - 1)] == [0, 1, 2]
    assert len((await agentmem_store.load_turn("s", last=10**15)).history) == 3


async def test_facts_merge_and_forget(agentmem_store: AgentMemoryStore) -> None:
    """remember merges facts; recall is {} when none; forget_user erases them."""
    assert await agentmem_store.recall("u") == {}
    await agentmem_store.remember("u", {"preferred_name": "Li"})
    await agentmem_store.remember("u", {"language": "zh"})
    assert await agentmem_store.recall("u") == {"preferred_name": "Li", "language": "zh"}
    assert await agentmem_store.forget_user("u") is True
    assert await agentmem_store.recall("u") == {}
    assert await agentmem_store.forget_user("u") is False


async def test_load_turn_fetches_everything(agentmem_store: AgentMemoryStore) -> None:
    """load_turn returns context, last messages and facts; profile is {} without user_id."""
    await agentmem_store.save_context("s", {"phone": "138"})
    await agentmem_store.append_messages("s", [{"n": i} for i in range(30)])
    await agentmem_store.remember("u", {"vip": True})
    turn = await agentmem_store.load_turn("s", user_id="u", last=3)
    assert turn == Turn(
        context={"phone": "138"}, history=[{"n": 27}, {"n": 28}, {"n": 29}], profile={"vip": True}
    )
    bare = await agentmem_store.load_turn("s", last=1)
    assert bare.profile == {}
    assert bare.history == [{"n": 29}]
    empty = await agentmem_store.load_turn("nobody", user_id="nobody")
    assert empty == Turn(context=None, history=[], profile={})


async def test_load_turn_is_one_round_trip(agentmem_store_factory: StoreFactory, agentmem_proxy: Any) -> None:
    """Behind a proxy adding 150 ms each way, load_turn takes one round trip (< 2 round trips)."""
    store = agentmem_store_factory(url=agentmem_proxy.url, socket_timeout=5.0)
    await store.load_turn("warm", user_id="warm")  # connection made, scripts loaded
    agentmem_proxy.latency(0.15)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await store.load_turn("s", user_id="u", last=5)
    elapsed = loop.time() - started
    assert 0.3 <= elapsed < 0.6, f"load_turn took {elapsed:.3f}s: more than one round trip"


async def test_delete_session_removes_context_and_history(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """delete_session leaves none of the session's data keys (append log included), only its
    tombstone, which expires with the session TTL."""
    await agentmem_store.save_context("s", {"a": 1})
    await agentmem_store.append_messages("s", [{"n": 1}])
    await agentmem_store.save_context("other", {"b": 2})
    await agentmem_store.remember("s", {"c": 3})  # a user with the same id is not a session
    schema = KeySchema(agentmem_prefix)
    assert await agentmem_store.delete_session("s") is True
    left = {k async for k in agentmem_redis.scan_iter(match=escape_glob(agentmem_prefix) + "*")}
    tombstone = schema.session("s").deleted
    assert left == {
        schema.session("other").base.encode(),
        schema.profile("s").encode(),
        tombstone.encode(),
    }
    assert 0 < await agentmem_redis.pttl(tombstone) <= agentmem_store.config.ttl * 1000
    assert await agentmem_store.load_context("s") is None
    assert await agentmem_store.load_history("s") == []
    assert await agentmem_store.delete_session("s") is False


NASTY_IDS = ["a:b", "a*", "a?", "[a]", "{a}", "}{", "a b", "李伟", "%41", "A", "*", "x" * 512]


async def test_nasty_ids_never_collide_or_escape(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Ids with : * ? [ ] { } spaces or non-ASCII are stored apart, and only under the prefix."""
    for index, sid in enumerate(NASTY_IDS):
        await agentmem_store.save_context(sid, {"i": index})
        await agentmem_store.remember(sid, {"i": index})
    for index, sid in enumerate(NASTY_IDS):
        assert await agentmem_store.load_context(sid) == {"i": index}
        assert await agentmem_store.recall(sid) == {"i": index}
    mine = [k async for k in agentmem_redis.scan_iter(match=escape_glob(agentmem_prefix) + "*")]
    assert len(mine) == 2 * len(NASTY_IDS)
    assert all(k.decode().startswith(agentmem_prefix + ":{") for k in mine)
    # a glob-looking id deletes only its own keys
    assert await agentmem_store.delete_session("*") is True
    assert await agentmem_store.load_context("a*") == {"i": 1}


async def test_caller_owned_client_is_not_closed(agentmem_redis: Redis, agentmem_prefix: str) -> None:
    """A store over the caller's client leaves it open after aclose()."""
    async with AgentMemoryStore(agentmem_redis, prefix=agentmem_prefix) as store:
        await store.save_context("s", {"a": 1})
    assert await agentmem_redis.ping() is True
    async with AgentMemoryStore(agentmem_redis, prefix=agentmem_prefix) as again:
        assert await again.load_context("s") == {"a": 1}
    assert await agentmem_redis.ping() is True


async def test_decode_responses_client_is_refused(agentmem_server: Any) -> None:
    """A client that decodes replies to str is rejected at construction with a clear error."""
    client = Redis.from_url(agentmem_server.url, decode_responses=True)
    try:
        with pytest.raises(ValueError, match="decode_responses"):
            AgentMemoryStore(client)
    finally:
        await client.aclose()


async def test_stores_with_different_prefixes_are_isolated(
    agentmem_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """Two prefixes on one server never see each other's sessions."""
    one = agentmem_store_factory(prefix=agentmem_prefix + "-one")
    two = agentmem_store_factory(prefix=agentmem_prefix + "-two")
    await one.save_context("s", {"who": 1})
    assert await two.load_context("s") is None
    assert KeySchema(one.config.prefix).match_all() != KeySchema(two.config.prefix).match_all()
    await one.delete_session("s")


async def test_bookkeeping_fields_never_collide_with_user_keys(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Versions are an 8-byte prefix whose first byte is 0, which no orjson value starts
    with, and an older layout's bookkeeping fields start with 0xFF or 0xFE, which no UTF-8
    key can produce: a key like a soft hyphen (U+00AD, UTF-8 C2 AD) keeps its own value
    and version, and a value is never taken for bookkeeping."""
    keys = KeySchema(agentmem_prefix).session("s")
    await agentmem_store.save_context("s", {"\u00ad": "soft hyphen", "a": 1})
    await agentmem_store.update_context("s", {"\u00ad": "updated"})
    raw: dict[Any, Any] = await agentmem_redis.hgetall(keys.context)
    assert set(raw) == {"\u00ad".encode()}
    assert raw["\u00ad".encode()][VERSION_BYTES:] == b'"updated"'
    base = await agentmem_redis.get(keys.base)
    assert base is not None
    saved, updated = version(base), version(raw["\u00ad".encode()])
    assert saved is not None
    assert updated is not None
    assert updated > saved  # its version moved, the save's did not
    assert await agentmem_store.load_context("s") == {"\u00ad": "updated", "a": 1}
    await agentmem_store.save_context("s", {"c": 3})
    assert await agentmem_store.load_context("s") == {"c": 3}
