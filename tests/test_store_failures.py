"""Real faults on the wire and in the server process: every failure is recovered or typed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, CircuitOpenError, MemoryFullError, MemoryUnavailableError
from agentmem.keys import KeySchema, escape_glob
from agentmem.testing import kill_connections, memory_pressure
from agentmem.testing.server import free_port

StoreFactory = Callable[..., AgentMemoryStore]


def _state(store: AgentMemoryStore) -> str:
    return store.breaker.state.value


FAST_FAIL = {"socket_timeout": 0.3, "socket_connect_timeout": 0.3, "retries": 1, "retry_deadline": 1.0}


async def test_stopped_server_raises_unavailable(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any
) -> None:
    """With the server stopped, a write raises MemoryUnavailableError chained to redis-py's error."""
    store = agentmem_store_factory(url=agentmem_private_server.url, breaker_threshold=0, **FAST_FAIL)
    await store.save_context("s", {"a": 1})
    agentmem_private_server.stop()
    started = time.monotonic()
    with pytest.raises(MemoryUnavailableError) as info:
        await store.save_context("s", {"a": 2})
    assert time.monotonic() - started < 3.0
    assert isinstance(info.value.__cause__, (rexc.ConnectionError, rexc.TimeoutError))
    assert "2 attempts" in str(info.value)
    agentmem_private_server.start()
    await store.save_context("s", {"a": 3})
    assert await store.load_context("s") == {"a": 3}


async def test_a_refused_connection_says_so_and_what_to_check(agentmem_store_factory: StoreFactory) -> None:
    """Nothing listening at the URL (default options): the error says the connection was
    refused, asks whether a server runs at host:port, says how to get one or pass a URL,
    and names the operation once (issue 20: not "did not answer", not "save_context:" twice)."""
    port = free_port()
    store = agentmem_store_factory(url=f"redis://127.0.0.1:{port}/0")
    with pytest.raises(MemoryUnavailableError) as info:
        await store.save_context("call-1", {"phone": "13800138000"})
    text = str(info.value)
    assert f"connection refused: is a server running at 127.0.0.1:{port}?" in text
    assert "or pass the URL of yours" in text
    assert "did not answer" not in text
    assert text.startswith("save_context: ")
    assert text.count("save_context") == 1


async def test_killed_connections_are_recovered(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """After the server kills every store connection, the next calls succeed on new ones."""
    name = f"{agentmem_prefix}-kill"[-60:]
    store = agentmem_store_factory(client_name=name, max_connections=4)
    await asyncio.gather(*(store.update_context("s", {f"f{i}": i}) for i in range(8)))
    killed = await kill_connections(agentmem_redis, name)
    assert killed >= 1
    assert await store.load_context("s") == {f"f{i}": i for i in range(8)}
    await store.update_context("s", {"after": True})
    assert (await store.load_context("s") or {})["after"] is True


async def test_blackhole_times_out_then_recovers(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """A network blackhole makes calls fail with MemoryUnavailableError in bounded time; restore heals."""
    store = agentmem_store_factory(url=agentmem_proxy.url, breaker_threshold=0, **FAST_FAIL)
    await store.save_context("s", {"a": 1})
    agentmem_proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(MemoryUnavailableError):
        await store.load_context("s")
    assert time.monotonic() - started < 2.5
    agentmem_proxy.restore()
    assert await store.load_context("s") == {"a": 1}


async def test_reset_connections_are_retried(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """A TCP reset of every open connection is invisible to the caller: the call is retried."""
    store = agentmem_store_factory(url=agentmem_proxy.url, retries=3)
    await store.save_context("s", {"a": 1})
    agentmem_proxy.reset()
    assert await store.load_context("s") == {"a": 1}


async def test_paused_server_times_out_and_resume_heals(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any
) -> None:
    """SIGSTOP on the server makes calls time out as MemoryUnavailableError; SIGCONT heals."""
    store = agentmem_store_factory(url=agentmem_private_server.url, breaker_threshold=0, **FAST_FAIL)
    await store.save_context("s", {"a": 1})
    agentmem_private_server.pause()
    try:
        with pytest.raises(MemoryUnavailableError, match="Timeout"):
            await store.load_context("s")
    finally:
        agentmem_private_server.resume()
    assert await store.load_context("s") == {"a": 1}


async def test_restart_reloads_scripts(
    agentmem_store_factory: StoreFactory, agentmem_server_factory: Any
) -> None:
    """After a restart (scripts gone: NOSCRIPT), calls reload them and data kept by AOF is read."""
    server = agentmem_server_factory(persistence=True, appendfsync="always")
    store = agentmem_store_factory(url=server.url, retries=5, retry_deadline=5.0)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    server.restart()
    assert await store.load_context("s") == {"a": 1}
    assert await store.append_messages("s", [{"n": 2}]) == 2
    admin = Redis.from_url(server.url)
    try:
        await admin.script_flush()
    finally:
        await admin.aclose()
    assert [m["n"] for m in await store.load_history("s")] == [1, 2]


async def _fill(admin: Redis, prefix: str) -> None:
    """Write junk until even a small write is refused: used memory is then over maxmemory.

    Big values first to get close fast, then small ones: a big value's refusal can come
    from its own query buffer, after which memory falls back under the limit.
    """
    for size in (64 * 1024, 1024, 64):
        blob = b"x" * size
        for i in range(100_000):
            try:
                await admin.set(f"{prefix}:junk:{size}:{i}", blob)
            except rexc.OutOfMemoryError:
                break
        else:
            raise AssertionError("the server never ran out of memory")


async def test_out_of_memory_writes_nothing_and_reads_work(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any
) -> None:
    """Under noeviction at maxmemory, writes raise MemoryFullError whole; reads still answer."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await store.remember("u", {"name": "Li"})
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        async with memory_pressure(admin, maxmemory="3mb", policy="noeviction"):
            await _fill(admin, "junk")
            with pytest.raises(MemoryFullError, match="nothing was written"):
                await store.save_context("s", {"b": 2, "c": "y" * 10_000})
            with pytest.raises(MemoryFullError):
                await store.update_context("s", {"d": "z" * 10_000})
            with pytest.raises(MemoryFullError):
                await store.append_messages("s", [{"n": 2, "big": "w" * 10_000}])
            with pytest.raises(MemoryFullError):
                await store.remember("u", {"big": "v" * 10_000})
            turn = await store.load_turn("s", user_id="u")
            assert turn.context == {"a": 1}
            assert turn.history == [{"n": 1}]
            assert turn.profile == {"name": "Li"}
            # load_context is a MULTI/EXEC, whose queued reads Redis < 7.2 refuses past maxmemory
            assert await store.load_context("s") == {"a": 1}
    finally:
        await admin.aclose()


async def test_breaker_fails_fast_after_the_deadline_then_closes_by_itself(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any
) -> None:
    """Past retry_deadline of outage new calls fail fast without I/O; the store's own probe closes it."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    await store.save_context("s", {"a": 1})
    agentmem_private_server.kill()
    with pytest.raises(MemoryUnavailableError) as info:
        await store.load_context("s")
    assert not isinstance(info.value, CircuitOpenError)  # it tried, and says so
    await asyncio.sleep(max(0.0, store.config.retry_deadline - store.breaker.outage_seconds) + 0.01)
    assert _state(store) == "failing_fast"
    attempts = store.retry_stats.attempts
    started = time.monotonic()
    with pytest.raises(CircuitOpenError, match="failing fast"):
        await store.load_context("s")
    assert time.monotonic() - started < 0.05
    assert store.retry_stats.attempts == attempts  # nothing was sent
    agentmem_private_server.start()
    await asyncio.sleep(store.config.breaker_probe_interval + 0.2)  # no call needed to close it
    assert _state(store) == "closed"
    await store.save_context("s", {"a": 2})
    assert (await store.health()).breaker_state == "closed"


async def test_retried_append_is_not_stored_twice(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """The server applies an append, the reply is lost to a reset: the retry appends nothing twice."""
    store = agentmem_store_factory(url=agentmem_proxy.url, retries=3, auto_pipeline=False)
    await store.append_messages("s", [{"n": 0}])
    agentmem_proxy.cut_next_reply()
    assert await store.append_messages("s", [{"n": 1}, {"n": 2}]) == 3
    assert agentmem_proxy.replies_cut == 1
    assert store.retry_stats.retries >= 1
    assert [m["n"] for m in await store.load_history("s")] == [0, 1, 2]


async def test_retried_append_through_the_pipeliner(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any
) -> None:
    """Same cut with auto-pipelining and concurrent appends: every message lands exactly once."""
    store = agentmem_store_factory(url=agentmem_proxy.url, retries=3)
    await store.append_messages("s", [{"n": -1}])
    agentmem_proxy.cut_next_reply()
    await asyncio.gather(*(store.append_messages("s", [{"n": i}]) for i in range(20)))
    assert agentmem_proxy.replies_cut == 1
    assert sorted(m["n"] for m in await store.load_history("s", last=100)) == list(range(-1, 20))


@pytest.mark.parametrize("auto_pipeline", [True, False])
async def test_many_appends_in_flight_are_each_stored_once(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    auto_pipeline: bool,
) -> None:
    """80 appends of one session applied by the server, every reply lost: the retries store none twice."""
    store = agentmem_store_factory(
        url=agentmem_proxy.url,
        auto_pipeline=auto_pipeline,
        max_connections=100,
        max_history=1000,
        breaker_threshold=0,  # about de-duplication, not the breaker
        retry_deadline=5.0,
        socket_timeout=3.0,  # the first attempts wait out the 2 s the proxy's latency adds
    )
    history = KeySchema(agentmem_prefix).session("s").history
    await store.append_messages("s", [{"n": -1}])
    await asyncio.gather(*(store.load_context(f"warm{i}") for i in range(80)))  # connections open
    # Replies travel back slowly: there is time to cut them all, even when sending the 80
    # requests takes a loaded machine a few hundred milliseconds (0.3 s was not always enough).
    agentmem_proxy.latency(1.0)
    appends = asyncio.gather(*(store.append_messages("s", [{"n": i}]) for i in range(80)))
    for _ in range(1000):  # the server applies all of them within the 1 s the replies wait
        if await agentmem_redis.llen(history) == 81:
            break
        await asyncio.sleep(0.005)
    assert await agentmem_redis.llen(history) == 81  # every append applied, no reply delivered yet
    agentmem_proxy.reset()  # every reply lost
    agentmem_proxy.restore()
    await appends
    assert store.retry_stats.retries >= 80 // (16 if auto_pipeline else 1)
    stored = sorted(orjson.loads(item)["n"] for item in await agentmem_redis.lrange(history, 0, -1))
    assert stored == list(range(-1, 80))


WRITES: dict[str, Callable[[AgentMemoryStore], Awaitable[object]]] = {
    "save_context": lambda store: store.save_context("s", {"a": 2}),
    "update_context": lambda store: store.update_context("s", {"b": 2}),
    "append_messages": lambda store: store.append_messages("s", [{"n": 2}]),
    "remember": lambda store: store.remember("u", {"c": 2}),
    "delete_session": lambda store: store.delete_session("s"),
    "forget_user": lambda store: store.forget_user("u"),
}


@pytest.mark.parametrize("write", WRITES)
async def test_every_write_to_a_stopped_server_raises_unavailable(
    agentmem_store_factory: StoreFactory, agentmem_private_server: Any, write: str
) -> None:
    """Each write against a stopped server raises MemoryUnavailableError chained to redis-py's error."""
    store = agentmem_store_factory(url=agentmem_private_server.url, breaker_threshold=0, **FAST_FAIL)
    await store.save_context("s", {"a": 1})  # connected, scripts loaded
    agentmem_private_server.stop()
    with pytest.raises(MemoryUnavailableError) as info:
        await WRITES[write](store)
    assert isinstance(info.value.__cause__, (rexc.ConnectionError, rexc.TimeoutError))
    assert store.retry_stats.failures == 1


async def _snapshot(redis: Redis, prefix: str) -> dict[bytes, bytes | None]:
    """Every key under the prefix and its DUMP: the server's state, byte for byte."""
    return {key: await redis.dump(key) async for key in redis.scan_iter(match=escape_glob(prefix) + "*")}


@pytest.mark.parametrize("write", WRITES)
async def test_every_write_to_an_unreachable_server_writes_nothing(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    write: str,
) -> None:
    """With the server unreachable (connects refused, open connections reset) each write raises
    MemoryUnavailableError and the server's keys are exactly as before."""
    store = agentmem_store_factory(url=agentmem_proxy.url, breaker_threshold=0, **FAST_FAIL)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await store.remember("u", {"c": 1})
    before = await _snapshot(agentmem_redis, agentmem_prefix)
    assert len(before) == 4
    agentmem_proxy.refuse()
    agentmem_proxy.reset()
    with pytest.raises(MemoryUnavailableError):
        await WRITES[write](store)
    assert await _snapshot(agentmem_redis, agentmem_prefix) == before


async def test_an_appends_first_attempt_overtaken_by_its_retry_is_not_stored_twice(
    agentmem_store_factory: StoreFactory, agentmem_proxy: Any, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """The first attempt of an append is held up on the way (past socket_timeout); the client
    retries on a new connection and the retry applies first; then the held first attempt
    reaches the server. The first attempt does not look its id up in the log (its id is new),
    but the retry recorded it among the retried ids, so the late one pushes nothing."""
    store = agentmem_store_factory(url=agentmem_proxy.url)
    session = KeySchema(agentmem_prefix).session("s")
    await store.append_messages("s", [{"n": 0}])
    hold = store.config.socket_timeout + 1.0
    agentmem_proxy.hold_next_request(hold)
    assert await store.append_messages("s", [{"n": 1}]) == 2
    assert store.retry_stats.retries >= 1
    assert await agentmem_redis.exists(session.retried) == 1
    await asyncio.sleep(hold + 0.5)  # the held first attempt has reached the server and run
    stored = [orjson.loads(item)["n"] for item in await agentmem_redis.lrange(session.history, 0, -1)]
    assert stored == [0, 1]
