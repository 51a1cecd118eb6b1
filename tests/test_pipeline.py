"""Auto-pipelining on a real server: batching, isolation of errors and cancellations, NOSCRIPT."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from stored import payload

from agentmem import AgentMemoryError, AgentMemoryStore
from agentmem.keys import KeySchema, escape_glob
from agentmem.pipeline import MAX_BATCH

StoreFactory = Callable[..., AgentMemoryStore]


def _pipeliner(store: AgentMemoryStore) -> Any:
    pipeliner: Any = store.engine.transport
    assert pipeliner is not None
    return pipeliner


async def _burst(store: AgentMemoryStore) -> None:
    """A few concurrent calls: afterwards the pipeliner batches the next burst whole (after
    lone calls, the first caller of a burst is sent inline, see test_lone_callers_are_sent_inline)."""
    await asyncio.gather(*(store.load_context(f"warm{i}") for i in range(4)))


async def test_lone_callers_are_sent_inline(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """One caller at a time: each call is one round trip sent from the caller's own task (no
    flush scheduled); the first caller of a burst then goes inline and the rest share batches."""
    pipeliner = _pipeliner(agentmem_store)
    before = pipeliner.batches
    for i in range(3):
        task = asyncio.ensure_future(agentmem_store.update_context(f"lone{i}", {"i": i}))
        await asyncio.sleep(0)
        assert pipeliner.queued == 0
        await task
    assert pipeliner.batches - before == 3
    schema = KeySchema(agentmem_prefix)
    assert payload(await agentmem_redis.hget(schema.session("lone2").context, "i") or b"") == b"2"
    await asyncio.gather(*(agentmem_store.update_context(f"b{i}", {"i": i}) for i in range(MAX_BATCH + 1)))
    assert list(pipeliner.recent_sizes)[-2:] == [1, MAX_BATCH]


async def test_lone_callers_after_a_burst_go_back_inline(agentmem_store: AgentMemoryStore) -> None:
    """After a burst the first lone call still rides a batch (it cannot know the burst is
    over); the next ones go inline, on the connection held between calls. A caller woken by
    its batch's reply must not see that finished batch as still on the wire (its task leaves
    the in-flight set a loop pass later), or every later lone call is batched too."""
    await _burst(agentmem_store)
    pipeliner = _pipeliner(agentmem_store)
    loop = asyncio.get_running_loop()
    queued: list[int] = []
    for i in range(4):
        # Awaited in this very task (an agent's own await), as a task of its own would add
        # a loop pass that hides the bug. The probe runs once the call yields to the loop.
        loop.call_soon(lambda: queued.append(pipeliner.queued))  # 1: waits for a flush; 0: inline
        await agentmem_store.load_context(f"after{i}")
    assert queued == [1, 0, 0, 0]


async def test_concurrent_calls_share_round_trips(agentmem_store: AgentMemoryStore) -> None:
    """64 concurrent calls go out in ceil(64 / MAX_BATCH) pipelines, not 64 round trips."""
    await _burst(agentmem_store)
    pipeliner = _pipeliner(agentmem_store)
    before = pipeliner.batches
    await asyncio.gather(*(agentmem_store.update_context(f"s{i}", {"i": i}) for i in range(64)))
    assert pipeliner.batches - before == -(-64 // MAX_BATCH)
    contexts = await asyncio.gather(*(agentmem_store.load_context(f"s{i}") for i in range(64)))
    assert contexts == [{"i": i} for i in range(64)]


async def test_an_operations_calls_never_split(agentmem_store: AgentMemoryStore) -> None:
    """load_turn's two scripts ride in one pipeline even when a batch boundary falls between them."""
    await agentmem_store.remember("u", {"vip": True})
    await _burst(agentmem_store)
    pipeliner = _pipeliner(agentmem_store)
    before = pipeliner.batches
    # MAX_BATCH - 1 single calls, then a two-call load_turn: it must start the next batch.
    loads = [agentmem_store.load_context(f"x{i}") for i in range(MAX_BATCH - 1)]
    _, turn = await asyncio.gather(asyncio.gather(*loads), agentmem_store.load_turn("s", user_id="u"))
    assert turn.profile == {"vip": True}
    assert pipeliner.batches - before == 2
    assert list(pipeliner.recent_sizes)[-2:] == [MAX_BATCH - 1, 2]  # not [MAX_BATCH, 1]


async def test_an_error_fails_only_its_caller(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A WRONGTYPE reply inside a batch raises for that caller; the others succeed."""
    await agentmem_redis.set(KeySchema(agentmem_prefix).session("broken").context, b"not a hash")
    results = await asyncio.gather(
        *(agentmem_store.update_context(f"ok{i}", {"i": i}) for i in range(10)),
        agentmem_store.update_context("broken", {"i": -1}),
        return_exceptions=True,
    )
    assert results[:10] == [None] * 10
    assert isinstance(results[10], AgentMemoryError)
    assert "WRONGTYPE" in str(results[10])


async def test_cancelled_callers_do_not_disturb_others(agentmem_store: AgentMemoryStore) -> None:
    """Callers cancelled before and after the flush leave every other reply correct."""
    for i in range(40):
        await agentmem_store.save_context(f"s{i}", {"i": i})
    tasks = [asyncio.create_task(agentmem_store.load_context(f"s{i}")) for i in range(40)]
    await asyncio.sleep(0)  # every task has queued its call
    for task in tasks[::4]:
        task.cancel()  # before the flush: dropped from the batch
    await asyncio.sleep(0)
    for task in tasks[1::4]:
        task.cancel()  # after the flush: the reply is ignored
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 4 in (0, 1):
            assert isinstance(result, asyncio.CancelledError) or result == {"i": i}
        else:
            assert result == {"i": i}
    assert await agentmem_store.load_context("s0") == {"i": 0}  # the store still works


async def test_writes_cancelled_before_the_flush_are_never_sent(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Writers cancelled before the flush reach no key on the server; the rest are written."""
    await _burst(agentmem_store)  # connection made, scripts loaded, batching
    writes = [
        agentmem_store.save_context("ctx0", {"i": 0}),
        agentmem_store.update_context("ctx1", {"i": 1}),
        agentmem_store.append_messages("hist2", [{"i": 2}]),
        agentmem_store.remember("user3", {"i": 3}),
    ]
    tasks = [asyncio.create_task(write) for write in writes]
    kept = [asyncio.create_task(agentmem_store.update_context(f"kept{i}", {"i": i})) for i in range(4)]
    await asyncio.sleep(0)  # every task has queued its call; the flush has not run
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, *kept, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:4])
    assert results[4:] == [None] * 4
    schema = KeySchema(agentmem_prefix)
    on_server = {k async for k in agentmem_redis.scan_iter(match=escape_glob(agentmem_prefix) + "*")}
    assert on_server == {schema.session(f"kept{i}").context.encode() for i in range(4)}


async def test_noscript_in_a_batch_reloads_once(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any
) -> None:
    """After SCRIPT FLUSH, a batch of 30 calls reloads the script and every call succeeds."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    await store.save_context("s", {"a": 1})
    await _burst(store)  # batching: all 30 calls below share pipelines, none goes inline
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        await admin.script_flush()
        loads_before = store.engine.scripts.loads
        # load_turn runs a script (load_context is a MULTI/EXEC transaction, which needs none)
        turns = await asyncio.gather(*(store.load_turn("s") for _ in range(30)))
        results = [turn.context for turn in turns]
    finally:
        await admin.aclose()
    assert results == [{"a": 1}] * 30
    assert store.engine.scripts.loads == loads_before + 1


async def test_pipelining_over_a_caller_client(agentmem_redis: Redis, agentmem_prefix: str) -> None:
    """A caller-supplied client is auto-pipelined too, and left open."""
    store = AgentMemoryStore(agentmem_redis, prefix=agentmem_prefix)
    await asyncio.gather(*(store.append_messages("s", [{"n": i}]) for i in range(20)))
    assert sorted(m["n"] for m in await store.load_history("s", last=50)) == list(range(20))
    await store.aclose()
    assert await agentmem_redis.ping()


@pytest.mark.parametrize("auto_pipeline", [True, False])
async def test_same_results_with_and_without(
    agentmem_store_factory: StoreFactory, auto_pipeline: bool
) -> None:
    """auto_pipeline only changes how calls travel, not what they do."""
    store = agentmem_store_factory(auto_pipeline=auto_pipeline)
    await asyncio.gather(*(store.update_context("s", {f"f{i}": i}) for i in range(20)))
    assert await store.load_context("s") == {f"f{i}": i for i in range(20)}


async def test_lone_callers_reuse_one_held_connection(agentmem_redis: Redis, agentmem_prefix: str) -> None:
    """Inline sends keep one connection checked out between calls (no pool round trip per
    call); health() does not count it as in use, and aclose() returns it to the caller's pool."""
    store = AgentMemoryStore(agentmem_redis, prefix=agentmem_prefix)
    pool = agentmem_redis.connection_pool
    for i in range(5):
        await store.update_context("s", {"i": i})
    assert _pipeliner(store).idle_held == 1
    in_use = list(pool._in_use_connections)
    assert len(in_use) == 1
    await store.load_context("s")
    assert list(pool._in_use_connections) == in_use  # the same one
    assert (await store.health()).pool_in_use == 0
    await store.aclose()
    assert not pool._in_use_connections
    stored = await agentmem_redis.hget(KeySchema(agentmem_prefix).session("s").context, "i")
    assert payload(stored or b"") == b"4"


async def test_a_pool_of_one_is_never_held(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any
) -> None:
    """With max_connections=1, inline sends give the connection back after each call, so a
    burst (batches on the pool) and a script reload after SCRIPT FLUSH still get it."""
    store = agentmem_store_factory(url=agentmem_private_server.url, max_connections=1, pool_timeout=2.0)
    await store.save_context("s", {"a": 1})
    assert _pipeliner(store).idle_held == 0
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        await admin.script_flush()
        await store.save_context("s", {"a": 2})  # inline: NOSCRIPT, reload on the same pool
        results = await asyncio.gather(*(store.load_context("s") for _ in range(40)))
        assert results == [{"a": 2}] * 40
        base = await admin.get(KeySchema(store.config.prefix).session("s").base)
        assert orjson.loads(payload(base or b"")) == {"a": 2}
    finally:
        await admin.aclose()
