"""store.engine: the API layers and adapters build on, on a single server and on the
shared cluster (3 primaries), read back from the server itself."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from agentmem import AgentMemoryStore, JournaledStore, MemoryUnavailableError
from agentmem.calls import Call
from agentmem.codec import packed_version
from agentmem.engine import StoreEngine
from agentmem.keys import KeySchema
from agentmem.scripts import READ_HASH, WRITE_FACTS
from agentmem.store import append_window
from agentmem.testing.fixtures import StoreFactory


async def _cmd(client: Redis, *args: object) -> Any:
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


def _routing(engine: StoreEngine) -> Any:
    """The transport in use, with its slot map on a cluster."""
    return engine.transport


async def _on_node(store: AgentMemoryStore, key: str, *args: object) -> Any:
    """Run a command on the node that holds ``key`` (the server itself off a cluster)."""
    host, port = _routing(store.engine).slots.node_for(key_slot(key.encode()))
    client = Redis(host=host, port=port)
    try:
        return await _cmd(client, *args)
    finally:
        await client.aclose()


async def _write_facts(store: AgentMemoryStore, user: str, field: bytes, value: bytes) -> Any:
    engine = store.engine
    args = (engine.ttl_ms("profile") or engine.ttl_ms("session"), packed_version(1), "merge", field, value)
    return await engine.script("test.write", WRITE_FACTS, engine.keys.profile_keys(user), args)


def test_engine_names_the_store_config_keys_breaker_and_append_window(
    agentmem_store: AgentMemoryStore,
) -> None:
    """engine.config/keys/breaker are the store's; append_window_ms is append_window() in ms."""
    engine = agentmem_store.engine
    assert engine.config is agentmem_store.config
    assert engine.breaker is agentmem_store.breaker
    assert isinstance(engine.keys, KeySchema)
    assert engine.keys.session("s").all() == KeySchema(agentmem_store.config.prefix).session("s").all()
    assert engine.append_window_ms == int(append_window(engine.config) * 1000)


async def test_a_journaled_store_remembers_append_ids_for_the_session_ttl(
    agentmem_server: Any, agentmem_prefix: str
) -> None:
    """JournaledStore: append_window_ms is the session TTL when that is longer than the retry window."""
    store = JournaledStore.from_url(agentmem_server.url, prefix=agentmem_prefix, ttl=7200)
    try:
        assert store.engine.append_window_ms == 7200_000
    finally:
        await store.aclose()


def test_ttl_ms_follows_the_options(agentmem_store_factory: StoreFactory) -> None:
    """ttl_ms: session = ttl, profile = profile_ttl (0 for none), read = ttl only with sliding_ttl."""
    sliding = agentmem_store_factory(ttl=90, profile_ttl=30).engine
    assert (sliding.ttl_ms("session"), sliding.ttl_ms("profile"), sliding.ttl_ms("read")) == (
        90_000,
        30_000,
        90_000,
    )
    fixed = agentmem_store_factory(ttl=90, sliding_ttl=False).engine
    assert (fixed.ttl_ms("session"), fixed.ttl_ms("profile"), fixed.ttl_ms("read")) == (90_000, 0, 0)


async def test_send_and_script_on_a_single_server(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis
) -> None:
    """send(): replies in call order, a script's write lands with its TTL; script(): one call's reply."""
    store = agentmem_store_factory(ttl=90, profile_ttl=60)
    engine = store.engine
    assert await engine.topology() == "single"
    assert await _write_facts(store, "u1", b"lang", b'"fr"') == 1
    profile = engine.keys.profile("u1")
    stored: bytes = await _cmd(agentmem_redis, "HGET", profile, "lang")
    assert stored.endswith(b'"fr"')  # after its version
    assert 0 < await agentmem_redis.pttl(profile) <= 60_000
    replies = await engine.send(
        "test.read",
        (Call(READ_HASH, (profile,), (0,)), Call(None, (profile,), ("lang",), command="HGET")),
    )
    assert bytes(replies[1]).endswith(b'"fr"')
    assert replies[0][0] == b"lang"
    assert await store.recall("u1") == {"lang": "fr"}


async def test_send_and_script_on_the_cluster(
    agentmem_cluster_store: AgentMemoryStore, agentmem_cluster: list[str]
) -> None:
    """On a cluster, one send() of calls in several slots reaches each key's own node."""
    store = agentmem_cluster_store
    engine = store.engine
    assert await engine.topology() == "cluster"
    users = [f"u{i}" for i in range(12)]
    for user in users:
        assert await _write_facts(store, user, b"n", user.encode()) == 1
    calls = [Call(None, (engine.keys.profile(user),), ("n",), command="HGET") for user in users]
    replies = await engine.send("test.read", calls)
    assert [reply[-len(user) :] for reply, user in zip(replies, users, strict=True)] == [
        u.encode() for u in users
    ]
    nodes = {_routing(engine).slots.node_for(key_slot(engine.keys.profile(u).encode())) for u in users}
    assert len(nodes) == 3
    for user in users[:3]:
        stored = await _on_node(store, engine.keys.profile(user), "HGET", engine.keys.profile(user), "n")
        assert stored.endswith(user.encode())


async def test_scan_finds_every_key_on_a_single_server(agentmem_store: AgentMemoryStore) -> None:
    """scan(): every key under the pattern, across SCAN cursors."""
    store = agentmem_store
    for i in range(30):
        await store.save_context(f"s{i}", {"n": i})
    found = await store.engine.scan("test.scan", store.config.prefix + ":*", count=5)
    contexts = {KeySchema(store.config.prefix).session(f"s{i}").base.encode() for i in range(30)}
    assert contexts <= found


async def test_scan_finds_keys_on_every_primary(agentmem_cluster_store: AgentMemoryStore) -> None:
    """scan() on a cluster: keys held by all three primaries."""
    store = agentmem_cluster_store
    for i in range(30):
        await store.save_context(f"s{i}", {"n": i})
    found = await store.engine.scan("test.scan", store.config.prefix + ":*")
    contexts = {KeySchema(store.config.prefix).session(f"s{i}").base for i in range(30)}
    assert {c.encode() for c in contexts} <= found
    nodes = {_routing(store.engine).slots.node_for(key_slot(c.encode())) for c in contexts}
    assert len(nodes) == 3


async def test_each_primary_answers_once_on_a_single_server(agentmem_store: AgentMemoryStore) -> None:
    """each_primary() on one server: one reply, from it."""
    replies = await agentmem_store.engine.each_primary("test.ping", Call(None, (), ("hi",), command="ECHO"))
    assert replies == [b"hi"]


async def test_each_primary_reaches_every_primary_of_the_cluster(
    agentmem_cluster_store: AgentMemoryStore,
) -> None:
    """each_primary() on the shared cluster: one reply per primary, each from another node."""
    engine = agentmem_cluster_store.engine
    replies = await engine.each_primary("test.myid", Call(None, (), ("MYID",), command="CLUSTER"))
    assert len(replies) == 3
    assert len(set(replies)) == 3
    for (host, port), node_id in zip(_routing(engine).slots.primaries, replies, strict=True):
        client = Redis(host=host, port=port)
        try:
            assert await _cmd(client, "CLUSTER", "MYID") == node_id
        finally:
            await client.aclose()


async def test_a_routed_keyless_call_reaches_the_keys_node(agentmem_cluster_store: AgentMemoryStore) -> None:
    """Call(route=key): a keyless call goes to the node that owns the key's slot."""
    engine = agentmem_cluster_store.engine
    await engine.topology()
    for user in ("alice", "bob", "carol", "dave", "erin"):
        key = engine.keys.profile(user)
        (node_id,) = await engine.send(
            "test.route", (Call(None, (), ("MYID",), command="CLUSTER", route=key),)
        )
        assert await _on_node(agentmem_cluster_store, key, "CLUSTER", "MYID") == node_id


async def test_topology_of_a_store_told_it(agentmem_server: Any, agentmem_prefix: str) -> None:
    """topology(): from_url(cluster=False) is "single" without asking."""
    store = AgentMemoryStore.from_url(agentmem_server.url, cluster=False, prefix=agentmem_prefix)
    try:
        assert await store.engine.topology() == "single"
    finally:
        await store.aclose()


async def test_topology_of_an_unreachable_server_raises_after_the_deadline(agentmem_prefix: str) -> None:
    """topology(): a server that never answers INFO cluster gives MemoryUnavailableError, not a guess."""
    store = AgentMemoryStore.from_url(
        "redis://127.0.0.1:1", prefix=agentmem_prefix, retry_deadline=0.3, socket_connect_timeout=0.1
    )
    try:
        with pytest.raises(MemoryUnavailableError):
            await store.engine.topology()
    finally:
        await store.aclose()


async def test_observe_without_telemetry_is_a_no_op(agentmem_store: AgentMemoryStore) -> None:
    """observe(): a scope whose annotate() records nothing when telemetry is off."""
    async with agentmem_store.engine.observe("test.steps") as scope:
        scope.annotate(step=1)
        await agentmem_store.save_context("s", {"a": 1})
    assert await agentmem_store.load_context("s") == {"a": 1}
