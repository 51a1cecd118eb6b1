"""Bad input and broken data give typed errors, and nothing is half-written."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from agentmem import (
    AgentMemoryError,
    AgentMemoryStore,
    ContextTooLargeError,
    InvalidKeyError,
    MemoryCorruptedError,
    SerializationError,
    StoreClosedError,
)
from agentmem.keys import KeySchema, escape_glob
from agentmem.scripts import APPEND, READ_HASH, READ_SESSION, WRITE_CONTEXT, WRITE_FACTS, Script

StoreFactory = Callable[..., AgentMemoryStore]


async def _keys(redis: Redis, prefix: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=escape_glob(prefix) + "*")]


class Opaque:
    pass


@pytest.mark.parametrize(
    "bad",
    [
        {"x": Opaque()},
        {"x": {1, 2}},
        {"x": b"bytes"},
        {"nested": {1: "non-str key"}},
        {1: "top-level int key"},
    ],
)
async def test_unserializable_context_writes_nothing(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, bad: Any
) -> None:
    """A value orjson cannot encode raises SerializationError before any I/O."""
    await agentmem_store.save_context("s", {"kept": 1})
    with pytest.raises(SerializationError):
        await agentmem_store.save_context("s", bad)
    with pytest.raises(SerializationError):
        await agentmem_store.update_context("s", {"ok": 1, **bad})
    with pytest.raises(SerializationError):
        await agentmem_store.append_messages("s", [{"ok": 1}, bad])
    with pytest.raises(SerializationError):
        await agentmem_store.remember("u", bad)
    assert await agentmem_store.load_context("s") == {"kept": 1}
    assert await agentmem_store.load_history("s") == []
    assert await agentmem_store.recall("u") == {}


async def test_serialization_error_is_also_a_type_error(agentmem_store: AgentMemoryStore) -> None:
    """Callers catching TypeError keep working; datetime is supported by orjson."""
    await agentmem_store.save_context("s", {"when": datetime(2026, 1, 1)})
    assert await agentmem_store.load_context("s") == {"when": "2026-01-01T00:00:00"}
    with pytest.raises(TypeError):
        await agentmem_store.save_context("s", {"x": Opaque()})


@pytest.mark.parametrize("bad", ["not a mapping", [("a", 1)], None])
async def test_non_mapping_context_is_refused(agentmem_store: AgentMemoryStore, bad: Any) -> None:
    """A context that is not a mapping raises SerializationError."""
    with pytest.raises(SerializationError, match="mapping"):
        await agentmem_store.save_context("s", bad)


@pytest.mark.parametrize("bad", [{"role": "user"}, "hello", [["not", "a", "dict"]]])
async def test_messages_must_be_a_list_of_mappings(agentmem_store: AgentMemoryStore, bad: Any) -> None:
    """append_messages refuses a lone message, a string, or non-mapping items."""
    with pytest.raises(SerializationError):
        await agentmem_store.append_messages("s", bad)
    assert await agentmem_store.load_history("s") == []


async def test_oversized_writes_write_nothing(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Each call's write is checked against max_value_bytes; over it, nothing is written."""
    store = agentmem_store_factory(max_value_bytes=1000)
    await store.save_context("s", {"small": "x" * 100})
    big = "x" * 1000
    with pytest.raises(ContextTooLargeError, match="max_value_bytes=1000"):
        await store.save_context("s", {"big": big})
    with pytest.raises(ContextTooLargeError):
        await store.update_context("s", {"big": big})
    with pytest.raises(ContextTooLargeError):
        await store.append_messages("s", [{"n": "x" * 400}, {"n": "x" * 400}, {"n": "x" * 400}])
    with pytest.raises(ContextTooLargeError):
        await store.remember("u", {"big": big})
    assert await store.load_context("s") == {"small": "x" * 100}
    assert await store.load_history("s") == []
    assert await store.recall("u") == {}
    # the limit is per call: many small updates may add up past it
    for i in range(15):
        await store.update_context("s", {f"f{i}": "y" * 100})
    assert len(await store.load_context("s") or {}) == 16


async def test_oversized_is_a_value_error(agentmem_store_factory: StoreFactory) -> None:
    """ContextTooLargeError is also a ValueError."""
    with pytest.raises(ValueError, match="max_value_bytes"):
        await agentmem_store_factory(max_value_bytes=10).save_context("s", {"k": "0123456789"})


@pytest.mark.parametrize("bad", ["", "x" * 513, 7, None])
async def test_invalid_ids_send_nothing(agentmem_store: AgentMemoryStore, bad: Any) -> None:
    """Every method refuses an invalid id with InvalidKeyError."""
    for call in (
        agentmem_store.save_context(bad, {}),
        agentmem_store.update_context(bad, {}),
        agentmem_store.load_context(bad),
        agentmem_store.append_messages(bad, []),
        agentmem_store.load_history(bad),
        agentmem_store.load_turn(bad),
        agentmem_store.load_turn("ok", user_id=bad if bad is not None else ""),
        agentmem_store.delete_session(bad),
        agentmem_store.remember(bad, {}),
        agentmem_store.recall(bad),
        agentmem_store.forget_user(bad),
    ):
        with pytest.raises(InvalidKeyError):
            await call


async def test_corrupted_context_is_not_none(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Undecodable stored bytes raise MemoryCorruptedError, never look like 'no memory'."""
    keys = KeySchema(agentmem_prefix).session("s")
    await agentmem_redis.hset(keys.context, b"phone", b"\x00not json{")
    with pytest.raises(MemoryCorruptedError, match="phone"):
        await agentmem_store.load_context("s")
    with pytest.raises(MemoryCorruptedError):
        await agentmem_store.load_turn("s")
    await agentmem_redis.hset(keys.context, b"\xc3\x28", b"1")  # a field name that is not UTF-8
    await agentmem_redis.hdel(keys.context, b"phone")
    with pytest.raises(MemoryCorruptedError):
        await agentmem_store.load_context("s")


async def test_corrupted_history_and_facts(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Broken history items and facts raise MemoryCorruptedError."""
    schema = KeySchema(agentmem_prefix)
    await agentmem_redis.rpush(schema.session("s").history, b"{truncated")
    with pytest.raises(MemoryCorruptedError):
        await agentmem_store.load_history("s")
    await agentmem_redis.rpush(schema.session("t").history, b"[1, 2]")
    with pytest.raises(MemoryCorruptedError, match="not an object"):
        await agentmem_store.load_history("t")
    await agentmem_redis.hset(schema.profile("u"), b"name", b"nope")
    with pytest.raises(MemoryCorruptedError):
        await agentmem_store.recall("u")


async def test_wrong_type_is_an_agent_memory_error(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A key of the wrong type (WRONGTYPE) raises AgentMemoryError chained to redis-py's error."""
    await agentmem_redis.set(KeySchema(agentmem_prefix).session("s").context, b"a string")
    with pytest.raises(AgentMemoryError, match="WRONGTYPE") as info:
        await agentmem_store.load_context("s")
    assert type(info.value) is AgentMemoryError
    assert info.value.__cause__ is not None
    stats = agentmem_store.retry_stats
    assert (stats.attempts, stats.retries) == (1, 0)  # not an outage: never retried
    assert agentmem_store.breaker.consecutive_failures == 0
    with pytest.raises(AgentMemoryError, match="WRONGTYPE"):
        await agentmem_store.update_context("s", {"a": 1})
    assert (stats.attempts, stats.retries) == (2, 0)
    assert await agentmem_redis.get(KeySchema(agentmem_prefix).session("s").context) == b"a string"


async def test_closed_store_raises_and_sends_nothing(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """After aclose() every call raises StoreClosedError, reconnects nothing and writes nothing."""
    name = f"{agentmem_prefix}-closed"[-60:]
    store = agentmem_store_factory(client_name=name)
    await store.save_context("s", {"a": 1})
    await store.remember("u", {"b": 2})
    before = {key: await agentmem_redis.dump(key) for key in await _keys(agentmem_redis, agentmem_prefix)}
    await store.aclose()
    attempts = store.retry_stats.attempts
    for call in (
        store.save_context("s", {"a": 2}),
        store.update_context("s", {"c": 3}),
        store.load_context("s"),
        store.append_messages("s", [{"n": 1}]),
        store.load_history("s"),
        store.load_turn("s", user_id="u"),
        store.delete_session("s"),
        store.remember("u", {"b": 3}),
        store.recall("u"),
        store.forget_user("u"),
        store.health(),
    ):
        with pytest.raises(StoreClosedError, match="closed"):
            await call
    assert store.retry_stats.attempts == attempts
    assert {
        key: await agentmem_redis.dump(key) for key in await _keys(agentmem_redis, agentmem_prefix)
    } == before
    clients = [c for c in await agentmem_redis.client_list() if c.get("name") == name]
    assert clients == []  # nothing reconnected


async def test_closed_store_over_a_caller_client_raises(agentmem_redis: Redis, agentmem_prefix: str) -> None:
    """A store over the caller's client raises StoreClosedError after aclose(); the client stays usable."""
    store = AgentMemoryStore(agentmem_redis, prefix=agentmem_prefix)
    await store.aclose()
    with pytest.raises(StoreClosedError):
        await store.save_context("s", {"a": 1})
    assert await _keys(agentmem_redis, agentmem_prefix) == []
    assert await agentmem_redis.ping() is True


V1 = (1).to_bytes(8, "big")  # a valid version
_BAD_WRITES = [
    pytest.param(WRITE_CONTEXT, ("1e+17", V1, "merge", b"\xff", b"1", "f", "1"), id="write-ttl-exponent"),
    pytest.param(WRITE_CONTEXT, ("100000000000000000000", V1, "merge", b"\xff", b"1"), id="write-ttl-huge"),
    pytest.param(WRITE_CONTEXT, ("-5", V1, "replace", b"{}"), id="write-ttl-negative"),
    pytest.param(WRITE_CONTEXT, ("1000", "1", "merge", b"f", b"1"), id="write-version-text"),
    pytest.param(WRITE_CONTEXT, ("1000", b"\x01" + V1[1:], "replace", b"{}"), id="write-version-2-64"),
    pytest.param(WRITE_CONTEXT, ("1000", b"\x00\x20" + V1[2:], "replace", b"{}"), id="write-version-2-53"),
    pytest.param(WRITE_CONTEXT, ("1000", V1, "upsert", b"\xff", b"1", "f", "1"), id="write-mode"),
    pytest.param(WRITE_CONTEXT, ("1000", V1, "merge", b"\xff", b"1", "f"), id="write-odd-pairs"),
    pytest.param(WRITE_CONTEXT, ("1000", V1, "replace", b"{}", b"{}"), id="write-two-bases"),
    pytest.param(WRITE_FACTS, ("1000", V1, "replace", b"{}"), id="facts-replace"),
    pytest.param(WRITE_FACTS, ("1000", V1[:7], "merge", b"f", b"1"), id="facts-version"),
    pytest.param(APPEND, ("0", "10", "op-id-08", "60000", b"{}"), id="append-ttl-zero"),
    pytest.param(APPEND, ("1000", "1e17", "op-id-08", "60000", b"{}"), id="append-max-history"),
    pytest.param(APPEND, ("1000", "10", "op-id-08", "0", b"{}"), id="append-window"),
    pytest.param(APPEND, ("1000", "10", "", "60000", b"{}"), id="append-op-id"),
    pytest.param(APPEND, ("1000", "10", "op-id-008", "60000", b"{}"), id="append-op-id-length"),
    pytest.param(READ_SESSION, ("1e+17", "1", "5"), id="read-session-ttl"),
    pytest.param(READ_SESSION, ("1000", "1", "-5"), id="read-session-count"),
    pytest.param(READ_HASH, ("1.5",), id="read-hash-ttl"),
]


@pytest.mark.parametrize(("script", "args"), _BAD_WRITES)
async def test_scripts_check_arguments_before_writing(
    agentmem_redis: Redis, agentmem_prefix: str, script: Script, args: tuple[Any, ...]
) -> None:
    """Each script answers a bad numeric argument with an error reply and has written nothing."""
    schema = KeySchema(agentmem_prefix)
    if script is READ_HASH:
        keys: tuple[str, ...] = (schema.profile("u"),)
    elif script is WRITE_FACTS:
        keys = schema.profile_keys("u")
    elif script is APPEND:
        keys = schema.session("s").appending()
    else:
        keys = schema.session("s").core()
    await agentmem_redis.hset(schema.session("kept").context, b"k", b"1")  # a key the test must not touch
    with pytest.raises(ResponseError, match="agentmem: "):
        await agentmem_redis.eval(script.plain, len(keys), *keys, *args)
    assert await _keys(agentmem_redis, agentmem_prefix) == [schema.session("kept").context.encode()]
    assert await agentmem_redis.pttl(schema.session("kept").context) == -1


@dataclass
class Reading:
    value: float


@pytest.mark.parametrize(
    "bad",
    [
        {"x": float("nan")},
        {"x": float("inf")},
        {"x": [1.0, {"deep": -float("inf")}]},
        {"x": (None, float("nan"))},
        {"x": Reading(float("nan"))},
    ],
)
async def test_nan_and_infinity_are_refused(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, bad: dict[str, Any]
) -> None:
    """NaN and +-inf (which orjson would store as null) raise SerializationError; nothing is written."""
    for call in (
        agentmem_store.save_context("s", bad),
        agentmem_store.update_context("s", bad),
        agentmem_store.append_messages("s", [{"ok": 1}, bad]),
        agentmem_store.remember("u", bad),
    ):
        with pytest.raises(SerializationError, match="NaN or an infinity"):
            await call
    assert await _keys(agentmem_redis, agentmem_prefix) == []


async def test_null_and_finite_floats_still_round_trip(agentmem_store: AgentMemoryStore) -> None:
    """None, the string "null" and ordinary floats are stored as they are."""
    context = {"none": None, "text": "null", "f": 1.5, "nested": [None, {"g": -0.0}]}
    await agentmem_store.save_context("s", context)
    assert await agentmem_store.load_context("s") == context


async def test_calls_accepted_before_aclose_complete(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """aclose() sends what callers queued before it and waits for it: the calls succeed and
    their writes are on the server, instead of meeting a pool closed under them (a retry,
    then StoreClosedError for a write that may or may not have been applied)."""
    store = agentmem_store_factory()
    await asyncio.gather(*(store.load_context(f"warm{i}") for i in range(4)))  # batching, not inline
    saves = [asyncio.ensure_future(store.save_context(f"s{i}", {"i": i})) for i in range(5)]
    await asyncio.sleep(0)  # each call is queued in the pipeliner; its flush has not run yet
    await store.aclose()
    done, _ = await asyncio.wait(saves)
    assert all(save.exception() is None for save in done)  # each call succeeded
    keys = KeySchema(agentmem_prefix)
    assert [await agentmem_redis.exists(keys.session(f"s{i}").base) for i in range(5)] == [1] * 5
    assert store.retry_stats.retries == 0  # each went out once, on an open pool
    with pytest.raises(StoreClosedError, match="nothing was sent"):
        await store.save_context("late", {"i": 0})
    assert await agentmem_redis.exists(*keys.session("late").all()) == 0
