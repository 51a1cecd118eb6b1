"""``wait_replicas`` under a Sentinel failover: acknowledged writes lost after ``kill -9``.

Each test gets its own Sentinel group (``agentmem_sentinel``: primary, one replica, three
sentinels, ``down-after-milliseconds`` 1 s). Writers append numbered messages; the primary
is killed under that load; after the promotion every acknowledged message is looked for.
With ``wait_replicas=1`` none may be missing; with the default ``0`` the count is printed
(asynchronous replication: a write acknowledged just before the kill can be gone).
"""

from __future__ import annotations

import asyncio
import time

from agentmem import AgentMemoryError, AgentMemoryStore, ReplicationTimeoutError
from agentmem.testing.sentinel import SentinelGroup

SESSIONS = 8


async def _writer(
    store: AgentMemoryStore, sessions: list[str], stop: asyncio.Event, acked: dict[str, list[int]], base: int
) -> int:
    """Append numbered messages round-robin; record the acknowledged ones; return refusals."""
    refused = 0
    seq = base
    while not stop.is_set():
        for sid in sessions:
            seq += 1
            try:
                await store.append_messages(sid, [{"role": "user", "content": str(seq)}])
            except (ReplicationTimeoutError, AgentMemoryError):
                refused += 1
                await asyncio.sleep(0.05)
            else:
                acked[sid].append(seq)
    return refused


async def _kill_under_load(group: SentinelGroup, wait_replicas: int) -> dict[str, float]:
    store = AgentMemoryStore.from_url(
        group.url, prefix=f"wait{wait_replicas}", max_history=1_000_000, wait_replicas=wait_replicas
    )
    try:
        sessions = [f"s{i}" for i in range(SESSIONS)]
        acked: dict[str, list[int]] = {sid: [] for sid in sessions}
        stop = asyncio.Event()
        writers = [
            asyncio.create_task(_writer(store, sessions[i::4], stop, acked, base=i * 10_000_000))
            for i in range(4)
        ]
        await asyncio.sleep(1.0)
        old = group.primary_address()
        killed_at = time.monotonic()
        group.kill_primary()
        first_success = None
        while time.monotonic() < killed_at + 30:
            await asyncio.sleep(0.02)
            try:
                await store.load_context(sessions[0])
            except AgentMemoryError:
                continue
            first_success = time.monotonic() - killed_at
            break
        assert first_success is not None, "no call succeeded within 30 s of the kill"
        group.wait_for_promotion(old)
        await asyncio.sleep(0.5)
        stop.set()
        refused = sum(await asyncio.gather(*writers))
        lost = 0
        for sid, seqs in acked.items():
            stored = {int(m["content"]) for m in await store.load_history(sid, last=1_000_000)}
            lost += len(set(seqs) - stored)
        return {
            "first_success_s": round(first_success, 2),
            "acked": sum(map(len, acked.values())),
            "lost": lost,
            "refused": refused,
        }
    finally:
        await store.aclose()


async def test_sentinel_kill_9_with_wait_replicas_1_loses_no_acknowledged_write(
    agentmem_sentinel: SentinelGroup,
) -> None:
    result = await _kill_under_load(agentmem_sentinel, wait_replicas=1)
    print(f"\nsentinel kill -9, wait_replicas=1: {result}")
    assert result["acked"] > 0
    assert result["lost"] == 0


async def test_sentinel_kill_9_with_wait_replicas_0_counts_the_loss(
    agentmem_sentinel: SentinelGroup,
) -> None:
    result = await _kill_under_load(agentmem_sentinel, wait_replicas=0)
    print(f"\nsentinel kill -9, wait_replicas=0: {result}")
    assert result["acked"] > 0
    assert result["first_success_s"] < 20
