"""fallback="journal": writes survive an outage in process memory and reach Redis after it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from stored import stored_context

from agentmem import (
    AgentMemoryStore,
    JournaledStore,
    MemoryFullError,
    MemoryUnavailableError,
    StoreClosedError,
    Turn,
    UnflushedJournalError,
)
from agentmem.factory import open_store
from agentmem.keys import KeySchema, escape_glob
from agentmem.testing import memory_pressure

StoreFactory = Callable[..., AgentMemoryStore]


def _journaled(store: AgentMemoryStore) -> JournaledStore:
    """The store as the JournaledStore that fallback="journal" made (for typed access)."""
    assert isinstance(store, JournaledStore)
    return store


OFFLINE_FAST = {
    "fallback": "journal",
    "socket_timeout": 0.3,
    "socket_connect_timeout": 0.3,
    "retries": 0,
    "breaker_threshold": 0,
}


def _down(proxy: Any) -> None:
    """Cut open connections and refuse new ones: Redis is unreachable, its data intact."""
    proxy.refuse()
    proxy.reset()


async def _raw_context(redis: Redis, prefix: str, session_id: str) -> dict[bytes, bytes]:
    """The context as stored, field by field (see ``stored.stored_context``); {} when none."""
    return await stored_context(redis, prefix, session_id) or {}


async def test_outage_writes_are_journaled_read_back_and_replayed(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """During an outage writes are acknowledged, loads merge them, and recovery replays them once."""
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.save_context("s", {"phone": "138"})
    await store.append_messages("s", [{"n": 0}])
    await store.remember("u", {"lang": "zh"})
    await store.load_turn("s", user_id="u")

    _down(agentmem_proxy)
    await store.update_context("s", {"name": "Li Wei"})
    assert await store.append_messages("s", [{"n": 1}]) == 2
    await store.remember("u", {"vip": True})
    assert store.journal_backlog == 3
    turn = await store.load_turn("s", user_id="u")
    assert turn.context == {"phone": "138", "name": "Li Wei"}
    assert [m["n"] for m in turn.history] == [0, 1]
    assert turn.profile == {"lang": "zh", "vip": True}
    assert await _raw_context(agentmem_redis, agentmem_prefix, "s") == {b"phone": b'"138"'}

    agentmem_proxy.restore()
    assert await store.load_context("s") == {"phone": "138", "name": "Li Wei"}
    assert store.journal_backlog == 0
    assert await _raw_context(agentmem_redis, agentmem_prefix, "s") == {
        b"phone": b'"138"',
        b"name": b'"Li Wei"',
    }
    other = agentmem_store_factory()  # a process that never saw the outage
    assert [m["n"] for m in await other.load_history("s")] == [0, 1]
    assert await other.recall("u") == {"lang": "zh", "vip": True}
    assert (await store.health()).journal_backlog == 0


async def test_replay_never_overwrites_a_newer_value(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """A field another process wrote after the journaled write keeps its newer value."""
    offline = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    online = agentmem_store_factory()
    await offline.save_context("s", {"name": "old", "stale": 1})
    _down(agentmem_proxy)
    await offline.update_context("s", {"name": "from-offline", "phone": "138"})
    await online.update_context("s", {"name": "from-online"})  # later, straight to Redis
    agentmem_proxy.restore()
    assert await offline.flush_journal() == []
    assert await online.load_context("s") == {"name": "from-online", "phone": "138", "stale": 1}


async def test_replayed_replace_keeps_newer_fields(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """A journaled save_context replaces older fields but not ones written after it."""
    offline = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    online = agentmem_store_factory()
    await offline.save_context("s", {"old": 1, "name": "x"})
    _down(agentmem_proxy)
    await offline.save_context("s", {"fresh": 2})
    await online.update_context("s", {"name": "newer"})
    agentmem_proxy.restore()
    assert await offline.flush_journal() == []
    assert await online.load_context("s") == {"fresh": 2, "name": "newer"}


async def test_replayed_append_applies_once_when_its_reply_is_lost(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """A replay whose reply is cut is replayed again later without duplicating the messages."""
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.append_messages("s", [{"n": 0}])
    _down(agentmem_proxy)
    await store.append_messages("s", [{"n": 1}, {"n": 2}])
    agentmem_proxy.restore()
    agentmem_proxy.cut_next_reply()
    assert await store.flush_journal() == [("append", "s")]  # applied, but the reply was lost
    assert await store.flush_journal() == []
    assert [m["n"] for m in await agentmem_store_factory().load_history("s")] == [0, 1, 2]


async def test_journal_bounds_raise_instead_of_dropping(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """Past journal_max_sessions or journal_max_bytes a write raises MemoryUnavailableError."""
    store = _journaled(
        agentmem_store_factory(
            url=agentmem_proxy.url, journal_max_sessions=1, journal_max_bytes=200, **OFFLINE_FAST
        )
    )
    _down(agentmem_proxy)
    await store.update_context("s1", {"a": 1})
    await store.update_context("s1", {"b": 2})
    with pytest.raises(MemoryUnavailableError, match="journal_max_sessions"):
        await store.update_context("s2", {"a": 1})
    with pytest.raises(MemoryUnavailableError, match="journal_max_bytes"):
        await store.update_context("s1", {"big": "x" * 300})
    assert store.journal_backlog == 2
    agentmem_proxy.restore()
    assert await store.flush_journal() == []


async def test_unknown_session_still_raises_while_down(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """A load of a session this process knows nothing of raises: no made-up empty memory."""
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.load_context("warm")
    _down(agentmem_proxy)
    with pytest.raises(MemoryUnavailableError):
        await store.load_context("never-seen")


async def test_aclose_names_writes_it_could_not_flush(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """Closing during an outage raises UnflushedJournalError listing what Redis never got."""
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.load_context("warm")
    _down(agentmem_proxy)
    await store.update_context("s", {"a": 1})
    with pytest.raises(UnflushedJournalError) as info:
        await store.aclose()
    assert info.value.pending == [("update", "s")]


# -- issue 14: only outages are journaled; a poisoned entry never blocks others ---------------


def _session_pattern(prefix: str, session_id: str) -> str:
    context_key = KeySchema(prefix).session(session_id).context
    return escape_glob(context_key.rsplit(":", 1)[0]) + ":*"


async def _session_keys(redis: Redis, prefix: str, session_id: str) -> list[bytes]:
    return sorted([key async for key in redis.scan_iter(match=_session_pattern(prefix, session_id))])


async def _assert_every_key_has_ttl(redis: Redis, prefix: str, session_id: str, ttl_ms: int) -> None:
    keys = await _session_keys(redis, prefix, session_id)
    assert keys, "the session has no keys at all"
    for key in keys:
        assert 0 < await redis.pttl(key) <= ttl_ms, key


async def test_poisoned_entry_is_dropped_and_reported_not_blocking_new_writes(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """An entry whose replay meets WRONGTYPE is removed and reported; a later write reaches Redis."""
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.load_context("poison")
    _down(agentmem_proxy)
    await store.update_context("poison", {"a": 1})  # journaled
    poison_key = KeySchema(agentmem_prefix).session("poison").context
    await agentmem_redis.set(poison_key, "a string now")  # another client changes its type
    agentmem_proxy.restore()

    await store.save_context("other", {"name": "Li"})
    assert await _raw_context(agentmem_redis, agentmem_prefix, "other") == {b"name": b'"Li"'}
    assert await agentmem_redis.get(poison_key) == b"a string now"
    assert store.journal_backlog == 0
    assert [(d.kind, d.target) for d in store.journal_dropped] == [("update", "poison")]
    assert "WRONGTYPE" in str(store.journal_dropped[0].error)
    with pytest.raises(UnflushedJournalError) as info:
        await store.aclose()
    assert info.value.pending == []
    assert info.value.dropped == [("update", "poison")]


async def test_write_meets_memory_full_after_outage_instead_of_joining_the_journal(
    agentmem_store_factory: StoreFactory, agentmem_proxy_factory: Any, agentmem_private_server: Any
) -> None:
    """Redis back but full: the journaled write is dropped and reported; a new write gets MemoryFullError."""
    proxy = agentmem_proxy_factory(agentmem_private_server.url)
    store = _journaled(agentmem_store_factory(url=proxy.url, **OFFLINE_FAST))
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        await store.save_context("s", {"a": 1})
        _down(proxy)
        await store.update_context("s", {"b": 2})  # journaled
        proxy.restore()
        async with memory_pressure(admin, 1, "noeviction"):
            with pytest.raises(MemoryFullError):
                await store.save_context("s2", {"name": "Li"})
            assert store.journal_backlog == 0
        keys = KeySchema(store.config.prefix)
        assert await admin.exists(*keys.session("s2").all()) == 0
        assert await admin.hget(keys.session("s").context, "b") is None
        assert [(d.kind, d.target) for d in store.journal_dropped] == [("update", "s")]
        assert isinstance(store.journal_dropped[0].error, MemoryFullError)
        store.journal_dropped.clear()  # handled: aclose() no longer reports it
    finally:
        await admin.aclose()


# -- issue 14: reads during an outage answer only from what this process knows for certain ----


async def test_write_only_process_cannot_read_while_down(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A process that wrote to a session but never read it gets MemoryUnavailableError from every read."""
    other = agentmem_store_factory()
    await other.save_context("call-1", {"phone": "138", "intent": "return"})
    await other.append_messages("call-1", [{"n": i} for i in range(10)])
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.update_context("call-1", {"name": "Li Wei"})
    _down(agentmem_proxy)
    await store.append_messages("call-1", [{"n": 10}])  # journaled
    with pytest.raises(MemoryUnavailableError):
        await store.load_context("call-1")
    with pytest.raises(MemoryUnavailableError):
        await store.load_history("call-1")
    with pytest.raises(MemoryUnavailableError):
        await store.load_turn("call-1")
    assert await agentmem_redis.llen(KeySchema(agentmem_prefix).session("call-1").history) == 10
    agentmem_proxy.restore()
    assert [m["n"] for m in await store.load_history("call-1")] == list(range(11))
    assert await store.load_context("call-1") == {"phone": "138", "intent": "return", "name": "Li Wei"}


async def test_journaled_append_returns_length_only_when_the_history_is_known(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """A journaled append returns the known length, or -1 when this process never read the whole history."""
    other = agentmem_store_factory()
    await other.append_messages("blind", [{"n": i} for i in range(10)])
    await other.append_messages("known", [{"n": i} for i in range(3)])
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    assert len(await store.load_history("known", last=50)) == 3  # the whole history
    await store.load_history("blind", last=2)  # only its tail
    _down(agentmem_proxy)
    assert await store.append_messages("blind", [{"n": 10}]) == -1
    assert await store.append_messages("known", [{"n": 3}]) == 4
    assert [m["n"] for m in await store.load_history("known", last=50)] == [0, 1, 2, 3]
    assert [m["n"] for m in await store.load_history("blind", last=3)] == [8, 9, 10]
    with pytest.raises(MemoryUnavailableError):
        await store.load_history("blind", last=4)  # more than this process knows
    agentmem_proxy.restore()
    assert await store.flush_journal() == []
    assert len(await other.load_history("blind", last=50)) == 11


async def test_failed_delete_keeps_the_local_snapshot(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A delete_session that fails while Redis is down leaves what this process knew intact."""
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.save_context("s", {"a": 1})
    _down(agentmem_proxy)
    await store.update_context("s", {"b": 2})
    with pytest.raises(MemoryUnavailableError):
        await store.delete_session("s")
    assert await store.load_context("s") == {"a": 1, "b": 2}
    assert await _raw_context(agentmem_redis, agentmem_prefix, "s") == {b"a": b"1"}
    agentmem_proxy.restore()
    assert await store.flush_journal() == []
    assert await _raw_context(agentmem_redis, agentmem_prefix, "s") == {b"a": b"1", b"b": b"2"}


# -- issue 14: a replay respects a newer replace or delete ------------------------------------


async def test_replay_respects_a_newer_replace_by_another_process(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy_factory: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
) -> None:
    """A journaled update older than another process's save_context brings back no field."""
    proxy_a, proxy_b = agentmem_proxy_factory(), agentmem_proxy_factory()
    a = _journaled(agentmem_store_factory(url=proxy_a.url, **OFFLINE_FAST))
    b = _journaled(agentmem_store_factory(url=proxy_b.url, **OFFLINE_FAST))
    await a.save_context("c1", {"intent": "old"})
    _down(proxy_a)
    await a.update_context("c1", {"intent": "return", "note": "stale"})  # journaled
    await b.save_context("c1", {"phone": "1", "resolved": True})  # newer replace
    proxy_a.restore()
    assert await a.flush_journal() == []
    assert await _raw_context(agentmem_redis, agentmem_prefix, "c1") == {
        b"phone": b'"1"',
        b"resolved": b"true",
    }
    assert a.journal_dropped == []  # superseded by a newer write is not a loss
    assert await a.load_context("c1") == {"phone": "1", "resolved": True}


async def test_replay_respects_a_newer_delete_by_another_process(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy_factory: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
) -> None:
    """Journaled writes older than another process's delete_session/forget_user do not come back."""
    proxy_a, proxy_b = agentmem_proxy_factory(), agentmem_proxy_factory()
    a = _journaled(agentmem_store_factory(url=proxy_a.url, ttl=60, **OFFLINE_FAST))
    b = _journaled(agentmem_store_factory(url=proxy_b.url, ttl=60, **OFFLINE_FAST))
    await a.save_context("c1", {"intent": "old"})
    await a.append_messages("c1", [{"n": 0}])
    await a.remember("u1", {"lang": "zh"})
    await a.load_turn("c1", user_id="u1")
    _down(proxy_a)
    await a.update_context("c1", {"note": "stale"})
    await a.save_context("c1", {"intent": "again"})
    await a.append_messages("c1", [{"n": 1}])
    await a.remember("u1", {"vip": True})
    assert a.journal_backlog == 4
    assert await b.delete_session("c1") is True
    assert await b.forget_user("u1") is True
    proxy_a.restore()
    assert await a.flush_journal() == []
    keys = KeySchema(agentmem_prefix)
    session = keys.session("c1")
    assert await agentmem_redis.exists(*session.all()[:-1]) == 0
    assert await agentmem_redis.exists(keys.profile("u1")) == 0
    assert 0 < await agentmem_redis.pttl(session.deleted) <= 60_000
    assert a.journal_dropped == []
    assert await a.load_turn("c1", user_id="u1") == Turn(context=None, history=[], profile={})


async def test_replay_newer_than_a_delete_still_applies(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy_factory: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
) -> None:
    """A write journaled after another process's delete is replayed, and every key keeps the TTL."""
    proxy_a, proxy_b = agentmem_proxy_factory(), agentmem_proxy_factory()
    a = _journaled(agentmem_store_factory(url=proxy_a.url, ttl=60, **OFFLINE_FAST))
    b = _journaled(agentmem_store_factory(url=proxy_b.url, ttl=60, **OFFLINE_FAST))
    await a.save_context("c1", {"intent": "old"})
    await a.append_messages("c1", [{"n": 0}])
    assert await b.delete_session("c1") is True
    await _assert_every_key_has_ttl(agentmem_redis, agentmem_prefix, "c1", 60_000)
    _down(proxy_a)
    await a.update_context("c1", {"note": "new"})
    await a.append_messages("c1", [{"n": 1}])
    proxy_a.restore()
    assert await a.flush_journal() == []
    assert await _raw_context(agentmem_redis, agentmem_prefix, "c1") == {b"note": b'"new"'}
    assert [m["n"] for m in await b.load_history("c1")] == [1]
    await _assert_every_key_has_ttl(agentmem_redis, agentmem_prefix, "c1", 60_000)


async def test_every_session_key_shares_the_ttl_after_each_write(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """After every write, including one after a delete, each key of the session has the session TTL."""
    store = _journaled(agentmem_store_factory(ttl=60, fallback="journal"))
    await store.save_context("s", {"a": 1})
    await _assert_every_key_has_ttl(agentmem_redis, agentmem_prefix, "s", 60_000)
    await store.append_messages("s", [{"n": 0}])
    await _assert_every_key_has_ttl(agentmem_redis, agentmem_prefix, "s", 60_000)
    await store.delete_session("s")
    await _assert_every_key_has_ttl(agentmem_redis, agentmem_prefix, "s", 60_000)
    await store.update_context("s", {"b": 2})
    await _assert_every_key_has_ttl(agentmem_redis, agentmem_prefix, "s", 60_000)
    await store.append_messages("s", [{"n": 1}])
    keys = await _session_keys(agentmem_redis, agentmem_prefix, "s")
    assert len(keys) == 4  # context, history, append ids, and the delete's tombstone
    await _assert_every_key_has_ttl(agentmem_redis, agentmem_prefix, "s", 60_000)


# -- issue 14 item 7 and issue 9 item 6: a closed journal store; the journal is a layer -------


async def test_closed_journal_store_raises_and_journals_nothing(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """After aclose() every call raises StoreClosedError, up or down, and nothing is journaled or sent."""
    store = _journaled(agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST))
    await store.save_context("s", {"a": 1})
    await store.aclose()
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.save_context("s", {"a": 2}),
        lambda: store.update_context("s", {"b": 2}),
        lambda: store.append_messages("s", [{"n": 0}]),
        lambda: store.remember("u", {"x": 1}),
        lambda: store.load_context("s"),
        lambda: store.load_history("s"),
        lambda: store.recall("u"),
        lambda: store.load_turn("s", user_id="u"),
        lambda: store.delete_session("s"),
        lambda: store.forget_user("u"),
        lambda: store.flush_journal(),
    ]
    for down in (False, True):
        if down:
            _down(agentmem_proxy)
        for call in calls:
            with pytest.raises(StoreClosedError):
                await call()
    assert store.journal_backlog == 0
    assert await _raw_context(agentmem_redis, agentmem_prefix, "s") == {b"a": b"1"}
    assert await agentmem_redis.exists(KeySchema(agentmem_prefix).profile("u")) == 0
    await store.aclose()  # idempotent


async def test_journal_option_selects_the_layer(agentmem_server: Any, agentmem_prefix: str) -> None:
    """fallback="journal" gives a JournaledStore, still an AgentMemoryStore, from either constructor."""
    with pytest.warns(DeprecationWarning, match="goes in 0.4"):  # the class is the choice now
        by_url = AgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix, fallback="journal")
    client = Redis.from_url(agentmem_server.url)
    by_client = open_store(client, prefix=agentmem_prefix, fallback="journal")
    plain = AgentMemoryStore(client, prefix=agentmem_prefix)
    try:
        assert isinstance(by_url, JournaledStore)
        assert isinstance(by_url, AgentMemoryStore)
        assert isinstance(by_client, JournaledStore)
        assert not isinstance(plain, JournaledStore)
        assert not hasattr(plain, "journal_backlog")
    finally:
        await by_url.aclose()
        await by_client.aclose()
        await plain.aclose()
        await client.aclose()


async def test_delete_and_forget_work_past_maxmemory_and_leave_tombstones(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any
) -> None:
    """Under noeviction OOM a delete still frees the keys and leaves its tombstone with a TTL."""
    store = agentmem_store_factory(url=agentmem_private_server.url, ttl=60)
    admin = Redis.from_url(agentmem_private_server.url)
    keys = KeySchema(store.config.prefix)
    try:
        await store.save_context("s", {"a": 1})
        await store.append_messages("s", [{"n": 0}])
        await store.remember("u", {"lang": "zh"})
        async with memory_pressure(admin, 1, "noeviction"):
            with pytest.raises(MemoryFullError):
                await store.update_context("s", {"b": 2})
            assert await store.delete_session("s") is True
            assert await store.forget_user("u") is True
        session = keys.session("s")
        assert await admin.exists(*session.all()[:-1]) == 0
        assert await admin.exists(keys.profile("u")) == 0
        forgotten_key = keys.profile_keys("u")[1]
        assert 0 < await admin.pttl(session.deleted) <= 60_000
        assert 0 < await admin.pttl(forgotten_key) <= 60_000  # facts never expire: the session ttl
    finally:
        await admin.aclose()
