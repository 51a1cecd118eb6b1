"""Coalesced TTL refreshes: a read (or a plain write) within refresh_bound(ttl) of this store's
last refreshing read of a session (or user) leaves its TTLs alone, but for the keys a write may
create; the sliding TTL still holds with that bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.codec import packed_version
from agentmem.keys import KeySchema
from agentmem.refresh import MAX_REFRESH_BOUND, RefreshCoalescer, refresh_bound
from agentmem.writes import write_version

StoreFactory = Callable[..., AgentMemoryStore]


def test_the_bound_is_a_tenth_of_the_ttl_up_to_a_minute() -> None:
    """refresh_bound is min(ttl / 10, 60 s)."""
    assert refresh_bound(2.0) == 0.2
    assert refresh_bound(100.0) == 10.0
    assert refresh_bound(3600.0) == MAX_REFRESH_BOUND == 60.0


def test_bookkeeping_keeps_the_most_recent_sessions_only() -> None:
    """The coalescer remembers at most ``size`` keys; the least recently refreshed leaves first
    and is due again."""
    coalescer = RefreshCoalescer(size=2)
    now = time.monotonic()
    for key in ("a", "b", "c"):
        coalescer.refreshed(key, now)
    assert len(coalescer) == 2
    assert coalescer.due("a", 3600.0)
    assert not coalescer.due("b", 3600.0)
    assert not coalescer.due("c", 3600.0)


async def _read_then_age(store: AgentMemoryStore, server: Redis, *aged: str) -> None:
    """Session "s" with a base, merged fields and a history, read by load_turn (which refreshes
    its TTLs: the bound starts now); then ``aged`` keys' TTLs set aside to 1 s on the server."""
    await store.save_context("s", {"a": 1})
    await store.update_context("s", {"b": 1})
    await store.append_messages("s", [{"n": 1}])
    await store.load_turn("s")
    for key in aged:
        await server.pexpire(key, 1_000)


async def test_a_read_within_the_bound_does_not_refresh(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """The second read inside the bound sends no refresh (the TTLs set aside on the server stay);
    the first read after the bound refreshes every session key again."""
    store = agentmem_store_factory(ttl=3.0)  # bound 0.3 s
    session = KeySchema(agentmem_prefix).session("s")
    await _read_then_age(store, agentmem_redis, session.base, session.history)
    await store.load_context("s")
    await store.load_history("s")
    await store.load_turn("s")
    assert 0 < await agentmem_redis.pttl(session.base) <= 1_000
    assert 0 < await agentmem_redis.pttl(session.history) <= 1_000
    await asyncio.sleep(0.35)
    await store.load_context("s")
    assert await agentmem_redis.pttl(session.base) > 2_500
    assert await agentmem_redis.pttl(session.history) > 2_500


async def test_a_write_right_after_a_read_sets_only_the_ttls_it_must(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Within the bound of a refreshing read, a save sets the base's TTL and an update the hash's
    (keys they may create) and leave the history's alone; after the bound they refresh it."""
    store = agentmem_store_factory(ttl=3.0)  # bound 0.3 s
    session = KeySchema(agentmem_prefix).session("s")
    await _read_then_age(store, agentmem_redis, session.base, session.history)
    await store.save_context("s", {"a": 2})
    await store.update_context("s", {"b": 2})
    assert await agentmem_redis.pttl(session.base) > 2_500
    assert await agentmem_redis.pttl(session.context) > 2_500
    assert 0 < await agentmem_redis.pttl(session.history) <= 1_000
    await asyncio.sleep(0.35)
    await store.update_context("s", {"b": 3})
    assert await agentmem_redis.pttl(session.history) > 2_500
    assert await store.load_context("s") == {"a": 2, "b": 3}


async def test_an_append_right_after_a_read_sets_only_the_history_and_log_ttls(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Within the bound of a refreshing read, an append sets the TTLs of the history and its
    log (keys it may create) and leaves the context's alone; after the bound it sets every
    session key's."""
    store = agentmem_store_factory(ttl=3.0)  # bound 0.3 s
    session = KeySchema(agentmem_prefix).session("s")
    await _read_then_age(store, agentmem_redis, session.base, session.context, session.history, session.log)
    assert await store.append_messages("s", [{"n": 2}]) == 2
    assert await agentmem_redis.pttl(session.history) > 2_500
    assert await agentmem_redis.pttl(session.log) > 1_000
    assert 0 < await agentmem_redis.pttl(session.base) <= 1_000
    assert 0 < await agentmem_redis.pttl(session.context) <= 1_000
    await asyncio.sleep(0.35)
    assert await store.append_messages("s", [{"n": 3}]) == 3
    assert await agentmem_redis.pttl(session.base) > 2_500
    assert await agentmem_redis.pttl(session.context) > 2_500
    assert [m["n"] for m in await store.load_history("s")] == [1, 2, 3]


async def test_writes_without_sliding_ttl_always_refresh(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """With sliding_ttl=False a write after a read still sets the TTL of every session key."""
    store = agentmem_store_factory(ttl=100, sliding_ttl=False)
    session = KeySchema(agentmem_prefix).session("s")
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await store.load_turn("s")
    await agentmem_redis.pexpire(session.history, 1_000)
    await store.update_context("s", {"b": 2})
    assert await agentmem_redis.pttl(session.history) > 95_000
    await agentmem_redis.pexpire(session.base, 1_000)
    await store.append_messages("s", [{"n": 2}])
    assert await agentmem_redis.pttl(session.base) > 95_000


async def test_a_session_read_every_ttl_minus_bound_never_expires(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """The worst case of coalescing: a read just inside the bound (no refresh), then the next
    read most of ``ttl - bound`` later, twice over: the session is there at every read."""
    store = agentmem_store_factory(ttl=2.0)  # bound 0.2 s
    session = KeySchema(agentmem_prefix).session("s")
    await store.save_context("s", {"a": 1})
    assert await store.load_context("s") == {"a": 1}  # refreshes
    for _ in range(2):
        await asyncio.sleep(0.1)
        assert await store.load_context("s") == {"a": 1}  # inside the bound: no refresh
        await asyncio.sleep(1.4)  # 1.5 s after the refresh: within ttl - bound = 1.8 s
        assert await agentmem_redis.exists(session.base) == 1
        assert await store.load_context("s") == {"a": 1}  # refreshes


async def test_a_session_expires_within_ttl_of_its_last_read(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """After the last read (coalesced or not) the session's keys are gone on the server within
    ``ttl``, and not before ``ttl - bound``."""
    store = agentmem_store_factory(ttl=1.0)  # bound 0.1 s
    session = KeySchema(agentmem_prefix).session("s")
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    for _ in range(4):
        await store.load_turn("s")
        await asyncio.sleep(0.05)
    await store.load_turn("s")
    last = time.monotonic()  # the last read's refresh, if any, was applied before this
    await asyncio.sleep(max(0.0, 0.7 - (time.monotonic() - last)))
    assert await agentmem_redis.exists(session.base, session.history) == 2
    await asyncio.sleep(max(0.0, 1.1 - (time.monotonic() - last)))
    assert await agentmem_redis.exists(session.base, session.history) == 0


async def test_recall_coalesces_the_facts_refresh(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """With profile_ttl, a recall inside the bound of the last refreshing recall leaves the facts'
    TTL alone; one after it refreshes."""
    store = agentmem_store_factory(profile_ttl=3.0)
    facts = KeySchema(agentmem_prefix).profile("u")
    await store.remember("u", {"a": 1})
    await store.recall("u")
    await agentmem_redis.pexpire(facts, 1_000)
    assert (await store.load_turn("s", user_id="u")).profile == {"a": 1}
    assert 0 < await agentmem_redis.pttl(facts) <= 1_000
    await asyncio.sleep(0.35)
    await store.recall("u")
    assert await agentmem_redis.pttl(facts) > 2_500


async def test_delete_forgets_the_last_refresh(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """After delete_session, the next read of the session refreshes again."""
    store = agentmem_store_factory(ttl=100)
    session = KeySchema(agentmem_prefix).session("s")
    await store.save_context("s", {"a": 1})
    await store.load_context("s")
    await store.delete_session("s")
    # a save made after the delete (newer than its tombstone: an older base reads as deleted)
    await agentmem_redis.set(session.base, packed_version(write_version()) + b'{"a":2}', px=1_000)
    assert await store.load_context("s") == {"a": 2}
    assert await agentmem_redis.pttl(session.base) > 95_000
