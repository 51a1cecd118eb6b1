"""Redis Cluster: the store routes every call by slot, follows MOVED/ASK, and a failover.

The shared cluster (``agentmem_cluster``, 3 primaries + 3 replicas) serves the tests that
leave its nodes alone; a test that kills or reshards gets its own
(``agentmem_private_cluster``, ``cluster-node-timeout`` 1 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from stored import payload

from agentmem import (
    AgentMemoryError,
    AgentMemoryStore,
    InvalidArgumentError,
    ReplicationTimeoutError,
)
from agentmem.keys import KeySchema
from agentmem.testing.cluster import ClusterGroup, move_slot
from agentmem.testing.fixtures import StoreFactory, delete_cluster_prefix


async def _cmd(client: Redis, *args: object) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _slot(prefix: str, session_id: str) -> int:
    return key_slot(KeySchema(prefix).session(session_id).all()[0].encode())


def _user_slot(prefix: str, user_id: str) -> int:
    return key_slot(KeySchema(prefix).profile(user_id).encode())


async def _node_keys(url: str, prefix: str) -> set[bytes]:
    client = Redis.from_url(url)
    try:
        return {key async for key in client.scan_iter(match=prefix + ":*", count=500)}
    finally:
        await client.aclose()


async def test_every_operation_on_sessions_spread_over_all_primaries(
    agentmem_cluster_store: AgentMemoryStore, agentmem_cluster: list[str]
) -> None:
    store = agentmem_cluster_store
    prefix = store.config.prefix
    sessions = [f"s{i}" for i in range(24)]
    for i, sid in enumerate(sessions):
        await store.save_context(sid, {"n": i})
        await store.update_context(sid, {"intent": "refund"})
        assert await store.append_messages(sid, [{"role": "user", "content": f"m{i}"}]) == 1
        await store.remember(f"u{i}", {"lang": "fr", "n": i})
    for i, sid in enumerate(sessions):
        # The session and the user's facts sit in different slots, mostly on other nodes.
        turn = await store.load_turn(sid, user_id=f"u{i}")
        assert turn.context == {"n": i, "intent": "refund"}
        assert [m["content"] for m in turn.history] == [f"m{i}"]
        assert turn.profile == {"lang": "fr", "n": i}
    # The server's state: every primary holds keys, and each key is on the node owning its slot.
    transport: Any = store.engine.transport
    assert transport is not None
    primaries = transport.slots.primaries
    assert len(primaries) == 3
    for host, port in primaries:
        keys = await _node_keys(f"redis://{host}:{port}", prefix)
        assert keys, f"no key of the test on primary :{port}"
        for key in keys:
            assert transport.slots.node_for(key_slot(key)) == (host, port)
    context_key = KeySchema(prefix).session(sessions[1]).all()[0]
    host, port = transport.slots.node_for(key_slot(context_key.encode())) or ("", 0)
    client = Redis(host=host, port=port)
    try:
        assert 0 < await client.pttl(context_key) <= 3600_000
    finally:
        await client.aclose()
    assert set(transport.node_batches) == set(primaries)
    assert await store.delete_session(sessions[0]) is True
    assert await store.load_context(sessions[0]) is None
    assert await store.forget_user("u0") is True
    assert await store.recall("u0") == {}
    health = await store.health()
    assert health.pool_size == 3 * store.config.max_connections


async def test_load_turn_is_one_round_trip_per_node(
    agentmem_cluster_store: AgentMemoryStore,
) -> None:
    store = agentmem_cluster_store
    prefix = store.config.prefix
    await store.recall("warmup")  # detects the cluster, loads the slot map
    transport: Any = store.engine.transport
    assert transport is not None
    sid = next(f"s{i}" for i in range(100) if _slot(prefix, f"s{i}") < 5000)
    uid = next(f"u{i}" for i in range(100) if _user_slot(prefix, f"u{i}") > 11000)
    assert transport.slots.node_for(_slot(prefix, sid)) != transport.slots.node_for(_user_slot(prefix, uid))
    before = transport.batches
    await store.load_turn(sid, user_id=uid)
    assert transport.batches - before == 2


async def test_a_caller_owned_redis_cluster_client(agentmem_cluster: list[str], agentmem_prefix: str) -> None:
    client = RedisCluster.from_url(agentmem_cluster[1])
    store = AgentMemoryStore(client, prefix=agentmem_prefix)
    try:
        for i in range(6):
            await store.save_context(f"s{i}", {"i": i})
        assert [await store.load_context(f"s{i}") for i in range(6)] == [{"i": i} for i in range(6)]
        key = KeySchema(agentmem_prefix).session("s3").base
        assert await client.exists(key) == 1  # the caller's client sees the store's writes
    finally:
        await store.aclose()
        for i in range(6):
            await client.delete(*KeySchema(agentmem_prefix).session(f"s{i}").all())
        await client.aclose()


async def test_cluster_false_on_a_cluster_node_gets_moved_errors(
    agentmem_cluster: list[str], agentmem_prefix: str
) -> None:
    """Without slot routing (cluster=False) the sessions of other nodes fail with MOVED:
    what detection (the default) avoids."""
    store = AgentMemoryStore.from_url(agentmem_cluster[0], cluster=False, prefix=agentmem_prefix)
    errors: list[str] = []
    try:
        for i in range(12):
            try:
                await store.load_context(f"s{i}")
            except AgentMemoryError as exc:
                errors.append(str(exc))
    finally:
        await store.aclose()
    assert errors
    assert all("MovedError" in error for error in errors)


async def test_moved_after_a_slot_migration(agentmem_private_cluster: ClusterGroup) -> None:
    group = agentmem_private_cluster
    store = AgentMemoryStore.from_url(group.url, prefix="mv")
    try:
        await store.save_context("s", {"v": 1})
        slot = _slot("mv", "s")
        source = group.primary_for(slot)
        target = next(port for port in group.primary_ports() if port != source)
        assert move_slot(slot, source, target) >= 1
        transport: Any = store.engine.transport
        assert transport is not None
        assert transport.slots.node_for(slot) == ("127.0.0.1", source)  # still the old map
        assert await store.load_context("s") == {"v": 1}
        await store.update_context("s", {"w": 2})
        assert transport.redirects >= 1
        assert transport.slots.node_for(slot) == ("127.0.0.1", target)
        raw = Redis(port=target)
        try:
            assert payload(await raw.hget(KeySchema("mv").session("s").context, "w") or b"") == b"2"
        finally:
            await raw.aclose()
    finally:
        await store.aclose()


async def _append_until(
    store: AgentMemoryStore, sessions: list[str], stop: asyncio.Event, acked: dict[str, list[int]]
) -> tuple[int, int]:
    """Append sequence numbers to each session in turn; record the acknowledged ones.
    Returns (failed calls, ReplicationTimeoutErrors)."""
    failed = not_replicated = 0
    seq = 0
    while not stop.is_set():
        for sid in sessions:
            seq += 1
            try:
                await store.append_messages(sid, [{"role": "user", "content": str(seq)}])
            except ReplicationTimeoutError:
                not_replicated += 1
            except AgentMemoryError:
                failed += 1
                await asyncio.sleep(0.05)
            else:
                acked[sid].append(seq)
    return failed, not_replicated


async def _kill_under_load(group: ClusterGroup, wait_replicas: int) -> dict[str, float]:
    """kill -9 the primary of a set of sessions under append load; measure recovery and loss."""
    prefix = f"kill{wait_replicas}"
    store = AgentMemoryStore.from_url(
        group.url, prefix=prefix, max_history=1_000_000, wait_replicas=wait_replicas
    )
    try:
        await store.recall("warmup")
        victim = group.primary_for(_slot(prefix, "s0"))
        sessions = [f"s{i}" for i in range(400) if group.primary_for(_slot(prefix, f"s{i}")) == victim][:16]
        acked: dict[str, list[int]] = {sid: [] for sid in sessions}
        stop = asyncio.Event()
        writers = [asyncio.create_task(_append_until(store, sessions[i::4], stop, acked)) for i in range(4)]
        await asyncio.sleep(1.0)
        before_kill = sum(map(len, acked.values()))
        killed_at = time.monotonic()
        group.kill_primary(victim)
        # No caller action: the writers keep calling; the first read that succeeds after
        # the kill is timed.
        first_success = None
        deadline = killed_at + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if await _succeeds(store, sessions[0]):
                first_success = time.monotonic() - killed_at
                break
        assert first_success is not None, "no call succeeded within 30 s of the kill"
        await asyncio.sleep(1.0)
        stop.set()
        results = await asyncio.gather(*writers)
        after = sum(map(len, acked.values()))
        not_replicated = sum(r[1] for r in results)
        # The writers themselves reached the promoted primary, with no action by them (with
        # wait_replicas=1 it has no replica left to confirm: ReplicationTimeoutError, honestly).
        assert after > before_kill or (wait_replicas and not_replicated > 0)
        group.wait_ready()
        assert store.breaker.state == "closed"  # its probe (every primary answers) passed
        lost = 0
        for sid, seqs in acked.items():
            history = await store.load_history(sid, last=1_000_000)
            stored = {int(m["content"]) for m in history}
            lost += len(set(seqs) - stored)
        return {
            "first_success_s": first_success,
            "acked": after,
            "lost": lost,
            "failed": sum(r[0] for r in results),
            "not_replicated": not_replicated,
        }
    finally:
        await store.aclose()


async def _succeeds(store: AgentMemoryStore, sid: str) -> bool:
    try:
        await store.load_context(sid)
    except AgentMemoryError:
        return False
    return True


async def test_kill_9_of_a_primary_with_wait_replicas_1_loses_nothing(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    result = await _kill_under_load(agentmem_private_cluster, wait_replicas=1)
    print(f"\ncluster kill -9, wait_replicas=1: {result}")
    assert result["lost"] == 0
    assert result["first_success_s"] < 20


async def test_kill_9_of_a_primary_with_wait_replicas_0_recovers(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    """The default: calls succeed again after the promotion with no caller action; acknowledged
    writes the replica had not received are lost (counted and printed, not asserted)."""
    result = await _kill_under_load(agentmem_private_cluster, wait_replicas=0)
    print(f"\ncluster kill -9, wait_replicas=0: {result}")
    assert result["first_success_s"] < 20


# -- wait_replicas on a single server (no replica) ----------------------------------------------


@pytest.mark.single_node  # the shared single server has no replica; the cluster has one each
async def test_wait_replicas_without_replicas_raises_and_the_write_is_on_the_primary(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    store = agentmem_store_factory(wait_replicas=1, wait_timeout=timedelta(milliseconds=100))
    with pytest.raises(ReplicationTimeoutError, match="safe to repeat") as info:
        await store.save_context("s", {"a": 1})
    assert info.value.replicas == 0
    saved = await agentmem_redis.get(KeySchema(agentmem_prefix).session("s").base)  # save_context's object
    assert saved is not None  # applied on the primary
    assert orjson.loads(payload(saved)) == {"a": 1}
    # Reads are not affected, and the error was not retried nor fed to the breaker.
    assert await store.load_context("s") == {"a": 1}
    assert store.retry_stats.retries == 0
    assert store.breaker.state == "closed"
    # Repeating is safe: an append repeated after the error does not duplicate.
    with pytest.raises(ReplicationTimeoutError):
        await store.append_messages("s", [{"role": "user", "content": "x"}])
    assert await agentmem_redis.llen(KeySchema(agentmem_prefix).session("s").history) == 1


@pytest.mark.single_node
async def test_wait_replicas_covers_adapter_writes_not_reads(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """An adapter's write script is acknowledged like the store's own (WAIT follows it); a
    read is not."""
    pytest.importorskip("agents")
    from agentmem.integrations.openai_agents import AgentMemorySession

    store = agentmem_store_factory(wait_replicas=1, wait_timeout=timedelta(milliseconds=50))
    await agentmem_redis.rpush(KeySchema(agentmem_prefix).session("s").history, b'{"n":1}')
    session = AgentMemorySession("s", store)
    with pytest.raises(ReplicationTimeoutError):
        await session.pop_item()  # applied on the primary, then WAIT found no replica
    assert await agentmem_redis.llen(KeySchema(agentmem_prefix).session("s").history) == 0
    before = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    assert await session.get_items() == []
    after = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    assert after == before


async def test_wait_replicas_sends_no_wait_after_plain_reads(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """The store's reads sent as plain commands (load_history's LRANGE, recall's HGETALL) or
    as a transaction (load_context) are reads: no WAIT follows them, so without a replica
    they answer instead of raising ReplicationTimeoutError."""
    store = agentmem_store_factory(wait_replicas=1, wait_timeout=timedelta(milliseconds=50))
    keys = KeySchema(agentmem_prefix)
    await agentmem_redis.rpush(keys.session("s").history, b'{"n":1}')
    await agentmem_redis.hset(keys.profile("u"), "lang", b"\x00" * 8 + b'"zh"')
    before = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    assert await store.load_history("s", last=5) == [{"n": 1}]
    assert await store.recall("u") == {"lang": "zh"}
    assert await store.load_context("s") is None  # a MULTI/EXEC of reads and refreshes
    after = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    assert after == before


@pytest.mark.single_node
async def test_wait_replicas_covers_an_adapter_write_outside_a_script(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis
) -> None:
    """LangGraph's adelete_for_runs ends with a plain UNLINK of the run index: WAIT follows it
    too (no replica here: ReplicationTimeoutError), as for every write."""
    pytest.importorskip("langgraph")
    from agentmem.integrations.langgraph import AgentMemorySaver

    store = agentmem_store_factory(wait_replicas=1, wait_timeout=timedelta(milliseconds=50))
    before = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    with pytest.raises(ReplicationTimeoutError):
        await AgentMemorySaver(store).adelete_for_runs(["never-ran"])  # SMEMBERS (empty), then UNLINK
    after = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    assert after > before


async def test_wait_replicas_0_sends_no_wait(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis
) -> None:
    store = agentmem_store_factory()
    before = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    await store.save_context("s", {"a": 1})
    after = (await agentmem_redis.info("commandstats")).get("cmdstat_wait", {}).get("calls", 0)
    assert after == before


@pytest.mark.single_node
async def test_wait_timeout_at_or_above_socket_timeout_waits_it_out(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """wait_timeout needs no relation to socket_timeout: a pipeline carrying WAIT is read under
    socket_timeout + wait_timeout, so a 1.2 s WAIT with the 1 s socket_timeout is a
    ReplicationTimeoutError after ~1.2 s (the write on the primary), not a lost connection."""
    store = agentmem_store_factory(wait_replicas=1, wait_timeout=1.2)
    # Warm up this store's script runner first: a store's first script call on Redis 6.2 meets
    # NOSCRIPT (it tries the flagged text first), and the reload's resend waits a second time.
    with pytest.raises(ReplicationTimeoutError):
        await store.append_messages("warm", [{"n": 0}])
    started = time.monotonic()
    with pytest.raises(ReplicationTimeoutError):
        await store.append_messages("s", [{"role": "user", "content": "x"}])
    assert 1.1 < time.monotonic() - started < 2.0
    assert await agentmem_redis.llen(KeySchema(agentmem_prefix).session("s").history) == 1
    assert store.retry_stats.retries == 0
    assert store.breaker.consecutive_failures == 0
    with pytest.raises(InvalidArgumentError, match="wait_replicas"):
        AgentMemoryStore.from_url("redis://127.0.0.1:1", wait_replicas=-1)


@dataclasses.dataclass
class _Migration:
    """A slot half-way through a migration from ``source`` to ``target`` (its keys moved)."""

    src: Redis
    dst: Redis
    slot: int
    source: int
    target: int
    target_id: str

    async def finish(self) -> None:
        """The slot now belongs to the target: MOVED from now on."""
        for client in (self.dst, self.src):
            await _cmd(client, "CLUSTER SETSLOT", self.slot, "NODE", self.target_id)


@contextlib.asynccontextmanager
async def _migrating(group: ClusterGroup, keys: list[str]) -> AsyncIterator[_Migration]:
    """Start migrating the slot of ``keys`` (one slot) to another primary and move them there."""
    slot = key_slot(keys[0].encode())
    source = group.primary_for(slot)
    target = next(port for port in group.primary_ports() if port != source)
    src, dst = Redis(port=source), Redis(port=target)
    try:
        target_id = (await _cmd(dst, "CLUSTER MYID")).decode()
        source_id = (await _cmd(src, "CLUSTER MYID")).decode()
        await _cmd(dst, "CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        await _cmd(src, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        await _cmd(src, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
        yield _Migration(src, dst, slot, source, target, target_id)
    finally:
        await src.aclose()
        await dst.aclose()


async def test_ask_during_a_migration_reaches_the_transactions_too(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    """load_context and save_context are MULTI/EXEC transactions: mid-migration, with the
    session's keys already on the importing node, the source answers a queued command with
    ASK; the store sends ASKING and the whole transaction there (the ASKING flag holds
    through MULTI...EXEC), reads what is there and writes there, not on the source. (With a
    key of the transaction missing on both nodes the importing node answers TRYAGAIN, as it
    does to a script's keys, until the migration ends: here every key exists.)"""
    group = agentmem_private_cluster
    store = AgentMemoryStore.from_url(group.url, prefix="askx")
    try:
        await store.delete_session("s")  # a tombstone
        await store.save_context("s", {"v": 1})
        await store.update_context("s", {"w": 2})
        await store.append_messages("s", [{"n": 1}])
        session = KeySchema("askx").session("s")
        keys = [session.context, session.base, session.history, session.deleted, session.log]
        async with _migrating(group, keys) as migration:
            src, dst, slot = migration.src, migration.dst, migration.slot
            assert await _cmd(src, "CLUSTER COUNTKEYSINSLOT", slot) == 0
            transport: Any = store.engine.transport
            before = transport.redirects
            assert await store.load_context("s") == {"v": 1, "w": 2}
            await store.save_context("s", {"v": 3})
            assert transport.redirects >= before + 2
            assert await _cmd(src, "CLUSTER COUNTKEYSINSLOT", slot) == 0  # nothing written on the source
            await migration.finish()
            assert await dst.exists(session.base) == 1
            assert await dst.exists(session.context) == 0  # the save's DEL ran there
            assert await store.load_context("s") == {"v": 3}
    finally:
        await store.aclose()


async def test_ask_during_a_migration_reads_from_the_importing_node(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    """A slot half-way through a migration: a key already moved is answered with ASK; the
    store sends ASKING and the call to the importing node (loading its scripts there on
    NOSCRIPT), and leaves its slot map alone (the slot still belongs to the source)."""
    group = agentmem_private_cluster
    store = AgentMemoryStore.from_url(group.url, prefix="ask")
    try:
        await store.remember("u", {"lang": "fr"})
        key = KeySchema("ask").profile("u")
        async with _migrating(group, [key]) as migration:
            src, dst, slot = migration.src, migration.dst, migration.slot
            source, target = migration.source, migration.target
            assert await _cmd(src, "CLUSTER COUNTKEYSINSLOT", slot) == 0
            assert await _cmd(dst, "CLUSTER COUNTKEYSINSLOT", slot) >= 1
            transport: Any = store.engine.transport
            assert transport is not None
            assert await store.recall("u") == {"lang": "fr"}
            assert transport.redirects >= 1
            assert transport.slots.node_for(slot) == ("127.0.0.1", source)
            # Finish the migration: MOVED from now on, and the map follows.
            await migration.finish()
            assert await store.recall("u") == {"lang": "fr"}
            assert transport.slots.node_for(slot) == ("127.0.0.1", target)
    finally:
        await store.aclose()


@pytest.mark.cluster
@pytest.mark.slow
def test_bench_topology_cluster_reports_pipelines_per_node(tmp_path: Path) -> None:
    """``agentmem bench --topology cluster`` runs both topologies and shows each primary's
    pipelines (speed is never asserted)."""
    from agentmem.bench.run import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--topology", "cluster", "--quick", "--duration", "0.1", "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "topology.json").read_text())
    rows = {(r["topology"], r["operation"], r["concurrency"]): r for r in results["rows"]}
    assert set(rows) == {
        (t, o, c) for t in ("single", "cluster") for o in ("pair", "load_turn") for c in (64, 256)
    }
    for (topology, _, _), row in rows.items():
        assert row["ops_per_s"] > 0
        if topology == "cluster":
            assert len(row["pipelines_per_node"]) == 3
            assert all(n > 0 for n in row["pipelines_per_node"].values())
    assert "per-node pipelines" in out.getvalue()


async def test_cluster_true_routes_by_slot_without_asking(
    agentmem_cluster: list[str], agentmem_prefix: str
) -> None:
    """cluster=True skips the INFO detection: the first call already goes by slot."""
    store = AgentMemoryStore.from_url(agentmem_cluster[2], cluster=True, prefix=agentmem_prefix)
    try:
        transport: Any = store.engine.transport
        assert transport.known  # told: nothing to ask
        assert await store.engine.topology() == "cluster"
        for i in range(6):
            await store.remember(f"u{i}", {"i": i})
        assert [await store.recall(f"u{i}") for i in range(6)] == [{"i": i} for i in range(6)]
        assert len(transport.node_batches) >= 2
    finally:
        await store.aclose()
        assert await delete_cluster_prefix(agentmem_cluster, agentmem_prefix) >= 6


def test_cluster_true_with_a_sentinel_url_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="Sentinel"):
        AgentMemoryStore.from_url("redis+sentinel://127.0.0.1:26379/agentmem", cluster=True)
