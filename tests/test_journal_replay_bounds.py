"""fallback="journal": what a replay long after the outage, or out of order, must still respect.

The journal's main behaviour is in ``test_journal.py``; these pin the two promises that
its tests' options hid: append ids kept for a TTL longer than 60 s, and deletes replayed
out of version order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, JournaledStore
from agentmem.keys import KeySchema
from agentmem.scripts import DELETE
from agentmem.store import write_version

StoreFactory = Callable[..., AgentMemoryStore]

OFFLINE_FAST = {
    "fallback": "journal",
    "socket_timeout": 0.3,
    "socket_connect_timeout": 0.3,
    "retries": 0,
    "breaker_threshold": 0,
}


def _journaled(store: AgentMemoryStore) -> JournaledStore:
    assert isinstance(store, JournaledStore)
    return store


async def test_append_ids_are_kept_for_the_session_ttl(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """ttl=3600: the append log (the ids that make a replayed append apply once) lives an hour, not 60 s."""
    store = _journaled(agentmem_store_factory(ttl=3600, fallback="journal"))
    await store.append_messages("s", [{"n": 0}])
    session = KeySchema(agentmem_prefix).session("s")
    assert 3_500_000 < await agentmem_redis.pttl(session.log) <= 3_600_000
    assert 3_500_000 < await agentmem_redis.pttl(session.history) <= 3_600_000


async def _delete_at(store: AgentMemoryStore, session_id: str, version: int) -> int:
    """delete_session as a process whose clock says ``version`` would send it (the one internal read)."""
    keys = store._session_keys(session_id).all()
    return int(await store._script("delete_session", DELETE, keys, (version, store._session_ttl_ms())))


@pytest.mark.single_node  # a proxy in front of the shared single server
async def test_deletes_out_of_version_order_keep_the_newer_tombstone(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy_factory: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
) -> None:
    """A newer delete, then an older one (a retry or a skewed clock): the newer tombstone stays,
    so a journaled update older than it, replayed after both, stays dropped."""
    proxy_a = agentmem_proxy_factory()
    a = _journaled(agentmem_store_factory(url=proxy_a.url, **OFFLINE_FAST))
    b = agentmem_store_factory()
    await a.save_context("c1", {"intent": "old"})
    await a.load_context("c1")
    proxy_a.refuse()
    proxy_a.reset()
    await a.update_context("c1", {"note": "stale"})  # journaled at version ~now
    assert a.journal_backlog == 1
    newer = write_version() + 3_600_000_000  # an hour ahead of the update
    assert await _delete_at(b, "c1", newer) > 0
    assert await _delete_at(b, "c1", 1) == 0  # older, arriving second
    session = KeySchema(agentmem_prefix).session("c1")
    assert await agentmem_redis.get(session.deleted) == str(newer).encode()
    assert await agentmem_redis.pttl(session.deleted) > 0
    proxy_a.restore()
    assert await a.flush_journal() == []
    assert await agentmem_redis.exists(*session.all()[:-1]) == 0  # the older update was dropped
    assert await b.load_context("c1") is None
