"""The layout on the server: a save is one string (its version, then the context as one
orjson object), merged fields and facts carry their own versions as a value prefix, the
append log is a compact string that expires, a replay never undoes a newer write, and
data written by 0.2 still reads and is rewritten by its next write."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from stored import version

from agentmem import AgentMemoryStore, MemoryCorruptedError
from agentmem.codec import VERSION_BYTES
from agentmem.keys import KeySchema
from agentmem.scripts import APPEND, APPEND_LOG_IDS
from agentmem.store import append_window
from agentmem.writes import Write, WriteKind, append_call, apply

RECORD = 12  # an append log record: 8-byte operation id, 4-byte server time in seconds


def _versioned(version: int, payload: bytes) -> bytes:
    return version.to_bytes(VERSION_BYTES, "big") + payload


async def _hash(redis: Redis, key: str) -> dict[bytes, bytes]:
    raw: dict[Any, Any] = await redis.hgetall(key)
    return raw


async def _write_context(
    store: AgentMemoryStore, operation: str, session_id: str, encoded: list[bytes], version: int, mode: str
) -> int | None:
    """A context write as the store and the journal send it (``-if-newer``: a replay)."""
    kind: WriteKind = "save" if mode.startswith("replace") else "update"
    write = Write(kind, session_id, tuple(encoded), version)
    return await apply(store.engine, operation, write, replay=mode.endswith("-if-newer"))


async def _write_facts(
    store: AgentMemoryStore, operation: str, user_id: str, encoded: list[bytes], version: int, mode: str
) -> int | None:
    """A facts write as the store and the journal send it (``-if-newer``: a replay)."""
    write = Write("remember", user_id, tuple(encoded), version)
    return await apply(store.engine, operation, write, replay=mode.endswith("-if-newer"))


async def _append(
    store: AgentMemoryStore, operation: str, session_id: str, encoded: list[bytes], op_id: bytes
) -> int:
    """An append's retry with a given operation id, as the store sends it after an attempt
    that may have reached the server (``Call.retry``: the script that looks the id up; a
    first attempt, whose id is new, does not look). A retry of an applied one adds nothing."""
    retry = append_call(store.engine, Write("append", session_id, tuple(encoded), 0, op_id)).retry
    assert retry is not None
    (length,) = await store.engine.send(operation, (retry,))
    return int(length)


async def test_save_stores_one_string_with_its_version(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """save_context writes one string: its 8-byte version, then the whole context as one
    orjson object, with the session TTL; no hash, no per-field versions."""
    keys = KeySchema(agentmem_prefix).session("s")
    context = {"phone": "138", "order": {"id": 7, "items": [1, 2]}, "turn": 3}
    before = time.time_ns() // 1000
    await agentmem_store.save_context("s", context)
    base = await agentmem_redis.get(keys.base)
    assert base is not None
    assert base[VERSION_BYTES:] == orjson.dumps(context)
    saved = version(base)
    assert saved is not None
    assert before <= saved <= time.time_ns() // 1000  # the writer's clock in microseconds
    assert await agentmem_redis.exists(keys.context) == 0
    assert 0 < await agentmem_redis.pttl(keys.base) <= int(agentmem_store.config.ttl * 1000)


async def test_update_adds_a_versioned_field_and_save_clears_it(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """update_context stores its field in the hash, prefixed with its own version; it wins
    on read; the next save_context deletes the hash."""
    keys = KeySchema(agentmem_prefix).session("s")
    await agentmem_store.save_context("s", {"intent": "greet", "name": "Li"})
    await agentmem_store.update_context("s", {"intent": "refund"})
    raw = await _hash(agentmem_redis, keys.context)
    assert set(raw) == {b"intent"}
    assert raw[b"intent"][VERSION_BYTES:] == b'"refund"'
    base = await agentmem_redis.get(keys.base)
    assert (version(raw[b"intent"]) or 0) >= (version(base or b"") or 0) > 0
    assert await agentmem_store.load_context("s") == {"intent": "refund", "name": "Li"}
    await agentmem_store.save_context("s", {"intent": "bye"})
    assert await agentmem_redis.exists(keys.context) == 0
    assert await agentmem_store.load_context("s") == {"intent": "bye"}


async def test_merge_into_nothing_writes_no_base(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A context made by update_context alone is its hash; there is no base."""
    keys = KeySchema(agentmem_prefix).session("s")
    await agentmem_store.update_context("s", {"a": 1})
    assert await agentmem_redis.exists(keys.base) == 0
    assert set(await _hash(agentmem_redis, keys.context)) == {b"a"}
    assert await agentmem_store.load_context("s") == {"a": 1}


async def test_an_empty_saved_context_is_a_context(agentmem_store: AgentMemoryStore) -> None:
    """save_context({}) stores a base, so load_context says {} (a context), not None."""
    await agentmem_store.save_context("s", {})
    assert await agentmem_store.load_context("s") == {}
    assert await agentmem_store.load_context("never") is None


@pytest.mark.parametrize("base", [b"[1, 2]", b"{not json", b'"text"'])
async def test_corrupt_base_raises(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, base: bytes
) -> None:
    """A base that is not one JSON object is corruption, never a silent empty context."""
    await agentmem_store.save_context("s", {"a": 1})
    await agentmem_redis.set(KeySchema(agentmem_prefix).session("s").base, _versioned(5, base))
    with pytest.raises(MemoryCorruptedError, match="base"):
        await agentmem_store.load_context("s")


async def test_replayed_replace_keeps_newer_merged_fields(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A replace replayed from a journal with an old version keeps fields merged after it
    and drops those merged before it."""
    store = agentmem_store
    keys = KeySchema(agentmem_prefix).session("s")
    await _write_context(store, "u", "s", [b"old", b"1"], 100, "merge")
    await _write_context(store, "u", "s", [b"new", b"2"], 300, "merge")
    written = await _write_context(store, "r", "s", [orjson.dumps({"base": 1})], 200, "replace-if-newer")
    assert written
    assert await _hash(agentmem_redis, keys.context) == {b"new": _versioned(300, b"2")}
    assert await agentmem_redis.get(keys.base) == _versioned(200, b'{"base":1}')
    assert await store.load_context("s") == {"base": 1, "new": 2}


async def test_replay_older_than_the_last_replace_is_dropped(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A merge or replace replayed with a version older than the stored base changes nothing."""
    store = agentmem_store
    keys = KeySchema(agentmem_prefix).session("s")
    await _write_context(store, "r", "s", [orjson.dumps({"a": 1})], 500, "replace")
    assert not await _write_context(store, "u", "s", [b"a", b"2"], 400, "merge-if-newer")
    assert not await _write_context(store, "r", "s", [orjson.dumps({"b": 1})], 400, "replace-if-newer")
    assert await agentmem_redis.exists(keys.context) == 0
    assert await agentmem_redis.get(keys.base) == _versioned(500, b'{"a":1}')
    assert await store.load_context("s") == {"a": 1}


async def test_facts_are_versioned_values_and_a_replay_skips_newer_ones(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """remember stores one field per fact, prefixed with its version (no version fields);
    a merge replayed with an older version skips the facts written after it."""
    store = agentmem_store
    key = KeySchema(agentmem_prefix).profile("u")
    await _write_facts(store, "r", "u", [b"lang", b'"zh"', b"tier", b'"gold"'], 100, "merge")
    await _write_facts(store, "r", "u", [b"tier", b'"vip"'], 300, "merge")
    assert await _write_facts(store, "r", "u", [b"lang", b'"en"', b"tier", b'"free"'], 200, "merge-if-newer")
    assert await _hash(agentmem_redis, key) == {
        b"lang": _versioned(200, b'"en"'),
        b"tier": _versioned(300, b'"vip"'),
    }
    assert await store.recall("u") == {"lang": "en", "tier": "vip"}


async def test_the_append_log_is_a_compact_string_that_expires(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Each append adds one 12-byte record (its operation id, the server time until which it is
    kept: now + the writer's window) to a string that expires one de-duplication window after the
    last append; a retried id adds nothing."""
    store = agentmem_store
    keys = KeySchema(agentmem_prefix).session("s")
    for n in range(3):
        await store.append_messages("s", [{"n": n}])
    log = await agentmem_redis.get(keys.log)
    assert isinstance(log, bytes)
    assert len(log) == 3 * RECORD
    window_ms = int(append_window(store.config) * 1000)
    until = int(time.time()) + window_ms // 1000
    for start in range(0, len(log), RECORD):
        assert until - 5 <= int.from_bytes(log[start + 8 : start + RECORD], "big") <= until + 1
    assert window_ms - 5_000 < await agentmem_redis.pttl(keys.log) <= window_ms
    assert await _append(store, "retry", "s", [orjson.dumps({"n": 9})], log[:8]) == 3  # an applied id
    assert await agentmem_redis.llen(keys.history) == 3
    assert await agentmem_redis.get(keys.log) == log


async def test_old_ids_leave_the_log_but_the_newest_stay(agentmem_redis: Redis, agentmem_prefix: str) -> None:
    """Records older than the window are dropped, but never below the newest APPEND_LOG_IDS;
    an id that only looks like one (not at a record boundary) is not taken for one."""
    keys = KeySchema(agentmem_prefix).session("s").appending()
    old = int(time.time()) - 3600
    records = [(n + 1).to_bytes(8, "big") + old.to_bytes(4, "big") for n in range(APPEND_LOG_IDS + 6)]
    await agentmem_redis.set(keys[3], b"".join(records))
    straddling = records[0][6:] + records[1][:2]  # 8 bytes across a record boundary
    length = await agentmem_redis.evalsha(
        await agentmem_redis.script_load(APPEND.plain), len(keys), *keys, 1000, 10, straddling, 60_000, b"{}"
    )
    assert length == 1  # not taken for an applied append
    log = await agentmem_redis.get(keys[3])
    assert log is not None
    assert len(log) == APPEND_LOG_IDS * RECORD
    assert log[: (APPEND_LOG_IDS - 1) * RECORD] == b"".join(records[-(APPEND_LOG_IDS - 1) :])
    assert log[-RECORD:-4] == straddling


async def test_a_live_oldest_record_keeps_the_log_whole(agentmem_redis: Redis, agentmem_prefix: str) -> None:
    """The log is swept when its oldest record is past its time (or its length reaches a
    power of two): behind a live one (a writer with a longer window), expired records stay a
    little longer (kept, never cut short), and an append does not loop over the whole log of
    a session appended to fast."""
    keys = KeySchema(agentmem_prefix).session("s").appending()
    now = int(time.time())
    live = (1).to_bytes(8, "big") + (now + 3600).to_bytes(4, "big")
    expired = [
        (n + 2).to_bytes(8, "big") + (now - 3600).to_bytes(4, "big") for n in range(APPEND_LOG_IDS + 6)
    ]
    await agentmem_redis.set(keys[3], live + b"".join(expired))
    op = (999).to_bytes(8, "big")
    script = await agentmem_redis.script_load(APPEND.plain)
    assert await agentmem_redis.evalsha(script, len(keys), *keys, 1000, 10, op, 60_000, b"{}") == 1
    log = await agentmem_redis.get(keys[3])
    assert log is not None
    assert log[:-RECORD] == live + b"".join(expired)  # nothing dropped behind the live head
    assert log[-RECORD:-4] == op
    # Once the head is past its time too, the next append sweeps every expired record.
    await agentmem_redis.set(keys[3], b"".join(expired) + live)
    assert (
        await agentmem_redis.evalsha(
            script, len(keys), *keys, 1000, 10, (998).to_bytes(8, "big"), 60_000, b"{}"
        )
        == 2
    )
    log = await agentmem_redis.get(keys[3])
    assert log is not None
    assert len(log) == APPEND_LOG_IDS * RECORD
    assert live in log
    assert log[: (APPEND_LOG_IDS - 2) * RECORD] == b"".join(expired[-(APPEND_LOG_IDS - 2) :])


async def test_a_log_held_by_a_live_head_is_swept_when_it_doubles(
    agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A long-window record at the head does not hold the expired ones behind it for good:
    at a power-of-two length the append sweeps them anyway (the head, live, stays)."""
    keys = KeySchema(agentmem_prefix).session("s").appending()
    now = int(time.time())
    live = (1).to_bytes(8, "big") + (now + 3600).to_bytes(4, "big")
    expired = [
        (n + 2).to_bytes(8, "big") + (now - 3600).to_bytes(4, "big") for n in range(2 * APPEND_LOG_IDS - 1)
    ]
    await agentmem_redis.set(keys[3], live + b"".join(expired))  # 2 x APPEND_LOG_IDS records
    script = await agentmem_redis.script_load(APPEND.plain)
    assert await agentmem_redis.evalsha(
        script, len(keys), *keys, 1000, 10, (999).to_bytes(8, "big"), 60_000, b"{}"
    )
    log = await agentmem_redis.get(keys[3])
    assert log is not None
    assert log[:RECORD] == live
    assert len(log) == (1 + APPEND_LOG_IDS) * RECORD  # the head, the newest 63 old ones, this one


async def test_layout_0_2_still_reads_and_its_next_write_rewrites_it(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A context hash and a facts hash as 0.2 wrote them (versions in 0xFF/0xFE fields, the
    base in field 0xFF 0x01) read as before; the next write moves them to this layout with
    their versions and TTL, and an older replay is still refused."""
    store = agentmem_store
    schema = KeySchema(agentmem_prefix)
    keys = schema.session("s")
    await agentmem_redis.hset(
        keys.context,
        mapping={b"\xff": b"500", b"\xff\x01": b'{"a":1,"b":2}', b"b": b"3", b"\xfeb": b"600"},
    )
    facts = schema.profile("u")
    await agentmem_redis.hset(facts, mapping={b"\xff": b"0", b"lang": b'"zh"', b"\xfelang": b"700"})
    assert await store.load_context("s") == {"a": 1, "b": 3}
    assert await store.recall("u") == {"lang": "zh"}
    await agentmem_redis.pexpire(keys.context, 77_000)  # after the reads, which slide it

    assert not await _write_context(store, "u", "s", [b"a", b"9"], 400, "merge-if-newer")  # older than 500
    assert await agentmem_redis.get(keys.base) == _versioned(500, b'{"a":1,"b":2}')
    assert await _hash(agentmem_redis, keys.context) == {b"b": _versioned(600, b"3")}
    assert 70_000 < await agentmem_redis.pttl(keys.base) <= 77_000
    await store.update_context("s", {"c": 4})
    assert await store.load_context("s") == {"a": 1, "b": 3, "c": 4}

    await store.remember("u", {"vip": True})
    stored = await _hash(agentmem_redis, facts)
    assert set(stored) == {b"lang", b"vip"}
    assert stored[b"lang"] == _versioned(700, b'"zh"')
    assert await store.recall("u") == {"lang": "zh", "vip": True}


async def test_layout_0_2_values_longer_than_a_version_read_whole_before_and_after_the_upgrade(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """0.2 plain values longer than 8 bytes (context fields, base, facts) are not mistaken for
    versioned ones: they read whole, and the next write prefixes them with their 0.2 version."""
    store = agentmem_store
    schema = KeySchema(agentmem_prefix)
    keys = schema.session("s")
    note, bio = b'"a note well over eight bytes long"', b'"likes long walks on the beach"'
    await agentmem_redis.hset(
        keys.context,
        mapping={
            b"\xff": b"500",
            b"\xff\x01": b'{"k":"a base value, long too"}',
            b"note": note,
            b"\xfenote": b"600",
        },
    )
    facts = schema.profile("u")
    await agentmem_redis.hset(facts, mapping={b"\xff": b"0", b"bio": bio, b"\xfebio": b"700"})
    before = {"k": "a base value, long too", "note": orjson.loads(note)}
    assert await store.load_context("s") == before
    assert await store.recall("u") == {"bio": orjson.loads(bio)}
    assert (await store.load_turn("s", user_id="u")).profile == {"bio": orjson.loads(bio)}
    await store.update_context("s", {"c": 4})
    await store.remember("u", {"vip": True})
    assert await store.load_context("s") == {**before, "c": 4}
    assert await store.recall("u") == {"bio": orjson.loads(bio), "vip": True}
    assert (await _hash(agentmem_redis, keys.context))[b"note"] == _versioned(600, note)
    assert (await _hash(agentmem_redis, facts))[b"bio"] == _versioned(700, bio)
