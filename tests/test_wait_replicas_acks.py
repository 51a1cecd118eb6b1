"""``wait_replicas``: exactly enough replicas is a success; deletes are acknowledged as writes are.

The Sentinel and cluster failovers are in ``test_wait_replicas.py`` and ``test_cluster.py``;
here the count itself: a server with exactly one replica (single server and the shared
cluster, one replica per primary) and the shared single server, which has none.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from stored import payload

from agentmem import AgentMemoryStore, ReplicationTimeoutError
from agentmem.keys import KeySchema
from agentmem.testing.fixtures import StoreFactory, delete_cluster_prefix


async def _replica_in_sync(primary: Redis, replica: Redis) -> None:
    """Wait until the replica's link is up and the primary counts it."""
    for _ in range(500):
        info = await replica.info("replication")
        counted = (await primary.info("replication")).get("connected_slaves", 0)
        if info.get("master_link_status") == "up" and counted == 1:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the replica never synced")


async def test_a_write_acknowledged_by_exactly_wait_replicas_replicas_succeeds(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """wait_replicas=1 on a server with one replica: writes and deletes succeed and are on the replica."""
    primary_server = agentmem_server_factory()
    replica_server = agentmem_server_factory(replicaof=f"127.0.0.1 {primary_server.port}")
    primary, replica = Redis.from_url(primary_server.url), Redis.from_url(replica_server.url)
    try:
        await _replica_in_sync(primary, replica)
        store = agentmem_store_factory(url=primary_server.url, wait_replicas=1)
        keys = KeySchema(agentmem_prefix).session("s")
        await store.save_context("s", {"a": 1})
        assert await store.append_messages("s", [{"role": "user", "content": "hi"}]) == 1
        await store.remember("u", {"lang": "fr"})
        # Acknowledged means the replica has it now (WAIT returned after it did).
        assert orjson.loads(payload(await replica.get(keys.base))) == {"a": 1}
        assert await replica.llen(keys.history) == 1
        assert await store.delete_session("s") is True
        assert await replica.exists(keys.base, keys.history) == 0
        assert store.retry_stats.retries == 0
    finally:
        await primary.aclose()
        await replica.aclose()


async def test_a_cluster_write_acknowledged_by_exactly_wait_replicas_replicas_succeeds(
    agentmem_cluster: list[str], agentmem_prefix: str
) -> None:
    """wait_replicas=1 on the shared cluster (one replica per primary): writes on every node succeed."""
    store = AgentMemoryStore.from_url(agentmem_cluster[0], prefix=agentmem_prefix, wait_replicas=1)
    try:
        for i in range(12):  # sessions and users spread over the three primaries
            await store.save_context(f"s{i}", {"n": i})
            assert await store.append_messages(f"s{i}", [{"role": "user", "content": "m"}]) == 1
            await store.remember(f"u{i}", {"n": i})
        assert await store.delete_session("s0") is True
        assert (await store.load_turn("s1", user_id="u1")).profile == {"n": 1}
        assert store.retry_stats.retries == 0
    finally:
        await store.aclose()
        await delete_cluster_prefix(agentmem_cluster, agentmem_prefix)


@pytest.mark.single_node  # the shared single server has no replica; the cluster has one each
async def test_wait_replicas_covers_deletes(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """delete_session and forget_user without a replica: ReplicationTimeoutError, the delete applied."""
    store = agentmem_store_factory(wait_replicas=1, wait_timeout=timedelta(milliseconds=50))
    keys = KeySchema(agentmem_prefix)
    await agentmem_redis.set(keys.session("s").base, b"x")
    await agentmem_redis.hset(keys.profile("u"), "lang", b"fr")
    with pytest.raises(ReplicationTimeoutError, match="safe to repeat"):
        await store.delete_session("s")
    with pytest.raises(ReplicationTimeoutError, match="safe to repeat"):
        await store.forget_user("u")
    assert await agentmem_redis.exists(keys.session("s").base, keys.profile("u")) == 0  # applied
    assert store.retry_stats.retries == 0
