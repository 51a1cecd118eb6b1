"""The journal's edges (issue 19): what a journaled store reports during an outage, when
``flush_journal()`` gives up, and how a replay whose write the primary applied is counted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, JournaledStore
from agentmem.keys import KeySchema

StoreFactory = Callable[..., AgentMemoryStore]

#: The proxy fronts one server (on the cluster topology it would meet MOVED), and the
#: wait_replicas test needs a server without replicas.
pytestmark = pytest.mark.single_node


def _journaled(store: AgentMemoryStore) -> JournaledStore:
    assert isinstance(store, JournaledStore)
    return store


def _down(proxy: Any) -> None:
    """Cut open connections and refuse new ones: Redis is unreachable, its data intact."""
    proxy.refuse()
    proxy.reset()


async def _open_breaker(store: JournaledStore) -> int:
    """Journal writes until the store's breaker opens; how many were journaled."""
    written = 0
    while not store.breaker.is_open:
        await store.append_messages("s", [{"n": written}])
        written += 1
        assert written < 50, "the breaker never opened"
    return written


async def test_health_answers_during_an_outage_and_flush_probes_first(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """During an outage health() reports what the process knows (breaker state, journal backlog,
    server fields None, skipped says why) without raising or waiting; flush_journal() right as the
    network returns probes the server itself instead of reporting everything pending until the
    breaker's next probe (5 s away here)."""
    store = _journaled(
        agentmem_store_factory(
            url=agentmem_proxy.url,
            fallback="journal",
            socket_timeout=0.3,
            socket_connect_timeout=0.3,
            retry_deadline=0.5,
            breaker_probe_interval=5.0,
        )
    )
    await store.load_history("s")  # the history is known: journaled appends need nothing else
    _down(agentmem_proxy)
    journaled = await _open_breaker(store)
    await asyncio.sleep(0.6)  # the outage is older than retry_deadline: callers fail fast
    loop = asyncio.get_running_loop()
    started = loop.time()
    health = await store.health()
    assert loop.time() - started < 0.2
    assert health.breaker_state == "failing_fast"
    assert health.journal_backlog == journaled
    assert (health.server, health.server_version, health.latency_ms) == (None, None, None)
    assert any("unreachable" in line for line in health.skipped)

    agentmem_proxy.restore()
    assert await store.flush_journal() == []
    history = KeySchema(agentmem_prefix).session("s").history
    assert await agentmem_redis.llen(history) == journaled
    assert (await store.health()).breaker_state == "closed"


async def test_replay_the_primary_applied_is_not_lost_when_replicas_lag(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """fallback="journal" with wait_replicas: a replay that reached the primary but no replica
    (ReplicationTimeoutError) counts as applied: not in journal_dropped, aclose() raises nothing,
    and the append is stored once."""
    store = _journaled(
        agentmem_store_factory(
            url=agentmem_proxy.url,
            fallback="journal",
            socket_timeout=0.3,
            socket_connect_timeout=0.3,
            retries=0,
            breaker_threshold=0,
            wait_replicas=1,
            wait_timeout=0.05,
        )
    )
    assert await store.load_history("s") == []
    assert await store.load_context("s") is None
    _down(agentmem_proxy)
    await store.append_messages("s", [{"n": 1}])
    await store.update_context("s", {"step": 2})
    assert store.journal_backlog == 2
    agentmem_proxy.restore()
    assert await store.flush_journal() == []
    assert store.journal_dropped == []
    keys = KeySchema(agentmem_prefix).session("s")
    assert await agentmem_redis.llen(keys.history) == 1
    assert await agentmem_redis.hexists(keys.context, "step")
    await store.aclose()  # nothing lost: no UnflushedJournalError


async def test_journaled_append_applies_once_whatever_a_shorter_window_writer_does(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A journaled append applied with its reply lost is replayed once, even after another writer
    with a shorter append window (1 s here; 60 s for default stores) appended to the session and
    that window passed: the log's expiry only grows, and each id keeps its own window."""
    store = _journaled(
        agentmem_store_factory(
            url=agentmem_proxy.url,
            fallback="journal",
            socket_timeout=0.3,
            socket_connect_timeout=0.3,
            retries=0,
            breaker_threshold=0,
        )
    )
    other = agentmem_store_factory()
    other.engine.append_window_ms = 1000  # a writer that remembers its ids for 1 s only
    assert await store.append_messages("s", [{"n": 0}]) == 1
    agentmem_proxy.cut_next_reply()
    await store.append_messages("s", [{"n": 1}])  # applied; the reply is lost: journaled
    assert store.journal_backlog == 1
    assert await other.append_messages("s", [{"n": 2}]) == 3
    log = KeySchema(agentmem_prefix).session("s").log
    assert await agentmem_redis.pttl(log) > 60_000  # the journaled writer's window still holds
    await asyncio.sleep(2.2)  # the other writer's window is over
    assert await store.flush_journal() == []
    history = await agentmem_redis.lrange(KeySchema(agentmem_prefix).session("s").history, 0, -1)
    assert [orjson.loads(m)["n"] for m in history] == [0, 1, 2]


async def test_replay_applied_but_wait_refused_is_not_lost(
    agentmem_server_factory: Any, agentmem_proxy_factory: Any, agentmem_store_factory: StoreFactory
) -> None:
    """wait_replicas under an ACL rule without WAIT: a replay the primary applied but whose WAIT was
    refused counts as written back (not in journal_dropped), and its append is stored once."""
    from agentmem.acl import acl_setuser_args

    server = agentmem_server_factory()
    admin = Redis.from_url(server.url)
    try:
        await admin.execute_command("ACL", "SETUSER", *acl_setuser_args("t", "t", password="t-pw"))  # type: ignore[no-untyped-call]
        proxy = agentmem_proxy_factory(server.url)
        store = _journaled(
            agentmem_store_factory(
                url=proxy.url,
                prefix="t",
                client_name=None,
                username="t",
                password="t-pw",
                fallback="journal",
                socket_timeout=0.3,
                socket_connect_timeout=0.3,
                retries=0,
                breaker_threshold=0,
                wait_replicas=1,
            )
        )
        assert await store.load_history("s") == []
        _down(proxy)
        await store.append_messages("s", [{"n": 1}])
        proxy.restore()
        assert await store.flush_journal() == []
        assert store.journal_dropped == []
        assert await admin.llen(KeySchema("t").session("s").history) == 1
    finally:
        await admin.aclose()
