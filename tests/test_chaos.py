"""Chaos with default options: blips never reach the agents; a real outage fails fast and heals.

Run it alone, with its reports, as ``pytest tests/test_chaos.py -s -p no:randomly``.
Both scenarios are marked ``slow`` (about 35 s and 20 s) and run in CI with the rest
of the suite. The stores here are built with the defaults users get: the only option
set is ``max_history``, so that every acknowledged message can be checked at the end.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import statistics
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import pytest
from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem import AgentMemoryError, AgentMemoryStore, CircuitOpenError, StoreConfig
from agentmem.breaker import BreakerState
from agentmem.testing import kill_connections

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

AGENTS = 50
HISTORY = 10_000  # keep every message, so the ledger can check each one
RUN_SECONDS = 32.0
DEFAULTS = StoreConfig()
#: (start offset in seconds, fault). Each fault is shorter than the default retry
#: deadline: kill -9 restarts (back as soon as the server answers), server-side
#: CLIENT KILL of every connection, 0.5 s SIGSTOP pauses, 1 s network blackholes.
SCHEDULE = [
    (2, "kill"), (3.5, "restart"), (5, "pause"), (6.5, "blackhole"), (9, "kill"),
    (10.5, "restart"), (12, "pause"), (13.5, "kill"), (15, "blackhole"), (17.5, "restart"),
    (19, "kill"), (20.5, "pause"), (22, "blackhole"), (24.5, "kill"), (26, "restart"),
]  # fmt: skip
PAUSE_SECONDS = 0.5
BLACKHOLE_SECONDS = 1.0


@dataclass
class Ledger:
    """What every agent had acknowledged, and what went wrong, as the run goes."""

    acked_fields: dict[str, dict[str, int]] = field(default_factory=lambda: collections.defaultdict(dict))
    acked_messages: dict[str, list[int]] = field(default_factory=lambda: collections.defaultdict(list))
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    stale_reads: list[str] = field(default_factory=list)
    slowest_call: float = 0.0
    turns: int = 0
    calls: int = 0


async def _agent(store: AgentMemoryStore, name: str, ledger: Ledger, stop: asyncio.Event) -> None:
    turn = 0
    while not stop.is_set():
        turn += 1
        ledger.turns += 1

        async def call(step: Awaitable[Any]) -> tuple[bool, Any]:
            ledger.calls += 1
            started = time.monotonic()
            try:
                return True, await step
            except AgentMemoryError as exc:  # anything else fails the test
                ledger.errors[type(exc).__name__] += 1
                return False, None
            finally:
                ledger.slowest_call = max(ledger.slowest_call, time.monotonic() - started)

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


async def _kill_all(admin: Redis, name: str) -> None:
    for _ in range(20):  # the admin link may be reconnecting after a restart
        try:
            await kill_connections(admin, name)
            return
        except (rexc.ConnectionError, rexc.TimeoutError):
            await asyncio.sleep(0.05)
    raise AssertionError("could not reach the server to kill connections")


async def test_blips_shorter_than_the_deadline_never_reach_the_agents(
    agentmem_server_factory: Any, agentmem_proxy_factory: Any, agentmem_store_factory: Any
) -> None:
    """Default options, 15 faults each shorter than retry_deadline: 0 typed errors, 0 lost, 0 stale."""
    server = agentmem_server_factory(persistence=True, appendfsync="always")
    proxy = agentmem_proxy_factory(server.url)
    store: AgentMemoryStore = agentmem_store_factory(url=proxy.url, max_history=HISTORY)
    name = store.config.client_name
    assert name
    admin = Redis.from_url(server.url, socket_timeout=2.0)
    ledger = Ledger()
    injected: collections.Counter[str] = collections.Counter()
    restart_seconds: list[float] = []
    stop = asyncio.Event()

    async def inject() -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for offset, fault in SCHEDULE:
            await asyncio.sleep(max(0.0, started + offset - loop.time()))
            if fault == "kill":
                await _kill_all(admin, name)
            elif fault == "restart":  # kill -9, then start on the same port with its AOF
                began = time.monotonic()
                await asyncio.to_thread(server.kill)
                await asyncio.to_thread(server.start)
                restart_seconds.append(time.monotonic() - began)
            elif fault == "pause":
                server.pause()
                await asyncio.sleep(PAUSE_SECONDS)
                server.resume()
            elif fault == "blackhole":
                await asyncio.to_thread(proxy.blackhole)
                await asyncio.sleep(BLACKHOLE_SECONDS)
                await asyncio.to_thread(proxy.restore)
            injected[fault] += 1

    agents = [asyncio.create_task(_agent(store, f"agent-{i}", ledger, stop)) for i in range(AGENTS)]
    started = time.monotonic()
    try:
        await inject()
        await asyncio.sleep(max(0.0, RUN_SECONDS - (time.monotonic() - started)))
    finally:
        stop.set()
        await asyncio.gather(*agents)

    # The end state, read by a fresh store straight from the server.
    reader: AgentMemoryStore = agentmem_store_factory(url=server.url, max_history=HISTORY)
    lost: list[str] = []
    duplicated: list[str] = []
    for agent, fields in ledger.acked_fields.items():
        context = await reader.load_context(agent) or {}
        lost += [f"{agent}.{k}" for k, v in fields.items() if context.get(k) != v]
    for agent, turns in ledger.acked_messages.items():
        stored = [m["turn"] for m in await reader.load_history(agent, last=HISTORY)]
        lost += [f"{agent} message {t}" for t in turns if t not in stored]
        duplicated += [f"{agent} message {t}" for t, n in collections.Counter(stored).items() if n > 1]
    health = await store.health()
    await admin.aclose()

    report = {
        "agents": AGENTS,
        "seconds": round(time.monotonic() - started, 1),
        "server": f"{server.binary.flavor} {server.binary.version}",
        "turns": ledger.turns,
        "calls": ledger.calls,
        "faults_injected": dict(injected),
        "restart_seconds_max": round(max(restart_seconds), 3),
        "typed_errors": dict(ledger.errors),
        "retries": store.retry_stats.retries,
        "breaker_opened": store.breaker.opened,
        "slowest_call_seconds": round(ledger.slowest_call, 3),
        "acknowledged_writes": sum(map(len, ledger.acked_fields.values()))
        + sum(map(len, ledger.acked_messages.values())),
        "writes_lost": len(lost),
        "messages_duplicated": len(duplicated),
        "stale_reads": len(ledger.stale_reads),
        "pool_in_use_after": health.pool_in_use,
    }
    print("\nchaos report (blips, default options):", json.dumps(report, indent=2))

    assert injected == {"kill": 5, "restart": 4, "pause": 3, "blackhole": 3}
    assert not ledger.errors, dict(ledger.errors)
    assert not lost, lost[:20]
    assert not duplicated, duplicated[:20]
    assert not ledger.stale_reads, ledger.stale_reads[:20]
    assert ledger.turns > 10 * AGENTS  # the agents really worked through the faults
    assert store.breaker.opened >= 1  # the faults were real enough to open the breaker
    assert health.pool_in_use == 0


#: The outage scenario's length; ``AGENTMEM_OUTAGE_SECONDS=30`` gives the README's 30 s figures.
OUTAGE_SECONDS = float(os.environ.get("AGENTMEM_OUTAGE_SECONDS", "10"))


async def test_an_outage_fails_fast_after_the_deadline_and_heals_within_a_probe(
    agentmem_server_factory: Any, agentmem_store_factory: Any
) -> None:
    """Server down 10 s (by default): calls fail fast (p99 < 5 ms, nothing sent) after
    retry_deadline; recovery within one probe interval of the server answering."""
    server = agentmem_server_factory(persistence=True, appendfsync="always")
    store: AgentMemoryStore = agentmem_store_factory(url=server.url)
    await store.save_context("call-1", {"name": "Li Wei"})
    loop = asyncio.get_running_loop()

    await asyncio.to_thread(server.kill)
    down_at = loop.time()
    # The first callers wait out their retry deadline, then fail as unavailable.
    with pytest.raises(AgentMemoryError) as first:
        await store.load_context("call-1")
    first_failed_after = loop.time() - down_at
    # The outage's age counts from its first failed round trip, a moment after the kill.
    await asyncio.sleep(max(0.0, DEFAULTS.retry_deadline - store.breaker.outage_seconds) + 0.01)
    assert store.breaker.state is BreakerState.FAILING_FAST

    fast: list[float] = []
    attempts_before = store.retry_stats.attempts
    while loop.time() - down_at < OUTAGE_SECONDS:
        began = time.perf_counter()
        with pytest.raises(CircuitOpenError):
            await store.load_context("call-1")
        fast.append(time.perf_counter() - began)
        await asyncio.sleep(0.005)
    sent_while_failing_fast = store.retry_stats.attempts - attempts_before

    await asyncio.to_thread(server.start)
    up_at = loop.time()
    recovered_at: float | None = None
    while loop.time() - up_at < 5.0:
        try:
            assert await store.load_context("call-1") == {"name": "Li Wei"}
        except CircuitOpenError:
            await asyncio.sleep(0.002)
            continue
        recovered_at = loop.time()
        break
    assert recovered_at is not None, "no call succeeded within 5 s of the server answering"
    recovery = recovered_at - up_at

    fast.sort()
    report = {
        "outage_seconds": OUTAGE_SECONDS,
        "server": f"{server.binary.flavor} {server.binary.version}",
        "first_call_failed_after_s": round(first_failed_after, 3),
        "first_error": type(first.value).__name__,
        "fail_fast_calls": len(fast),
        "fail_fast_p50_ms": round(statistics.median(fast) * 1000, 3),
        "fail_fast_p99_ms": round(fast[int(len(fast) * 0.99) - 1] * 1000, 3),
        "attempts_sent_while_failing_fast": sent_while_failing_fast,
        "recovery_after_server_up_s": round(recovery, 3),
        "probe_interval_s": store.config.breaker_probe_interval,
        "failed_probes": store.breaker.failed_probes,
    }
    print(f"\nchaos report ({OUTAGE_SECONDS:g} s outage, default options):", json.dumps(report, indent=2))

    assert DEFAULTS.retry_deadline <= first_failed_after < DEFAULTS.retry_deadline + 1.5
    assert len(fast) > 100
    assert fast[int(len(fast) * 0.99) - 1] < 0.005
    assert sent_while_failing_fast == 0
    assert recovery < DEFAULTS.breaker_probe_interval + 0.25
    assert store.breaker.state.value == "closed"
