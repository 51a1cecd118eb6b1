"""The chaos run: 50 agents through restarts, connection kills, blackholes and pauses.

Run it alone, with its report, as ``pytest tests/test_chaos.py -s``. It is marked
``slow`` (about 45 s) and runs in CI with the rest of the suite.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem import AgentMemoryError, AgentMemoryStore
from agentmem.testing import kill_connections

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

AGENTS = 50
MAX_CONNECTIONS = 16
RUN_SECONDS = 40.0
#: (start offset in seconds, fault). 10 kills, 3 blackholes, 3 restarts, 2 pauses.
SCHEDULE = [
    (2, "kill"), (4, "blackhole"), (6, "restart"), (8, "kill"), (9, "pause"), (11, "kill"),
    (13, "blackhole"), (15, "restart"), (17, "kill"), (18, "kill"), (20, "pause"), (22, "kill"),
    (24, "blackhole"), (26, "restart"), (28, "kill"), (30, "kill"), (32, "kill"), (34, "kill"),
]  # fmt: skip


@dataclass
class Ledger:
    """What every agent had acknowledged, and what went wrong, as the run goes."""

    acked_fields: dict[str, dict[str, int]] = field(default_factory=lambda: collections.defaultdict(dict))
    acked_messages: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    stale_reads: list[str] = field(default_factory=list)
    turns: int = 0
    calls: int = 0


async def _agent(store: AgentMemoryStore, name: str, ledger: Ledger, stop: asyncio.Event) -> None:
    turn = 0
    while not stop.is_set():
        turn += 1
        ledger.turns += 1

        async def call(step: Awaitable[Any]) -> tuple[bool, Any]:
            ledger.calls += 1
            try:
                return True, await step
            except AgentMemoryError as exc:  # anything else fails the test
                ledger.errors[type(exc).__name__] += 1
                return False, None

        ok, loaded = await call(store.load_turn(name, last=5))
        if ok:
            context = loaded.context or {}
            missing = {k: v for k, v in ledger.acked_fields[name].items() if context.get(k) != v}
            if missing:
                ledger.stale_reads.append(f"{name} turn {turn} lacks {sorted(missing)}")
        ok, _ = await call(store.update_context(name, {f"t{turn}": turn}))
        if ok:
            ledger.acked_fields[name][f"t{turn}"] = turn
        ok, _ = await call(store.append_messages(name, [{"turn": turn}]))
        if ok:
            ledger.acked_messages[name].append(turn)
        await asyncio.sleep(0.02)


async def test_chaos_loses_no_acknowledged_write(
    agentmem_server_factory: Any, agentmem_proxy_factory: Any, agentmem_store_factory: Any
) -> None:
    """0 acknowledged writes lost, no stale read, only typed errors, no leaked connection."""
    server = agentmem_server_factory(persistence=True, appendfsync="always")
    proxy = agentmem_proxy_factory(server.url)
    store: AgentMemoryStore = agentmem_store_factory(
        url=proxy.url,
        max_connections=MAX_CONNECTIONS,
        pool_timeout=2.0,
        socket_timeout=0.5,
        socket_connect_timeout=0.5,
        retries=6,
        retry_deadline=3.0,
        breaker_cooldown=0.5,
        max_history=10_000,
    )
    name = store.config.client_name
    assert name
    admin = Redis.from_url(server.url, socket_timeout=2.0)
    ledger = Ledger()
    injected: collections.Counter[str] = collections.Counter()
    peak_clients = 0
    stop = asyncio.Event()

    async def watch_clients() -> None:
        nonlocal peak_clients
        while not stop.is_set():
            try:
                clients = await admin.client_list()
                peak_clients = max(peak_clients, sum(1 for c in clients if c.get("name") == name))
            except (rexc.ConnectionError, rexc.TimeoutError):
                pass
            await asyncio.sleep(0.05)

    async def inject() -> None:
        started = asyncio.get_running_loop().time()
        for offset, fault in SCHEDULE:
            await asyncio.sleep(max(0.0, started + offset - asyncio.get_running_loop().time()))
            if fault == "kill":
                for _ in range(20):  # the admin link may be reconnecting after a restart
                    try:
                        await kill_connections(admin, name)
                        break
                    except (rexc.ConnectionError, rexc.TimeoutError):
                        await asyncio.sleep(0.1)
                else:
                    raise AssertionError("could not reach the server to kill connections")
            elif fault == "blackhole":
                await asyncio.to_thread(proxy.blackhole)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(proxy.restore)
            elif fault == "restart":
                await asyncio.to_thread(server.restart)
            elif fault == "pause":
                server.pause()
                await asyncio.sleep(0.5)
                server.resume()
            injected[fault] += 1

    watcher = asyncio.create_task(watch_clients())
    agents = [asyncio.create_task(_agent(store, f"agent-{i}", ledger, stop)) for i in range(AGENTS)]
    started = time.monotonic()
    try:
        await inject()
        await asyncio.sleep(max(0.0, RUN_SECONDS - (time.monotonic() - started)))
    finally:
        stop.set()
        await asyncio.gather(*agents)
        await watcher

    # The end state, read back by a fresh store straight from the server.
    reader: AgentMemoryStore = agentmem_store_factory(url=server.url, max_history=10_000)
    lost: list[str] = []
    duplicated: list[str] = []
    for agent, fields in ledger.acked_fields.items():
        context = await reader.load_context(agent) or {}
        lost += [f"{agent}.{k}" for k, v in fields.items() if context.get(k) != v]
    for agent, turns in ledger.acked_messages.items():
        stored = [m["turn"] for m in await reader.load_history(agent, last=10_000)]
        lost += [f"{agent} message {t}" for t in turns if t not in stored]
        duplicated += [f"{agent} message {t}" for t, n in collections.Counter(stored).items() if n > 1]
    health = await store.health()
    await admin.aclose()

    report = {
        "agents": AGENTS,
        "seconds": round(time.monotonic() - started, 1),
        "turns": ledger.turns,
        "calls": ledger.calls,
        "faults_injected": dict(injected),
        "typed_errors": dict(ledger.errors),
        "retries": store.retry_stats.retries,
        "acknowledged_writes": sum(map(len, ledger.acked_fields.values()))
        + sum(map(len, ledger.acked_messages.values())),
        "writes_lost": len(lost),
        "messages_duplicated": len(duplicated),
        "stale_reads": len(ledger.stale_reads),
        "peak_server_clients": peak_clients,
        "pool_in_use_after": health.pool_in_use,
    }
    print("\nchaos report:", json.dumps(report, indent=2))

    assert injected == {"kill": 10, "blackhole": 3, "restart": 3, "pause": 2}
    assert not lost, lost[:20]
    assert not duplicated, duplicated[:20]
    assert not ledger.stale_reads, ledger.stale_reads[:20]
    assert ledger.turns > 10 * AGENTS  # the agents really worked through the faults
    assert health.pool_in_use == 0
    assert 1 <= peak_clients <= MAX_CONNECTIONS
