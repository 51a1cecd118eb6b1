"""Session keys share one TTL that writes (and, by default, reads) reset; facts keep none."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, InvalidArgumentError, StoreConfig
from agentmem.config import MAX_TTL
from agentmem.keys import KeySchema, escape_glob
from agentmem.store import append_window

StoreFactory = Callable[..., AgentMemoryStore]


async def test_session_expires_after_ttl(agentmem_store_factory: StoreFactory) -> None:
    """With a short TTL and no activity, context and history are gone."""
    store = agentmem_store_factory(ttl=0.3)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await asyncio.sleep(0.6)
    assert await store.load_context("s") is None
    assert await store.load_history("s") == []


async def test_writes_to_either_key_reset_both(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """An append resets the context's TTL, and a context write resets the history's."""
    store = agentmem_store_factory(ttl=10, sliding_ttl=False)
    keys = KeySchema(agentmem_prefix).session("s")
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await agentmem_redis.pexpire(keys.base, 500)
    await agentmem_redis.pexpire(keys.history, 500)
    await store.append_messages("s", [{"n": 2}])
    assert await agentmem_redis.pttl(keys.base) > 5000
    await agentmem_redis.pexpire(keys.history, 500)
    await store.update_context("s", {"b": 2})
    assert await agentmem_redis.pttl(keys.history) > 5000


async def test_reads_slide_the_ttl(agentmem_store_factory: StoreFactory) -> None:
    """With sliding_ttl (default), regular reads keep a session alive past its TTL."""
    store = agentmem_store_factory(ttl=1.0)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    for _ in range(5):  # 1.5 s in all: well past the TTL, each step well inside it
        await asyncio.sleep(0.3)
        assert (await store.load_turn("s")).context == {"a": 1}
    assert await store.load_history("s") == [{"n": 1}]


async def test_reads_do_not_slide_when_disabled(agentmem_store_factory: StoreFactory) -> None:
    """With sliding_ttl=False, reading does not extend the session."""
    store = agentmem_store_factory(ttl=0.4, sliding_ttl=False)
    await store.save_context("s", {"a": 1})
    for _ in range(2):
        await asyncio.sleep(0.25)
        await store.load_context("s")
    assert await store.load_context("s") is None


async def test_facts_have_no_ttl_by_default(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Long-term facts persist until forgotten unless profile_ttl is set."""
    await agentmem_store.remember("u", {"a": 1})
    assert await agentmem_redis.pttl(KeySchema(agentmem_prefix).profile("u")) == -1


async def test_profile_ttl_expires_facts(agentmem_store_factory: StoreFactory) -> None:
    """With profile_ttl, facts expire; recall refreshes it while sliding."""
    store = agentmem_store_factory(profile_ttl=1.0)
    await store.remember("u", {"a": 1})
    await asyncio.sleep(0.6)
    assert await store.recall("u") == {"a": 1}
    await asyncio.sleep(0.6)  # 1.2 s after remember: alive only because recall slid it
    assert await store.recall("u") == {"a": 1}
    await asyncio.sleep(1.3)
    assert await store.recall("u") == {}


async def test_longest_ttl_reaches_every_key(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """ttl and profile_ttl at MAX_TTL are accepted by the server and set on every key, to the ms."""
    store = agentmem_store_factory(ttl=MAX_TTL, profile_ttl=MAX_TTL)
    schema = KeySchema(agentmem_prefix)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await store.remember("u", {"b": 2})
    session = schema.session("s")
    for key in (session.base, session.history, schema.profile("u")):
        assert MAX_TTL * 1000 - 60_000 < await agentmem_redis.pttl(key) <= MAX_TTL * 1000
    # the append log lives one de-duplication window past the last append, not the session's ttl
    window_ms = append_window(store.config) * 1000
    assert window_ms - 60_000 < await agentmem_redis.pttl(session.log) <= window_ms


@pytest.mark.parametrize(
    "options", [{"ttl": MAX_TTL + 1}, {"ttl": 10**14}, {"profile_ttl": 10**14}, {"max_history": 2**53}]
)
def test_out_of_range_options_are_refused(options: dict[str, int]) -> None:
    """A ttl, profile_ttl or max_history no server can take raises InvalidArgumentError at construction."""
    with pytest.raises(InvalidArgumentError, match=next(iter(options))):
        StoreConfig.from_options(**options)


async def _ttls(redis: Redis, prefix: str) -> dict[bytes, int]:
    """PTTL of every key under the prefix, found on the server by SCAN."""
    return {key: await redis.pttl(key) async for key in redis.scan_iter(match=escape_glob(prefix) + "*")}


SESSION_WRITES: dict[str, Callable[[AgentMemoryStore], Awaitable[object]]] = {
    "save_context": lambda store: store.save_context("s", {"a": 1}),
    "update_context": lambda store: store.update_context("s", {"b": 2}),
    "append_messages": lambda store: store.append_messages("s", [{"n": 1}]),
}


@pytest.mark.parametrize("write", SESSION_WRITES)
async def test_every_write_sets_the_ttl_of_every_session_key(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str, write: str
) -> None:
    """After each kind of write, every key of the session on the server (the tombstone
    included) has the TTL; the append log has its own, one de-duplication window, set by
    appends and left alone by the other writes."""
    store = agentmem_store_factory(ttl=100, sliding_ttl=False)
    session = KeySchema(agentmem_prefix).session("s")
    await store.save_context("s", {"a": 0})
    await store.delete_session("s")  # leaves the tombstone, which must follow the TTL too
    await store.update_context("s", {"b": 0})
    await store.save_context("s", {"a": 0})
    await store.update_context("s", {"b": 1})
    await store.append_messages("s", [{"n": 0}])  # the session now has all its keys but pops
    assert await agentmem_redis.exists(*session.all()) == len(session.all()) - 1
    for key in session.all():
        await agentmem_redis.persist(key)
    await SESSION_WRITES[write](store)
    ttls = await _ttls(agentmem_redis, agentmem_prefix)
    log = session.log.encode()
    data = {key: ttl for key, ttl in ttls.items() if key != log}
    kept = [session.base, session.history, session.deleted]
    if write != "save_context":  # a save drops the merged fields
        kept.append(session.context)
    assert sorted(data) == sorted(key.encode() for key in kept)
    assert all(95_000 < ttl <= 100_000 for ttl in data.values()), ttls
    window_ms = append_window(store.config) * 1000
    assert (window_ms - 5_000 < ttls[log] <= window_ms) if write == "append_messages" else ttls[log] == -1


SESSION_READS: dict[str, Callable[[AgentMemoryStore], Awaitable[object]]] = {
    "load_context": lambda store: store.load_context("s"),
    "load_history": lambda store: store.load_history("s"),
    "load_turn": lambda store: store.load_turn("s", user_id="u"),
}


@pytest.mark.parametrize("read", SESSION_READS)
async def test_sliding_reads_reset_the_ttl_of_every_key(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str, read: str
) -> None:
    """With sliding_ttl, each read resets the TTL of every session key (and load_turn the
    facts'), the append log's excepted: it lives one window past the last append."""
    store = agentmem_store_factory(ttl=100, profile_ttl=200)
    await store.save_context("s", {"a": 0})
    await store.update_context("s", {"b": 0})
    await store.append_messages("s", [{"n": 0}])
    await store.remember("u", {"b": 1})
    ttls = await _ttls(agentmem_redis, agentmem_prefix)
    assert len(ttls) == 5
    for key in ttls:
        await agentmem_redis.pexpire(key, 10_000)
    await SESSION_READS[read](store)
    ttls = await _ttls(agentmem_redis, agentmem_prefix)
    facts = KeySchema(agentmem_prefix).profile("u").encode()
    log = KeySchema(agentmem_prefix).session("s").log.encode()
    assert ttls[log] <= 10_000
    assert all(95_000 < ttl <= 100_000 for key, ttl in ttls.items() if key not in (facts, log)), ttls
    assert (195_000 < ttls[facts] <= 200_000) if read == "load_turn" else ttls[facts] <= 10_000


async def test_remember_and_recall_set_profile_ttl(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """remember sets profile_ttl on the facts key, and a sliding recall resets it."""
    store = agentmem_store_factory(profile_ttl=100)
    facts = KeySchema(agentmem_prefix).profile("u")
    await agentmem_redis.hset(facts, b"old", b"1")  # a facts key without TTL
    await store.remember("u", {"b": 1})
    assert 95_000 < await agentmem_redis.pttl(facts) <= 100_000
    await agentmem_redis.pexpire(facts, 10_000)
    await store.recall("u")
    assert 95_000 < await agentmem_redis.pttl(facts) <= 100_000
