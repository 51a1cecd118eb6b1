"""Redis Cluster: big batches to one node lose no call; the breaker's probe waits for the node
the callers need.

The routing itself is in ``test_cluster.py``; these pin what a planted bug in the batcher
or the probe would change with every other test green.
"""

from __future__ import annotations

import asyncio
import time

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot

from agentmem import AgentMemoryStore
from agentmem.keys import KeySchema
from agentmem.pipeline import MAX_BATCH
from agentmem.testing.cluster import ClusterGroup
from agentmem.testing.fixtures import delete_cluster_prefix


def _slot(prefix: str, session_id: str) -> int:
    return key_slot(KeySchema(prefix).session(session_id).base.encode())


async def test_a_batch_of_more_than_max_batch_calls_to_one_node_loses_none(
    agentmem_cluster: list[str], agentmem_prefix: str
) -> None:
    """Five times MAX_BATCH concurrent writes to one session's node all complete and all land."""
    store = AgentMemoryStore.from_url(agentmem_cluster[0], prefix=agentmem_prefix)
    raw = RedisCluster.from_url(agentmem_cluster[0])
    try:
        await store.save_context("s", {})
        count = 5 * MAX_BATCH  # one session: one slot, one node, several pipelines of MAX_BATCH
        await asyncio.wait_for(
            asyncio.gather(*(store.update_context("s", {f"f{i}": i}) for i in range(count))), 20
        )
        assert await store.load_context("s") == {f"f{i}": i for i in range(count)}
        assert await raw.hlen(KeySchema(agentmem_prefix).session("s").context) == count
    finally:
        await raw.aclose()
        await store.aclose()
        await delete_cluster_prefix(agentmem_cluster, agentmem_prefix)


async def test_the_probe_waits_for_the_node_the_callers_need(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    """A primary killed under callers of its sessions: the breaker stays open until its replica is
    promoted (other primaries answering do not close it), and every caller succeeds after."""
    group = agentmem_private_cluster
    prefix = "probe"
    store = AgentMemoryStore.from_url(group.url, prefix=prefix, retry_deadline=20.0)
    try:
        await store.recall("warmup")
        victim = group.primary_for(_slot(prefix, "s0"))
        sessions = [f"s{i}" for i in range(400) if group.primary_for(_slot(prefix, f"s{i}")) == victim][:8]
        for sid in sessions:
            await store.save_context(sid, {"sid": sid})
        group.kill_primary(victim)
        started = time.monotonic()
        contexts = await asyncio.gather(*(store.load_context(sid) for sid in sessions))
        assert contexts == [{"sid": sid} for sid in sessions]
        # A probe that any other primary passes closes the breaker at once, the callers burn
        # their retries on the dead node and it opens again, many times within the failover.
        assert store.breaker.opened <= 2, store.breaker.opened
        assert time.monotonic() - started < 20.0
    finally:
        await store.aclose()  # the private cluster goes with the test
