"""One dead or hung shard never stops the healthy shards (issue 19, findings 2 and 8).

Each test forms a private cluster with the server's default ``cluster-node-timeout`` (15 s),
so for the whole test the cluster still names the lost primary: no failover comes to the
rescue, as in production during the first 15 s of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import pytest
from redis import Redis as SyncRedis
from redis.crc import key_slot

from agentmem import AgentMemoryError, AgentMemoryStore, MemoryUnavailableError
from agentmem.keys import KeySchema
from agentmem.testing.cluster import PRIMARIES, ClusterGroup
from agentmem.testing.plugin import plugin_state

#: dead_shard: what is tested is the client's accounting, not a server version's behaviour, so
#: .ci/run runs these in its first stage only (and checks that they ran there).
pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.dead_shard]

PREFIX = "shards"
TURNS_SECONDS = 8.0
#: An agent's think time between turns (an LLM call).
THINK_SECONDS = 1.0


@pytest.fixture
def production_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterGroup]:
    """A private 3+3 cluster with cluster-node-timeout 15000 (the server's default)."""
    binary = plugin_state(request.config).private_binary()
    group = ClusterGroup(binary, tmp_path_factory.mktemp("agentmem-cluster-15s"), node_timeout=15.0)
    try:
        yield group.start()
    finally:
        group.stop()


def _sessions_by_primary(group: ClusterGroup) -> dict[int, list[str]]:
    """Three session ids per primary port."""
    found: dict[int, list[str]] = {port: [] for port in group.primary_ports()}
    keys = KeySchema(PREFIX)
    i = 0
    while any(len(ids) < 3 for ids in found.values()):
        sid = f"s{i}"
        port = group.primary_for(key_slot(keys.session(sid).context.encode()))
        if len(found[port]) < 3:
            found[port].append(sid)
        i += 1
    return found


async def _turns(store: AgentMemoryStore, healthy: list[str], dead: str) -> tuple[list[float], list[str]]:
    """Agents on healthy shards take a turn every THINK_SECONDS for TURNS_SECONDS while one agent keeps
    calling the dead shard: each healthy turn's latency, and the errors healthy turns met."""
    latencies: list[float] = []
    errors: list[str] = []
    stop = time.monotonic() + TURNS_SECONDS

    async def agent(sid: str) -> None:
        while time.monotonic() < stop:
            started = time.monotonic()
            try:
                await store.load_turn(sid)
            except AgentMemoryError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(THINK_SECONDS)

    async def dead_agent() -> None:
        while time.monotonic() < stop:
            with pytest.raises(MemoryUnavailableError):
                await store.save_context(dead, {"step": 1})
            await asyncio.sleep(0.1)

    await asyncio.gather(dead_agent(), *(agent(sid) for sid in healthy))
    return latencies, errors


async def _run(
    group: ClusterGroup, *, lose_for_good: bool, hang: bool = False
) -> tuple[list[float], list[str]]:
    by_primary = _sessions_by_primary(group)
    victim = sorted(by_primary)[0]
    healthy = [ids[0] for port, ids in by_primary.items() if port != victim]  # one agent per shard
    seed = next(node.url for node in group.nodes if node.port != victim)
    store = AgentMemoryStore.from_url(seed, prefix=PREFIX)
    try:
        for sid in healthy + by_primary[victim]:
            await store.save_context(sid, {"step": 0})
        node = group.node_on(victim)
        if hang:
            node.pause()
        else:
            node.kill()
        if lose_for_good:
            index = group.nodes.index(node)
            group.nodes[index + PRIMARIES].kill()  # its replica too: the shard is gone
        latencies, errors = await _turns(store, healthy, by_primary[victim][0])
        errors += [f"the breaker opened {store.breaker.opened} times"] if store.breaker.opened else []
        return latencies, errors
    finally:
        if hang:
            group.node_on(victim).resume()
        await store.aclose()


async def test_a_killed_primary_does_not_stop_the_healthy_shards(production_cluster: ClusterGroup) -> None:
    """kill -9 of one primary, node timeout 15 s: for 8 s every turn on the two healthy shards
    succeeds (the breaker never opens) while the dead shard's caller gets MemoryUnavailableError."""
    latencies, errors = await _run(production_cluster, lose_for_good=False)
    assert errors == []
    assert len(latencies) >= 14


async def test_a_shard_lost_for_good_without_full_coverage(production_cluster: ClusterGroup) -> None:
    """cluster-require-full-coverage no, a primary and its replica killed: the healthy shards keep
    serving every turn."""
    for node in production_cluster.nodes:
        with SyncRedis(port=node.port) as client:
            client.config_set("cluster-require-full-coverage", "no")
    latencies, errors = await _run(production_cluster, lose_for_good=True)
    assert errors == []
    assert len(latencies) >= 14


async def test_a_hung_primary_does_not_stall_the_healthy_shards(production_cluster: ClusterGroup) -> None:
    """SIGSTOP of one primary: healthy-shard turns neither fail nor wait for the hung node
    (socket_timeout 1 s): slot-map refreshes ask a node that answers."""
    latencies, errors = await _run(production_cluster, lose_for_good=False, hang=True)
    assert errors == []
    slow = [round(t, 2) for t in latencies if t > 0.5]
    assert slow == [], f"{len(slow)} of {len(latencies)} healthy turns took over 0.5 s: {slow}"


async def test_a_dead_shards_failures_alone_never_open_the_store_breaker(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    """Failed round trips to one dead primary, with no other traffic between them, are counted for
    that node only: the store-wide breaker stays closed (it hears of failures only while every
    primary fails), whether the call then fails or meets the promoted replica."""
    group = agentmem_private_cluster
    by_primary = _sessions_by_primary(group)
    victim = sorted(by_primary)[0]
    seed = next(node.url for node in group.nodes if node.port != victim)
    store = AgentMemoryStore.from_url(seed, prefix=PREFIX)
    try:
        dead = by_primary[victim][0]
        await store.save_context(dead, {"step": 0})
        group.node_on(victim).kill()
        # no promotion within retry_deadline: typed, and the shard's own failure
        with contextlib.suppress(MemoryUnavailableError):
            await store.save_context(dead, {"step": 1})
        assert store.breaker.opened == 0
        assert store.breaker.state.value == "closed"
    finally:
        await store.aclose()
