"""AgentMemorySaver's contract on a real server, beyond LangGraph's conformance suite:
ordering and limits, isolation, concurrent writers, corruption, TTL, bad input, faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langgraph.checkpoint.base")

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointTuple
from langgraph.checkpoint.base.id import uuid6
from redis.asyncio import Redis
from redis.crc import key_slot

from agentmem import AgentMemoryStore
from agentmem.errors import (
    ContextTooLargeError,
    InvalidArgumentError,
    InvalidKeyError,
    MemoryCorruptedError,
    MemoryFullError,
    MemoryUnavailableError,
    SerializationError,
)
from agentmem.integrations.langgraph import AgentMemorySaver, LangGraphStore
from agentmem.integrations.langgraph._keys import thread_keys
from agentmem.testing import EmbeddedServer, ServerInfo, kill_connections, memory_pressure
from agentmem.testing.fixtures import StoreFactory

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "langgraph_agent.py"


def checkpoint(values: dict[str, Any] | None = None, versions: dict[str, Any] | None = None) -> Checkpoint:
    values = values or {}
    return Checkpoint(
        v=1,
        id=str(uuid6(clock_seq=-1)),
        ts=datetime.now(timezone.utc).isoformat(),
        channel_values=values,
        channel_versions=versions if versions is not None else dict.fromkeys(values, 1),
        versions_seen={},
        pending_sends=[],  # type: ignore[typeddict-unknown-key]
        updated_channels=None,
    )


def config(thread: str, ns: str = "", checkpoint_id: str | None = None) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


async def put_chain(saver: AgentMemorySaver, thread: str, count: int, ns: str = "") -> list[str]:
    """``count`` checkpoints, each the child of the last; their ids, oldest first."""
    ids: list[str] = []
    for step in range(count):
        parent = config(thread, ns, ids[-1] if ids else None)
        cp = checkpoint({"step": step}, {"step": 1 + step})
        await saver.aput(parent, cp, {"source": "loop", "step": step}, {"step": 1 + step})
        ids.append(cp["id"])
    return ids


async def listed(
    saver: AgentMemorySaver, cfg: RunnableConfig | None, **options: Any
) -> list[CheckpointTuple]:
    return [found async for found in saver.alist(cfg, **options)]


async def test_list_pages_newest_first_with_before_and_limit(agentmem_store: AgentMemoryStore) -> None:
    """alist pages through a thread newest first: limit cuts, before continues where a page ended."""
    saver = AgentMemorySaver(agentmem_store)
    ids = await put_chain(saver, "t1", 7)
    first = await listed(saver, config("t1"), limit=3)
    assert [t.checkpoint["id"] for t in first] == ids[::-1][:3]
    rest = await listed(saver, config("t1"), before=first[-1].config, limit=10)
    assert [t.checkpoint["id"] for t in rest] == ids[::-1][3:]
    assert [t.checkpoint["channel_values"]["step"] for t in rest] == [3, 2, 1, 0]
    assert rest[0].parent_config == config("t1", "", ids[2])
    index = thread_keys(agentmem_store.config.prefix, "t1").index
    assert await agentmem_store.client.zcard(index) == 7


async def test_list_without_a_namespace_spans_namespaces_and_threads(
    agentmem_store: AgentMemoryStore,
) -> None:
    """No checkpoint_ns: every namespace of the thread; no config: every thread of the prefix."""
    saver = AgentMemorySaver(agentmem_store)
    root = await put_chain(saver, "a", 2)
    child = await put_chain(saver, "a", 1, ns="child:1")
    other = await put_chain(saver, "b", 1)
    whole = await listed(saver, {"configurable": {"thread_id": "a"}})
    assert [t.checkpoint["id"] for t in whole] == sorted(root + child, reverse=True)
    everything = await listed(saver, None)
    assert {t.checkpoint["id"] for t in everything} == set(root + child + other)
    assert {t.config["configurable"]["thread_id"] for t in everything} == {"a", "b"}
    assert len(await listed(saver, None, filter={"step": 0}, limit=2)) == 2


async def test_threads_are_isolated_in_keys_and_deletes(agentmem_store: AgentMemoryStore) -> None:
    """Each thread has its own keys (one hash tag); deleting one leaves the other whole."""
    saver = AgentMemorySaver(agentmem_store)
    await put_chain(saver, "keep", 2)
    await put_chain(saver, "drop", 2)
    prefix = agentmem_store.config.prefix
    drop_keys = thread_keys(prefix, "drop").all()
    assert {key.split("}")[0] for key in drop_keys} == {f"{prefix}:{{lgt:drop"}
    await saver.adelete_thread("drop")
    assert await agentmem_store.client.exists(*drop_keys) == 0
    assert await agentmem_store.client.exists(*thread_keys(prefix, "keep").all()[:3]) == 3
    assert (await saver.aget_tuple(config("keep"))) is not None


async def test_concurrent_writers_lose_nothing(agentmem_store_factory: StoreFactory) -> None:
    """Two processes' worth of writers (two stores) putting checkpoints and task writes at
    once into one thread: every checkpoint and every write is there afterwards."""
    savers = [AgentMemorySaver(agentmem_store_factory()) for _ in range(2)]
    base = checkpoint()
    stored = await savers[0].aput(config("busy"), base, {"step": 0}, {})

    async def write(i: int) -> None:
        saver = savers[i % 2]
        await saver.aput_writes(stored, [("ch", i), ("other", -i)], f"task-{i}")
        await saver.aput(config("busy", "", base["id"]), checkpoint({"n": i}), {"step": 1, "i": i}, {"n": 1})  # type: ignore[typeddict-unknown-key]

    await asyncio.gather(*(write(i) for i in range(40)))
    found = await savers[1].aget_tuple(stored)
    assert found is not None
    assert found.pending_writes is not None
    assert sorted(w[2] for w in found.pending_writes if w[1] == "ch") == list(range(40))
    children = await listed(savers[0], config("busy"), filter={"step": 1})
    assert sorted(t.metadata["i"] for t in children) == list(range(40))  # type: ignore[typeddict-item]
    writes_key = thread_keys(savers[0]._prefix, "busy").writes
    assert await savers[0]._store.client.hlen(writes_key) == 80


async def test_a_retried_task_write_is_stored_once(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """The same (task, index) written twice keeps the first value; an error write is replaced."""
    saver = AgentMemorySaver(agentmem_store)
    stored = await saver.aput(config("t"), checkpoint(), {}, {})
    await saver.aput_writes(stored, [("ch", "first"), ("__error__", "boom")], "task")
    await saver.aput_writes(stored, [("ch", "second"), ("__error__", "boom again")], "task")
    found = await saver.aget_tuple(stored)
    assert found is not None
    assert found.pending_writes == [("task", "__error__", "boom again"), ("task", "ch", "first")]
    assert await agentmem_redis.hlen(thread_keys(agentmem_store.config.prefix, "t").writes) == 2


@pytest.mark.parametrize("part", ["record", "blob", "write", "versions"])
async def test_a_corrupt_stored_item_raises_memory_corrupted(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, part: str
) -> None:
    """Garbage in any stored part of a checkpoint raises MemoryCorruptedError, never a silent skip."""
    saver = AgentMemorySaver(agentmem_store)
    cp = checkpoint({"msg": "hi"})
    stored = await saver.aput(config("t"), cp, {}, {"msg": 1})
    await saver.aput_writes(stored, [("ch", "v")], "task")
    keys = thread_keys(agentmem_store.config.prefix, "t")
    member = f"\0{cp['id']}".encode()
    if part == "record":
        await agentmem_redis.hset(keys.checkpoints, member, b"\x00\x00\x00\x07msgpack\xff")
    elif part == "versions":
        await agentmem_redis.hset(keys.checkpoints, member + b"\0v", b"{not json")
    elif part == "blob":
        await agentmem_redis.hset(keys.blobs, b"\0msg\x001", b"\x00\x00\x00\x07msgpack\x00\x00\x00\x01\xc1")
    else:
        (field,) = await agentmem_redis.hkeys(keys.writes)
        await agentmem_redis.hset(keys.writes, field, b"junk")
    with pytest.raises(MemoryCorruptedError):
        await saver.aget_tuple(stored)
    with pytest.raises(MemoryCorruptedError):
        await listed(saver, config("t"))


async def test_thread_keys_carry_the_store_ttl_and_reads_slide_it(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis
) -> None:
    """Every key of a thread expires ``ttl`` after its last write; a read (sliding_ttl) renews it."""
    store = agentmem_store_factory(ttl=30)
    saver = AgentMemorySaver(store)
    stored = await saver.aput(config("t"), checkpoint({"a": 1}), {"run_id": "r1"}, {"a": 1})
    await saver.aput_writes(stored, [("ch", 1)], "task")
    keys = thread_keys(store.config.prefix, "t").all()
    for key in keys:
        assert 25_000 < await agentmem_redis.pttl(key) <= 30_000
    for key in keys:
        await agentmem_redis.pexpire(key, 5_000)
    assert await saver.aget_tuple(config("t")) is not None
    for key in keys:
        assert await agentmem_redis.pttl(key) > 25_000


async def test_a_thread_expires_with_the_store_ttl(agentmem_store_factory: StoreFactory) -> None:
    """With ttl=1 a thread is gone a little after a second without use."""
    saver = AgentMemorySaver(agentmem_store_factory(ttl=1))
    await put_chain(saver, "short", 2)
    assert await saver.aget_tuple(config("short")) is not None
    await asyncio.sleep(2.5)
    assert await saver.aget_tuple(config("short")) is None
    assert await saver._store.client.exists(*thread_keys(saver._prefix, "short").all()) == 0


async def test_bad_input_raises_typed_errors_and_writes_nothing(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis
) -> None:
    """A bad thread id, a NUL in a namespace, or a value over max_value_bytes is refused before any I/O."""
    store = agentmem_store_factory(max_value_bytes=1000)
    saver = AgentMemorySaver(store)
    with pytest.raises(InvalidKeyError):
        await saver.aput(config(""), checkpoint(), {}, {})
    with pytest.raises(InvalidArgumentError):
        await saver.aput(config("t", "bad\0ns"), checkpoint(), {}, {})
    with pytest.raises(ContextTooLargeError):
        await saver.aput(config("t"), checkpoint({"big": "x" * 5000}), {}, {"big": 1})
    with pytest.raises(SerializationError):
        await saver.aput(config("t"), checkpoint({"lock": object()}), {}, {"lock": 1})
    await saver.aput(config("t2"), checkpoint(), {}, {})
    with pytest.raises(SerializationError):
        await saver.aput_writes(config("t2", "", "some-id"), [("ok", 1), ("bad", object())], "task")
    with pytest.raises(InvalidArgumentError):
        await saver.aprune(["t"], strategy="keep_some")
    with pytest.raises(InvalidArgumentError):
        await saver.aget_tuple({})
    t2 = thread_keys(store.config.prefix, "t2")  # the one good put, and no write of the bad batch
    written = set(await agentmem_redis.keys(store.config.prefix + "*"))
    assert written == {t2.index.encode(), t2.checkpoints.encode()}


async def test_prune_keeps_latest_and_collects_unused_blobs(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """keep_latest leaves one checkpoint per namespace and only the channel values it uses."""
    saver = AgentMemorySaver(agentmem_store)
    ids = await put_chain(saver, "t", 5)
    keys = thread_keys(agentmem_store.config.prefix, "t")
    assert await agentmem_redis.hlen(keys.blobs) == 5
    await saver.aprune(["t"])
    assert await agentmem_redis.zrange(keys.index, 0, -1) == [f"\0{ids[-1]}".encode()]
    assert await agentmem_redis.hkeys(keys.blobs) == [b"\0step\x005"]
    latest = await saver.aget_tuple(config("t"))
    assert latest is not None
    assert latest.checkpoint["channel_values"] == {"step": 4}


async def test_delete_for_runs_and_copy_thread_follow_run_ids(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """A copied thread is indexed under its runs too: deleting the run empties both threads."""
    saver = AgentMemorySaver(agentmem_store)
    await saver.aput(config("src"), checkpoint({"a": 1}), {"run_id": "run-1"}, {"a": 1})
    await saver.acopy_thread("src", "dst")
    assert len(await listed(saver, config("dst"))) == 1
    await saver.adelete_for_runs(["run-1"])
    assert await listed(saver, config("src")) == []
    assert await listed(saver, config("dst")) == []
    prefix = agentmem_store.config.prefix
    for thread in ("src", "dst"):
        assert await agentmem_redis.hlen(thread_keys(prefix, thread).blobs) == 0
    assert await agentmem_redis.keys(prefix + ":{lgr:*") == []


async def test_a_killed_connection_is_retried_transparently(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """Killing the saver's connections between calls costs nothing: the next calls succeed."""
    saver = AgentMemorySaver(agentmem_store)
    ids = await put_chain(saver, "t", 2)
    name = agentmem_store.config.client_name
    assert name is not None
    assert await kill_connections(agentmem_redis, name) >= 1
    found = await saver.aget_tuple(config("t"))
    assert found is not None
    assert found.checkpoint["id"] == ids[-1]
    await kill_connections(agentmem_redis, name)
    ids += await put_chain(saver, "t2", 1)
    assert len(await listed(saver, None)) == 3


@pytest.mark.slow
async def test_a_server_restart_keeps_persisted_threads_and_the_saver_recovers(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory
) -> None:
    """After a restart of a persistent server the same saver object reads and writes again."""
    server: EmbeddedServer = agentmem_server_factory(persistence=True, appendfsync="always")
    saver = AgentMemorySaver(agentmem_store_factory(url=server.url))
    ids = await put_chain(saver, "t", 3)
    server.restart()
    found = await saver.aget_tuple(config("t"))
    assert found is not None
    assert found.checkpoint["id"] == ids[-1]
    more = await put_chain(saver, "t", 1)
    assert [t.checkpoint["id"] for t in await listed(saver, config("t"), limit=2)] == [more[0], ids[-1]]


async def test_the_langgraph_example_resumes_a_thread_across_processes(
    agentmem_server: ServerInfo, agentmem_prefix: str, agentmem_redis: Redis
) -> None:
    """examples/langgraph_agent.py: a second store/saver continues the first's thread and
    finds what the first wrote to the LangGraph store."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLE), agentmem_server.url, agentmem_prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "agent: You told me your name is Ada." in result.stdout
    assert "4 messages in the thread; profile: {'name': 'Ada'}" in result.stdout
    # Three checkpoints per invocation: the input, after START, after the chat node.
    assert await agentmem_redis.zcard(thread_keys(agentmem_prefix, "ada-1").index) == 6
    assert await agentmem_redis.exists(f"{agentmem_prefix}:{{lgs}}:idx") == 1


async def test_every_script_call_touches_one_cluster_slot(agentmem_store: AgentMemoryStore) -> None:
    """Each script the adapters send names keys of one hash slot (a thread, a run, the
    LangGraph store), so each runs unchanged on Redis Cluster; checked on what was written."""
    saver = AgentMemorySaver(agentmem_store)
    await saver.aput(config("t"), checkpoint({"a": 1}), {"run_id": "r"}, {"a": 1})
    await LangGraphStore(agentmem_store).aput(("n", "m", "o"), "k", {"v": 1})
    keys = await agentmem_store.client.keys(agentmem_store.config.prefix + ":*")
    by_tag: dict[bytes, set[int]] = {}
    for key in keys:
        assert isinstance(key, bytes)
        by_tag.setdefault(key.split(b"}")[0], set()).add(key_slot(key))
    assert len(by_tag) == 3  # the thread, the run's index, the LangGraph store
    assert all(len(slots) == 1 for slots in by_tag.values())
    prefix = agentmem_store.config.prefix
    assert {key_slot(key.encode()) for key in thread_keys(prefix, "t").all()} == by_tag[
        f"{prefix}:{{lgt:t".encode()
    ]


async def test_the_saver_ttl_overrides_the_store_ttl(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis
) -> None:
    """ttl=None keeps a thread until it is deleted; ttl=<seconds> sets its own lifetime; a bad ttl raises."""
    forever = AgentMemorySaver(agentmem_store, ttl=None)
    await put_chain(forever, "forever", 2)
    await forever.aget_tuple(config("forever"))
    prefix = agentmem_store.config.prefix
    for key in thread_keys(prefix, "forever").all()[:3]:
        assert await agentmem_redis.pttl(key) == -1
    week = AgentMemorySaver(agentmem_store, ttl=timedelta(days=7))
    await put_chain(week, "week", 1)
    assert 604_000_000 < await agentmem_redis.pttl(thread_keys(prefix, "week").index) <= 604_800_000
    with pytest.raises(InvalidArgumentError):
        AgentMemorySaver(agentmem_store, ttl=0)


@pytest.mark.slow
async def test_an_outage_raises_memory_unavailable_then_the_saver_recovers(
    agentmem_private_server: EmbeddedServer, agentmem_store_factory: StoreFactory
) -> None:
    """With the server down a call fails with MemoryUnavailableError (typed, after the store's
    retries), not a raw ConnectionError; once it is back the same saver works again."""
    saver = AgentMemorySaver(agentmem_store_factory(url=agentmem_private_server.url))
    await put_chain(saver, "t", 1)
    agentmem_private_server.stop()
    with pytest.raises(MemoryUnavailableError):
        await saver.aget_tuple(config("t"))
    with pytest.raises(MemoryUnavailableError):
        await saver.aput(config("t"), checkpoint(), {}, {})
    agentmem_private_server.start()
    for _ in range(50):  # the breaker lets calls through again after its probe succeeds
        try:
            await put_chain(saver, "t", 1)
            break
        except MemoryUnavailableError:
            await asyncio.sleep(0.2)
    assert len(await listed(saver, config("t"))) == 1  # no persistence: only the new one


@pytest.mark.skipif(
    sys.version_info < (3, 11),
    reason="LangGraph's interrupt() cannot find its config in an async graph before Python 3.11 "
    "(the same with its InMemorySaver); the breakpoint test below covers resuming there",
)
async def test_an_interrupted_graph_resumes_from_a_new_saver(agentmem_store_factory: StoreFactory) -> None:
    """A graph stopped by interrupt() is resumed with Command(resume=...) by another
    store/saver: the interrupt (a special-channel pending write) survived in Redis."""
    from langgraph.graph import START, StateGraph
    from langgraph.types import Command, interrupt
    from typing_extensions import TypedDict

    class State(TypedDict):
        question: str
        answer: str

    def ask(state: State) -> dict[str, str]:
        return {"answer": str(interrupt({"question": state["question"]}))}

    def build(store: AgentMemoryStore) -> Any:
        graph = StateGraph(State)
        graph.add_node("ask", ask)
        graph.add_edge(START, "ask")
        return graph.compile(checkpointer=AgentMemorySaver(store))

    thread: RunnableConfig = {"configurable": {"thread_id": "hitl"}}
    store = agentmem_store_factory()
    first = await build(store).ainvoke({"question": "ship it?", "answer": ""}, thread)
    assert first["__interrupt__"][0].value == {"question": "ship it?"}
    stored = await store.client.hvals(thread_keys(store.config.prefix, "hitl").writes)
    assert any(b"__interrupt__" in value for value in stored)
    resumed = await build(agentmem_store_factory()).ainvoke(Command(resume="yes"), thread)
    assert resumed == {"question": "ship it?", "answer": "yes"}


async def test_a_graph_stopped_at_a_breakpoint_resumes_from_a_new_saver(
    agentmem_store_factory: StoreFactory,
) -> None:
    """A graph compiled with interrupt_before stops there; another store/saver resumes it
    with ainvoke(None) and the node runs once, on the stored state."""
    from langgraph.graph import START, StateGraph
    from typing_extensions import TypedDict

    class State(TypedDict):
        count: int

    def step(state: State) -> dict[str, int]:
        return {"count": state["count"] + 1}

    def build(store: AgentMemoryStore) -> Any:
        graph = StateGraph(State)
        graph.add_node("step", step)
        graph.add_edge(START, "step")
        return graph.compile(checkpointer=AgentMemorySaver(store), interrupt_before=["step"])

    thread: RunnableConfig = {"configurable": {"thread_id": "paused"}}
    assert await build(agentmem_store_factory()).ainvoke({"count": 41}, thread) == {"count": 41}
    other = build(agentmem_store_factory())
    paused = await other.aget_state(thread)
    assert paused.next == ("step",)
    assert await other.ainvoke(None, thread) == {"count": 42}
    assert (await other.aget_state(thread)).next == ()


async def test_a_full_server_refuses_a_checkpoint_whole_and_still_deletes(
    agentmem_private_server: EmbeddedServer, agentmem_store_factory: StoreFactory
) -> None:
    """Past maxmemory (noeviction) aput raises MemoryFullError with nothing of the checkpoint
    written, reads still answer, and adelete_thread still frees the thread."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    saver = AgentMemorySaver(store)
    ids = await put_chain(saver, "t", 2)
    keys = thread_keys(store.config.prefix, "t")
    before = {key: await store.client.dump(key) for key in keys.all()}
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        async with memory_pressure(admin, 1, "noeviction"):
            with pytest.raises(MemoryFullError):
                await saver.aput(
                    config("t", "", ids[-1]), checkpoint({"step": 9}, {"step": 99}), {}, {"step": 99}
                )
            assert {key: await store.client.dump(key) for key in keys.all()} == before
            latest = await saver.aget_tuple(config("t"))
            assert latest is not None
            assert latest.checkpoint["id"] == ids[-1]
            await saver.adelete_thread("t")
            assert await store.client.exists(*keys.all()) == 0
    finally:
        await admin.aclose()


async def test_listing_every_thread_on_a_cluster_reads_every_primary(
    agentmem_cluster_store: AgentMemoryStore, agentmem_cluster: list[str]
) -> None:
    """alist(None) walks every primary's keys: threads hashed to all three nodes are listed
    (a keyless SCAN through the slot router would have reached one node only)."""
    saver = AgentMemorySaver(agentmem_cluster_store)
    threads = [f"t{i}" for i in range(24)]
    for thread in threads:
        await saver.aput(config(thread), checkpoint(), {"source": "input"}, {})
    nodes = set()
    for thread in threads:
        key = f"{agentmem_cluster_store.config.prefix}:{{lgt:{thread}}}"
        transport: Any = agentmem_cluster_store.engine.transport
        nodes.add(transport.slots.node_for(key_slot(key.encode())))
    assert len(nodes) == 3  # the threads really are spread over the primaries
    listed = {found.config["configurable"]["thread_id"] async for found in saver.alist(None)}
    assert listed == set(threads)
