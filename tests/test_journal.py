"""fallback="journal": writes survive an outage in process memory and reach Redis after it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, MemoryUnavailableError, UnflushedJournalError
from agentmem.keys import KeySchema

StoreFactory = Callable[..., AgentMemoryStore]

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
    fields: dict[Any, Any] = await redis.hgetall(KeySchema(prefix).session(session_id).context)
    return {k: v for k, v in fields.items() if k[:1] not in (b"\xfe", b"\xff")}


async def test_outage_writes_are_journaled_read_back_and_replayed(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """During an outage writes are acknowledged, loads merge them, and recovery replays them once."""
    store = agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST)
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
    offline = agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST)
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
    offline = agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST)
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
    store = agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST)
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
    store = agentmem_store_factory(
        url=agentmem_proxy.url, journal_max_sessions=1, journal_max_bytes=200, **OFFLINE_FAST
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
    store = agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST)
    await store.load_context("warm")
    _down(agentmem_proxy)
    with pytest.raises(MemoryUnavailableError):
        await store.load_context("never-seen")


async def test_aclose_names_writes_it_could_not_flush(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """Closing during an outage raises UnflushedJournalError listing what Redis never got."""
    store = agentmem_store_factory(url=agentmem_proxy.url, **OFFLINE_FAST)
    await store.load_context("warm")
    _down(agentmem_proxy)
    await store.update_context("s", {"a": 1})
    with pytest.raises(UnflushedJournalError) as info:
        await store.aclose()
    assert info.value.pending == [("update", "s")]
