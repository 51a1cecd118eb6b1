"""`agentmem doctor` against real servers set up the dangerous way, and eviction for real."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.cli import main
from agentmem.doctor import Report, diagnose
from agentmem.testing import memory_pressure

StoreFactory = Callable[..., AgentMemoryStore]


def _severity(report: Report, check: str) -> str:
    return next(f.severity for f in report.findings if f.check == check)


async def test_allkeys_eviction_loses_sessions_and_doctor_flags_it(
    agentmem_private_server: Any, agentmem_store_factory: StoreFactory
) -> None:
    """Under allkeys-lru sessions vanish silently; doctor calls the policy and the evictions dangerous."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    admin = Redis.from_url(agentmem_private_server.url)
    stop = asyncio.Event()

    async def keep_writing() -> None:
        i = 0
        while not stop.is_set():
            await store.save_context(f"s{i}", {"blob": "x" * 20_000})
            i += 1
            await asyncio.sleep(0.005)

    try:
        async with memory_pressure(admin, maxmemory="4mb", policy="allkeys-lru"):
            for i in range(400):  # 8 MB of sessions into 4 MB
                await store.save_context(f"s{i}", {"blob": "x" * 20_000})
            loaded = [await store.load_context(f"s{i}") for i in range(400)]
            gone = sum(context is None for context in loaded)
            assert gone > 100  # evicted: every save succeeded, yet the sessions are not there
            writer = asyncio.create_task(keep_writing())
            try:
                report = await diagnose(agentmem_private_server.url, eviction_interval=0.5)
            finally:
                stop.set()
                await writer
    finally:
        await admin.aclose()
    assert _severity(report, "maxmemory-policy") == "danger"
    assert _severity(report, "evicted_keys") == "danger"
    assert report.dangerous


async def test_timeout_and_maxclients_findings(agentmem_private_server: Any) -> None:
    """An idle timeout below the health-check interval and a too-small maxclients are dangerous."""
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        await admin.config_set("timeout", 5)
        await admin.config_set("maxclients", 50)
        report = await diagnose(agentmem_private_server.url, pool_size=32, processes=4, eviction_interval=0.1)
    finally:
        await admin.aclose()
    assert _severity(report, "timeout") == "danger"
    assert _severity(report, "maxclients") == "danger"
    assert _severity(report, "persistence") == "danger"  # the private server runs without it


def test_doctor_cli_exit_code_and_json(
    agentmem_server_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A safe server exits 0; persistence off exits 1 with the finding in --json output."""
    safe = agentmem_server_factory(persistence=True)
    assert main(["doctor", "--url", safe.url]) == 0
    assert "no dangerous settings found" in capsys.readouterr().out
    unsafe = agentmem_server_factory()
    assert main(["doctor", "--url", unsafe.url, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["dangerous"] is True
    persistence = next(f for f in report["findings"] if f["check"] == "persistence")
    assert persistence["severity"] == "danger"
    assert "appendonly" in persistence["fix"]
