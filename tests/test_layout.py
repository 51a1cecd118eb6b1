"""The context hash's layout on the server: a save is one base object and its version,
merged fields carry their own versions, and a replay never undoes a newer write."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, MemoryCorruptedError
from agentmem.keys import KeySchema

META = b"\xff"
BASE = b"\xff\x01"


async def _stored(redis: Redis, prefix: str, session_id: str = "s") -> dict[bytes, bytes]:
    raw: dict[Any, Any] = await redis.hgetall(KeySchema(prefix).session(session_id).context)
    return raw


async def test_save_stores_one_base_object_and_one_version(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """save_context writes two fields, the version and the whole context as one orjson
    object (no per-field versions), with the session TTL."""
    context = {"phone": "138", "order": {"id": 7, "items": [1, 2]}, "turn": 3}
    await agentmem_store.save_context("s", context)
    raw = await _stored(agentmem_redis, agentmem_prefix)
    assert set(raw) == {META, BASE}
    assert orjson.loads(raw[BASE]) == context
    assert int(raw[META]) > 1_600_000_000 * 10**6  # a wall clock in microseconds
    ttl = await agentmem_redis.pttl(KeySchema(agentmem_prefix).session("s").context)
    assert 0 < ttl <= int(agentmem_store.config.ttl * 1000)


async def test_update_adds_a_versioned_field_and_save_clears_it(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """update_context stores its field beside the base with its own version; it wins on
    read; the next save_context leaves only its own base."""
    await agentmem_store.save_context("s", {"intent": "greet", "name": "Li"})
    await agentmem_store.update_context("s", {"intent": "refund"})
    raw = await _stored(agentmem_redis, agentmem_prefix)
    assert set(raw) == {META, BASE, b"intent", b"\xfeintent"}
    assert raw[b"intent"] == b'"refund"'
    assert int(raw[b"\xfeintent"]) >= int(raw[META])
    assert await agentmem_store.load_context("s") == {"intent": "refund", "name": "Li"}
    await agentmem_store.save_context("s", {"intent": "bye"})
    raw = await _stored(agentmem_redis, agentmem_prefix)
    assert set(raw) == {META, BASE}
    assert await agentmem_store.load_context("s") == {"intent": "bye"}


async def test_merge_into_nothing_marks_no_replace(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A context made by update_context alone has no base and version "0" (no replace yet)."""
    await agentmem_store.update_context("s", {"a": 1})
    raw = await _stored(agentmem_redis, agentmem_prefix)
    assert raw[META] == b"0"
    assert BASE not in raw
    assert await agentmem_store.load_context("s") == {"a": 1}


@pytest.mark.parametrize("base", [b"[1, 2]", b"{not json", b'"text"'])
async def test_corrupt_base_raises(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, base: bytes
) -> None:
    """A base that is not one JSON object is corruption, never a silent empty context."""
    await agentmem_store.save_context("s", {"a": 1})
    await agentmem_redis.hset(KeySchema(agentmem_prefix).session("s").context, BASE, base)
    with pytest.raises(MemoryCorruptedError, match="base"):
        await agentmem_store.load_context("s")


async def test_replayed_replace_keeps_newer_merged_fields(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A replace replayed from a journal with an old version keeps fields merged after it
    and drops those merged before it."""
    store = agentmem_store
    await store._write_context("u", "s", [b"old", b"1"], 100, "merge")
    await store._write_context("u", "s", [b"new", b"2"], 300, "merge")
    written = await store._write_context("r", "s", [orjson.dumps({"base": 1})], 200, "replace-if-newer")
    assert written
    raw = await _stored(agentmem_redis, agentmem_prefix)
    assert set(raw) == {META, BASE, b"new", b"\xfenew"}
    assert raw[META] == b"200"
    assert await store.load_context("s") == {"base": 1, "new": 2}


async def test_replay_older_than_the_last_replace_is_dropped(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A merge or replace replayed with a version older than the stored base changes nothing."""
    store = agentmem_store
    await store._write_context("r", "s", [orjson.dumps({"a": 1})], 500, "replace")
    assert not await store._write_context("u", "s", [b"a", b"2"], 400, "merge-if-newer")
    assert not await store._write_context("r", "s", [orjson.dumps({"b": 1})], 400, "replace-if-newer")
    raw = await _stored(agentmem_redis, agentmem_prefix)
    assert set(raw) == {META, BASE}
    assert raw[META] == b"500"
    assert await store.load_context("s") == {"a": 1}
