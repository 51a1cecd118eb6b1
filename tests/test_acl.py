"""Per-tenant ACLs: the rule ``agentmem acl`` prints is enough for every store operation,
and keeps a tenant out of another tenant's keys (on a private server: ACL changes must
not touch the shared one)."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, InvalidArgumentError, MemoryPermissionError
from agentmem.acl import (
    INTEGRATIONS,
    SCRIPT_COMMANDS,
    acl_rule,
    acl_setuser_args,
    integration_commands,
    store_commands,
)
from agentmem.cli import main
from agentmem.keys import KeySchema
from agentmem.testing.cluster import ClusterGroup
from agentmem.testing.fixtures import ServerFactory, StoreFactory
from agentmem.testing.server import EmbeddedServer


@pytest.fixture
async def admin(agentmem_private_server: EmbeddedServer) -> AsyncIterator[Redis]:
    """An admin client on the test's private server."""
    client = Redis.from_url(agentmem_private_server.url)
    try:
        yield client
    finally:
        await client.aclose()


async def _set_user(admin: Redis, prefix: str, user: str, **options: Any) -> None:
    args = acl_setuser_args(prefix, user, password=f"{user}-pw", **options)
    await admin.execute_command("ACL", "SETUSER", *args)  # type: ignore[no-untyped-call]


def _tenant_store(
    make: StoreFactory, server: EmbeddedServer, *, user: str, prefix: str, **options: Any
) -> AgentMemoryStore:
    options.setdefault("client_name", None)
    return make(server.url, prefix=prefix, username=user, password=f"{user}-pw", **options)


async def _every_operation(store: AgentMemoryStore) -> None:
    await store.save_context("s", {"step": 1})
    await store.update_context("s", {"mood": "ok"})
    assert await store.load_context("s") == {"step": 1, "mood": "ok"}
    assert await store.append_messages("s", [{"role": "user", "content": "hi"}]) == 1
    assert await store.load_history("s") == [{"role": "user", "content": "hi"}]
    await store.remember("u", {"lang": "fr"})
    assert await store.recall("u") == {"lang": "fr"}
    turn = await store.load_turn("s", user_id="u")
    assert (turn.context, turn.profile) == ({"step": 1, "mood": "ok"}, {"lang": "fr"})
    assert await store.delete_session("s") is True
    assert await store.forget_user("u") is True
    assert await store.load_context("s") is None


async def test_each_tenant_does_every_operation_with_only_its_rule(
    agentmem_private_server: EmbeddedServer, admin: Redis, agentmem_store_factory: StoreFactory
) -> None:
    """Two tenants on one server, each user with only its printed rule: every store operation works
    (scripts loaded by the tenant itself on a fresh server), with and without client_name."""
    await _set_user(admin, "tenantA", "tenantA", client_name=True)
    await _set_user(admin, "tenantB", "tenantB")
    store_a = _tenant_store(
        agentmem_store_factory, agentmem_private_server, user="tenantA", prefix="tenantA", client_name="a"
    )
    store_b = _tenant_store(agentmem_store_factory, agentmem_private_server, user="tenantB", prefix="tenantB")
    await _every_operation(store_a)
    await _every_operation(store_b)
    assert store_a.retry_stats.retries == store_b.retry_stats.retries == 0


async def test_store_on_another_tenants_prefix_is_refused_and_writes_nothing(
    agentmem_private_server: EmbeddedServer, admin: Redis, agentmem_store_factory: StoreFactory
) -> None:
    """tenantB's user on tenantA's prefix: MemoryPermissionError for reads and writes, not retried,
    the breaker not fed, and no key written; a neighbour prefix extending tenantA is out too."""
    await _set_user(admin, "tenantA", "tenantA")
    await _set_user(admin, "tenantB", "tenantB")
    for prefix in ("tenantA", "tenantB:eu"):
        intruder = _tenant_store(
            agentmem_store_factory, agentmem_private_server, user="tenantB", prefix=prefix
        )
        started = time.monotonic()
        for call in (
            intruder.save_context("s", {"a": 1}),
            intruder.append_messages("s", [{"role": "user", "content": "x"}]),
            intruder.remember("u", {"a": 1}),
            intruder.delete_session("s"),
            intruder.load_turn("s", user_id="u"),
            intruder.recall("u"),
        ):
            with pytest.raises(MemoryPermissionError):
                await call
        assert intruder.retry_stats.retries == 0
        assert intruder.breaker.consecutive_failures == 0
        assert not intruder.breaker.is_open
        assert time.monotonic() - started < 1.0
    assert await admin.keys("*") == []


async def test_health_and_doctor_under_a_tenant_user_report_what_they_can(
    agentmem_private_server: EmbeddedServer,
    admin: Redis,
    agentmem_store_factory: StoreFactory,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without INFO, health() has latency and pool fields and says in skipped what it left out;
    with --health it skips nothing; doctor exits 2 (nothing dangerous seen, checks skipped)."""
    await _set_user(admin, "tenantA", "tenantA")
    await _set_user(admin, "tenantH", "tenantH", health=True)
    store = _tenant_store(agentmem_store_factory, agentmem_private_server, user="tenantA", prefix="tenantA")
    health = await store.health()
    assert health.latency_ms is not None
    assert any("INFO refused" in line for line in health.skipped)
    assert health.server_version is None
    with_info = _tenant_store(
        agentmem_store_factory, agentmem_private_server, user="tenantH", prefix="tenantH"
    )
    assert (await with_info.health()).skipped == ()

    url = agentmem_private_server.url.replace("redis://", "redis://tenantA:tenantA-pw@", 1)
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["doctor", "--url", url]) == 2  # main() runs its own loop
    out = capsys.readouterr().out
    assert "[SKIP  ] INFO" in out
    assert "checks could not run" in out


async def test_large_values_need_config_get_only_to_read_the_limit(
    agentmem_private_server: EmbeddedServer, admin: Redis, agentmem_store_factory: StoreFactory
) -> None:
    """max_value_bytes over 1 MiB: works without CONFIG GET (the 512 MiB default is assumed) and with it."""
    await _set_user(admin, "tenantA", "tenantA")
    await _set_user(admin, "tenantL", "tenantL", large_values=True)
    for user in ("tenantA", "tenantL"):
        store = _tenant_store(
            agentmem_store_factory, agentmem_private_server, user=user, prefix=user, max_value_bytes=4 << 20
        )
        await store.save_context("s", {"big": "x" * (2 << 20)})
        assert len((await store.load_context("s") or {})["big"]) == 2 << 20


def test_rule_is_least_privilege_and_escapes_the_prefix() -> None:
    """The rule resets the user, holds only the store's key pattern (glob-escaped) and commands,
    and its password as SHA-256; the scripts' commands are read from the scripts."""
    rule = acl_rule("ten*ant", "bot", password="pw")
    assert rule.startswith("ACL SETUSER bot reset on #" + hashlib.sha256(b"pw").hexdigest())
    assert '"~ten\\\\*ant:{*"' in rule  # redis-cli unquotes this to ~ten\*ant:{*
    assert " -@all " in rule
    assert "pw " not in rule
    assert {"hset", "rpush", "unlink", "pexpire"} <= set(SCRIPT_COMMANDS)
    assert "info" not in store_commands()
    assert {"info", "client|setname", "config|get"} <= set(
        store_commands(client_name=True, health=True, large_values=True)
    )


def test_acl_command_prints_the_rule(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """agentmem acl prints the rule alone on stdout; --password-env reads the password and prints its hash."""
    monkeypatch.setenv("TENANT_PW", "s3cret")
    assert main(["acl", "--prefix", "tenantA", "--user", "tenantA", "--password-env", "TENANT_PW"]) == 0
    out = capsys.readouterr().out
    assert out == acl_rule("tenantA", "tenantA", password="s3cret") + "\n"
    assert "s3cret" not in out
    monkeypatch.delenv("TENANT_PW")
    assert main(["acl", "--prefix", "tenantA", "--user", "tenantA", "--password-env", "TENANT_PW"]) == 2


@pytest.mark.parametrize("prefix", ["support bot", "support\tbot", "bot\n", "bot\x1b[2K", "bot\u00a0x"])
async def test_a_prefix_no_acl_rule_can_carry_is_refused_at_construction(
    prefix: str, agentmem_redis: Any, admin: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whitespace or a non-printable character in a prefix: the store refuses it when it is
    built (InvalidArgumentError, nothing sent), and so do acl_rule and `agentmem acl` (exit 2),
    instead of printing a rule the server refuses (issue 19, finding 12)."""
    with pytest.raises(InvalidArgumentError, match="prefix"):
        AgentMemoryStore(agentmem_redis, prefix=prefix)
    with pytest.raises(InvalidArgumentError, match="prefix"):
        AgentMemoryStore.from_url("redis://127.0.0.1:1/0", prefix=prefix)
    with pytest.raises(InvalidArgumentError, match="ACL rule"):
        acl_rule(prefix, "bot")
    assert main(["acl", "--prefix", prefix, "--user", "bot"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "prefix" in captured.err
    # a prefix the store accepts, punctuation and all, gives a rule the server takes
    await _set_user(admin, "t.e-n_a~n*t'\"x\\y", "punctuated")
    assert await admin.acl_getuser("punctuated")


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize(
    ("integration", "example", "expected", "core_rule_enough"),
    [
        # the example adds and reads items only: the store's own scripts; pop_item needs more
        ("openai-agents", "openai_agents_session.py", "turn 2: Hello again, Ada!", True),
        ("adk", "adk_session_service.py", "events stored for session 'call-1'", False),
        ("langgraph", "langgraph_agent.py", "Ada", False),
    ],
)
async def test_each_adapter_runs_with_only_its_rule(
    admin: Redis,
    agentmem_private_server: EmbeddedServer,
    integration: str,
    example: str,
    expected: str,
    core_rule_enough: bool,
) -> None:
    """`agentmem acl --integration X` is enough for adapter X's example, end to end, with
    default options (so CLIENT SETNAME too); an adapter running its own scripts under the
    core rule only gets MemoryPermissionError (a command inside a script refused by the ACL)."""
    framework = {"openai-agents": "agents", "adk": "google.adk", "langgraph": "langgraph"}[integration]
    pytest.importorskip(framework, reason=f"needs the {integration} extra (google-adk needs Python >= 3.11)")
    user = f"t{integration.replace('-', '')}"
    await _set_user(admin, user, user, client_name=True, integrations=[integration])
    url = agentmem_private_server.url.replace("redis://", f"redis://{user}:{user}-pw@", 1)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(EXAMPLES / example), url, user],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    result = await asyncio.to_thread(run)
    assert result.returncode == 0, result.stdout + result.stderr
    assert expected in result.stdout
    written = await admin.keys(f"{user}:{{*")
    assert written  # the adapter wrote under the tenant's prefix
    await admin.delete(*written)

    await _set_user(admin, user, user, client_name=True)  # the core store's rule only
    again = await asyncio.to_thread(run)
    if core_rule_enough:
        assert again.returncode == 0, again.stdout + again.stderr
    else:
        assert again.returncode != 0
        assert "MemoryPermissionError" in again.stderr


def test_integration_rules_add_only_what_the_adapter_sends() -> None:
    """Each adapter's extra commands come from its scripts and its direct commands; an unknown
    adapter is a ValueError (a usage error in the CLI)."""
    core = set(store_commands())
    for name in INTEGRATIONS:
        added = set(store_commands(integrations=[name])) - core
        assert added == set(integration_commands(name)) - core
    assert {"scan", "smembers", "unlink"} <= set(integration_commands("langgraph"))
    assert "rpop" in integration_commands("openai-agents")  # pop_item's script
    with pytest.raises(ValueError, match="unknown integration"):
        integration_commands("crewai")


# -- the rule for a Redis Cluster and for wait_replicas (issue 19, findings 3 and 5) -----------


async def _set_user_on_every_node(urls: list[str], prefix: str, user: str, **options: Any) -> None:
    for url in urls:
        node = Redis.from_url(url)
        try:
            await _set_user(node, prefix, user, **options)
        finally:
            await node.aclose()


async def test_cluster_rule_lets_a_cluster_store_do_every_operation(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    """On a Redis Cluster the rule printed with cluster=True is enough (CLUSTER SLOTS, ASKING, INFO
    for the topology); the rule without it is refused at once: MemoryPermissionError, not an outage
    (no retry, breaker closed)."""
    urls = [f"redis://127.0.0.1:{port}" for port in agentmem_private_cluster.ports]
    await _set_user_on_every_node(urls, "tenantC", "tenantC", cluster=True)
    await _set_user_on_every_node(urls, "tenantS", "tenantS")
    store = AgentMemoryStore.from_url(urls[0], prefix="tenantC", username="tenantC", password="tenantC-pw")
    try:
        await _every_operation(store)
        assert store.retry_stats.retries == 0
    finally:
        await store.aclose()
    single_rule = AgentMemoryStore.from_url(
        urls[0], cluster=True, prefix="tenantS", username="tenantS", password="tenantS-pw"
    )
    try:
        started = time.monotonic()
        with pytest.raises(MemoryPermissionError, match="cluster"):
            await single_rule.save_context("s", {"a": 1})
        assert time.monotonic() - started < 1.0
        assert single_rule.retry_stats.retries == 0
        assert single_rule.breaker.consecutive_failures == 0
    finally:
        await single_rule.aclose()


async def test_wait_replicas_rule_grants_wait_and_a_refused_wait_is_a_permission_error(
    agentmem_server_factory: ServerFactory,
) -> None:
    """With a replica attached: the rule printed with wait_replicas=True acknowledges writes; without
    it the refused WAIT is MemoryPermissionError at once (the write is on the primary), never a
    ReplicationTimeoutError that invites a repeat."""
    primary = agentmem_server_factory()
    replica = agentmem_server_factory()
    admin = Redis.from_url(primary.url)
    follower = Redis.from_url(replica.url)
    try:
        await _set_user(admin, "tenantW", "tenantW", wait_replicas=True)
        await _set_user(admin, "tenantA", "tenantA")
        await follower.replicaof("127.0.0.1", primary.port)
        deadline = time.monotonic() + 20
        while (await follower.info("replication")).get("master_link_status") != "up":
            assert time.monotonic() < deadline, "the replica never linked"
            await asyncio.sleep(0.05)
        granted = AgentMemoryStore.from_url(
            primary.url, prefix="tenantW", username="tenantW", password="tenantW-pw", wait_replicas=1
        )
        refused = AgentMemoryStore.from_url(
            primary.url, prefix="tenantA", username="tenantA", password="tenantA-pw", wait_replicas=1
        )
        try:
            assert await granted.append_messages("s", [{"role": "user", "content": "hi"}]) == 1
            with pytest.raises(MemoryPermissionError, match="WAIT"):
                await refused.append_messages("s", [{"role": "user", "content": "hi"}])
            assert await admin.llen(KeySchema("tenantA").session("s").history) == 1  # applied once
            assert refused.retry_stats.retries == 0
            assert refused.breaker.consecutive_failures == 0
        finally:
            await granted.aclose()
            await refused.aclose()
    finally:
        await admin.aclose()
        await follower.aclose()


def test_rule_options_add_what_cluster_and_wait_replicas_send(capsys: pytest.CaptureFixture[str]) -> None:
    """cluster adds CLUSTER SLOTS, ASKING and INFO (the topology check); wait_replicas adds WAIT;
    the CLI's --cluster and --wait-replicas print those rules."""
    assert {"cluster|slots", "asking", "info"} <= set(store_commands(cluster=True))
    assert not {"cluster|slots", "asking", "wait"} & set(store_commands())
    assert "wait" in store_commands(wait_replicas=True)
    assert main(["acl", "--prefix", "p", "--user", "u", "--cluster", "--wait-replicas"]) == 0
    assert capsys.readouterr().out == acl_rule("p", "u", cluster=True, wait_replicas=True) + "\n"


async def test_a_save_refused_while_queued_writes_nothing(
    agentmem_private_server: EmbeddedServer, admin: Redis, agentmem_store_factory: StoreFactory
) -> None:
    """A plain save is one MULTI/EXEC transaction: when the server refuses its SET while
    queueing it (here an ACL without SET), EXEC runs none of it, so the DEL of the session's
    merged fields that follows the SET does not run either, and the error is the refusal."""
    await _set_user(admin, "t", "t")
    await admin.execute_command("ACL", "SETUSER", "t", "-set")  # type: ignore[no-untyped-call]
    store = _tenant_store(agentmem_store_factory, agentmem_private_server, user="t", prefix="t")
    await store.update_context("s", {"mood": "ok"})  # merged fields: a hash the save would DEL
    hash_key = KeySchema("t").session("s").context
    with pytest.raises(MemoryPermissionError, match=r"(?i)noperm|permission"):
        await store.save_context("s", {"step": 2})
    assert await admin.exists(hash_key) == 1
    assert await store.load_context("s") == {"mood": "ok"}


async def test_a_rule_without_multi_is_a_typed_error_that_says_what_ran(
    agentmem_private_server: EmbeddedServer, admin: Redis, agentmem_store_factory: StoreFactory
) -> None:
    """A rule printed before the store sent transactions has no +multi: the server refuses
    MULTI and then runs the commands after it one by one. The save raises
    MemoryPermissionError that says so, with ``applied`` (its commands all ran, not
    atomically) and what to re-apply; a load raises too, with nothing applied."""
    await _set_user(admin, "old", "old")
    await admin.execute_command("ACL", "SETUSER", "old", "-multi", "-exec")  # type: ignore[no-untyped-call]
    store = _tenant_store(agentmem_store_factory, agentmem_private_server, user="old", prefix="old")
    with pytest.raises(MemoryPermissionError, match=r"refused MULTI.*one by one.*applied.*\+multi") as saved:
        await store.save_context("s", {"step": 1})
    assert saved.value.applied is True
    assert await admin.exists(KeySchema("old").session("s").base) == 1  # it did run
    with pytest.raises(MemoryPermissionError, match="refused MULTI") as loaded:
        await store.load_context("s")
    assert loaded.value.applied is False
    assert store.retry_stats.retries == 0
