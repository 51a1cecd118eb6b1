"""`agentmem doctor` against real servers set up the dangerous way, and eviction for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.cli import main
from agentmem.doctor import Report, diagnose, redact_url
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


@contextlib.asynccontextmanager
async def _acl_user(server_url: str, *rules: str) -> AsyncIterator[str]:
    """A user with ``rules`` on the server for the block; yields a URL logging in as it."""
    name, password = f"agentmem-test-{secrets.token_hex(4)}", secrets.token_hex(8)
    admin = Redis.from_url(server_url)
    try:
        await admin.acl_setuser(
            name, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=list(rules)
        )
        parts = urlsplit(server_url)
        yield urlunsplit(parts._replace(netloc=f"{name}:{password}@{parts.hostname}:{parts.port}"))
    finally:
        await admin.acl_deluser(name)
        await admin.aclose()


async def test_health_degrades_for_a_user_without_info(
    agentmem_private_server: Any, agentmem_store_factory: StoreFactory
) -> None:
    """Without INFO (and then PING) in its ACL, health() reports what it can, None for the rest, and why."""
    async with _acl_user(agentmem_private_server.url, "+@all", "-info") as url:
        store = agentmem_store_factory(url=url)
        await store.save_context("s", {"a": 1})  # the store itself works for this user
        health = await store.health()
        assert (health.server, health.server_version, health.evicted_keys, health.maxmemory_policy) == (
            None,
            None,
            None,
            None,
        )
        assert health.latency_ms is not None
        assert health.breaker_state == "closed"
        (skipped,) = health.skipped
        assert skipped.startswith("INFO refused by the server's ACL")
        assert store.retry_stats.retries == 0
    async with _acl_user(agentmem_private_server.url, "+@all", "-info", "-ping") as url:
        health = await agentmem_store_factory(url=url).health()
        assert health.latency_ms is None
        assert [line.split()[0] for line in health.skipped] == ["INFO", "PING"]


def test_doctor_says_which_checks_a_least_privilege_user_could_not_run(
    agentmem_private_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A user without INFO and CONFIG gets the checks it can run, a SKIP line per other check, exit 2."""

    async def user_url() -> AsyncIterator[str]:
        async with _acl_user(agentmem_private_server.url, "+@all", "-info", "-config") as url:
            yield url

    async def run() -> tuple[int, int]:
        async for url in user_url():
            text_code = await asyncio.to_thread(main, ["doctor", "--url", url])
            json_code = await asyncio.to_thread(main, ["doctor", "--url", url, "--json"])
            return text_code, json_code
        raise AssertionError("no user")

    assert asyncio.run(run()) == (2, 2)
    text, report_json = capsys.readouterr().out.split("\n{", 1)
    assert "Traceback" not in text
    for check in ("INFO", "CONFIG GET", "evicted_keys", "persistence", "maxclients", "timeout"):
        assert f"[SKIP  ] {check}: " in text
    assert "checks could not run" in text
    report = json.loads("{" + report_json)
    assert report["complete"] is False
    assert report["version"] != "unknown"  # from HELLO, which the user may run
    assert {s["check"] for s in report["skipped"]} >= {"INFO", "CONFIG GET", "evicted_keys"}


async def test_the_password_in_the_url_is_never_printed(
    agentmem_private_server: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """doctor --url redis://user:password@host prints the URL with *** for the password, in text
    and --json (issue 19, finding 11)."""
    async with _acl_user(agentmem_private_server.url, "+@all") as url:
        password = urlsplit(url).password
        assert password
        codes = [
            await asyncio.to_thread(main, ["doctor", "--url", url, *extra]) for extra in ([], ["--json"])
        ]
    assert codes == [1, 1]  # the private server runs without persistence
    captured = capsys.readouterr()
    assert password not in captured.out + captured.err
    user = urlsplit(url).username
    assert f"at redis://{user}:***@127.0.0.1:" in captured.out
    report = json.loads(captured.out[captured.out.index("\n{") :])
    assert report["url"].startswith(f"redis://{user}:***@")
    assert redact_url("redis://h:1/0?password=pw&db=0") == "redis://h:1/0?password=***&db=0"


def test_doctor_without_url_says_it_checked_its_own_throwaway_server(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No --url: the report says plainly it is about a throwaway embedded server agentmem
    started, does not call that server's deliberate settings (no persistence) dangerous, and
    is printed whole after the check (no "stopping the embedded server" line first)."""
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("no --url given: this checked a throwaway embedded ")
    assert "agentmem doctor --url redis://HOST:PORT" in lines[0]
    assert "DANGER" not in out
    assert "stopping the embedded server" not in out
    persistence = next(line for line in lines if "persistence" in line)
    assert persistence.startswith("  [OK    ] persistence: ")
    assert "on purpose: a throwaway server" in persistence
    assert lines[-1] == "no dangerous settings found"
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["throwaway_server"] is True
    assert report["dangerous"] is False
