"""Default options on a real server: a blip is waited out, refusals are not outages.

The breaker's state machine alone is in ``test_breaker.py``; the long runs with many
faults are in ``test_chaos.py``. Every store here uses the default resilience options.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import trustme
from redis.asyncio import Redis

from agentmem import (
    AgentMemoryError,
    AgentMemoryStore,
    ContextTooLargeError,
    MemoryPermissionError,
    MemoryUnavailableError,
)
from agentmem.keys import KeySchema

StoreFactory = Callable[..., AgentMemoryStore]


async def test_a_restart_is_waited_out_by_concurrent_agents(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory
) -> None:
    """kill -9 and restart under 30 concurrent callers: calls fail and are retried (the breaker
    may open), and every call still succeeds."""
    server = agentmem_server_factory(persistence=True, appendfsync="always")
    store = agentmem_store_factory(url=server.url)
    await store.save_context("s", {"n": 0})
    stop = asyncio.Event()
    done: list[int] = []

    async def agent(i: int) -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            await store.update_context("s", {f"a{i}": turn})
            done.append(turn)
            await asyncio.sleep(0.005)

    agents = [asyncio.create_task(agent(i)) for i in range(30)]
    await asyncio.sleep(0.2)
    # Paused first, so that the kill lands with calls on the wire (sent, their replies never
    # to come), not between two calls, where each would just find its connection closed.
    server.pause()
    await asyncio.sleep(0.1)
    await asyncio.to_thread(server.kill)
    await asyncio.to_thread(server.start)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*agents)  # any AgentMemoryError fails the test here
    assert store.retry_stats.retries >= 1  # the restart really hit calls in flight
    assert store.breaker.state.value == "closed"
    context = await store.load_context("s") or {}
    assert all(f"a{i}" in context for i in range(30))


async def test_waiting_caller_cancelled_cleanly(
    agentmem_private_server: Any, agentmem_store_factory: StoreFactory, agentmem_redis: Redis
) -> None:
    """A caller waiting on an open breaker can be cancelled: nothing leaks, the next call works."""
    server = agentmem_private_server
    store = agentmem_store_factory(url=server.url)
    await store.save_context("s", {"a": 1})
    server.stop()
    callers = [asyncio.create_task(store.update_context("s", {f"f{i}": i})) for i in range(10)]
    for _ in range(150):  # their retries fail until the breaker opens; then they wait
        if store.breaker.is_open:
            break
        await asyncio.sleep(0.01)
    assert store.breaker.is_open
    attempts = store.retry_stats.attempts
    await asyncio.sleep(0.2)
    assert store.retry_stats.attempts == attempts  # waiting callers send nothing; only the prober does
    assert not any(c.done() for c in callers)
    callers[0].cancel()
    with pytest.raises(asyncio.CancelledError):
        await callers[0]
    server.start()
    await asyncio.gather(*callers[1:])
    assert await store.load_context("s") == {f"f{i}": i for i in range(1, 10)}  # f0 was cancelled
    assert (await store.health()).pool_in_use == 0


async def test_breaker_cooldown_is_gone_with_a_pointer(agentmem_store_factory: StoreFactory) -> None:
    """The removed option says what replaced it instead of being silently accepted."""
    with pytest.raises(TypeError, match="breaker_probe_interval"):
        agentmem_store_factory(breaker_cooldown=5.0)


# -- refusals are not outages --------------------------------------------------------------


@pytest.fixture
async def acl_server(agentmem_private_server: Any) -> AsyncIterator[tuple[Any, Redis]]:
    """A private server and an admin client on it (ACL users are made per test, there only)."""
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        yield agentmem_private_server, admin
    finally:
        await admin.aclose()


def _user_url(server_url: str, user: str, password: str) -> str:
    return server_url.replace("redis://", f"redis://{user}:{password}@", 1)


def _assert_not_an_outage(store: AgentMemoryStore, started: float) -> None:
    assert store.retry_stats.retries == 0
    assert store.breaker.consecutive_failures == 0
    assert not store.breaker.is_open
    assert time.monotonic() - started < 0.5


async def test_wrong_password_is_a_permission_error_not_retried(
    acl_server: tuple[Any, Redis], agentmem_store_factory: StoreFactory
) -> None:
    """WRONGPASS: MemoryPermissionError at once, no retry, the breaker not fed."""
    server, admin = acl_server
    await admin.acl_setuser("agent", enabled=True, passwords=["+right"], commands=["+@all"], keys=["*"])
    store = agentmem_store_factory(url=_user_url(server.url, "agent", "wrong"))
    started = time.monotonic()
    for _ in range(6):  # more than breaker_threshold
        with pytest.raises(MemoryPermissionError, match="not retried"):
            await store.save_context("s", {"a": 1})
    _assert_not_an_outage(store, started)


async def test_acl_denied_command_is_a_permission_error_and_writes_nothing(
    acl_server: tuple[Any, Redis], agentmem_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """NOPERM for the store's scripts: MemoryPermissionError, not retried, nothing on the server."""
    server, admin = acl_server
    await admin.acl_setuser(
        "reader", enabled=True, passwords=["+pw"], commands=["+@all", "-evalsha", "-eval"], keys=["*"]
    )
    store = agentmem_store_factory(url=_user_url(server.url, "reader", "pw"))
    started = time.monotonic()
    for _ in range(6):
        with pytest.raises(MemoryPermissionError):
            await store.update_context("s", {"a": 1})
    _assert_not_an_outage(store, started)
    assert await admin.keys(f"{agentmem_prefix}*") == []


async def test_acl_denied_keys_are_a_permission_error_and_write_nothing(
    acl_server: tuple[Any, Redis], agentmem_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """A user whose key pattern excludes the store's prefix: MemoryPermissionError, nothing written."""
    server, admin = acl_server
    await admin.acl_setuser(
        "tenant", enabled=True, passwords=["+pw"], commands=["+@all"], keys=["other-tenant:*"]
    )
    store = agentmem_store_factory(url=_user_url(server.url, "tenant", "pw"))
    started = time.monotonic()
    with pytest.raises(MemoryPermissionError):
        await store.append_messages("s", [{"role": "user", "content": "hi"}])
    _assert_not_an_outage(store, started)
    assert await admin.exists(*KeySchema(agentmem_prefix).session("s").all()) == 0


@pytest.fixture
async def untrusted_tls_port() -> AsyncIterator[int]:
    """A TLS listener whose certificate no default trust store accepts (a private CA)."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def test_tls_verification_failure_is_not_retried(
    untrusted_tls_port: int, agentmem_store_factory: StoreFactory
) -> None:
    """A certificate that fails verification: a typed error at once, no retry, the breaker not fed."""
    store = agentmem_store_factory(url=f"rediss://127.0.0.1:{untrusted_tls_port}/0")
    started = time.monotonic()
    for _ in range(6):
        with pytest.raises(AgentMemoryError, match="TLS handshake refused") as info:
            await store.load_context("s")
        assert not isinstance(info.value, MemoryUnavailableError)
    _assert_not_an_outage(store, started)


async def test_value_over_proto_max_bulk_len_is_refused_before_sending(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """A value over the server's proto-max-bulk-len: ContextTooLargeError before I/O; its neighbours
    in the same pipeline are not reset, retried or counted as failures."""
    server = agentmem_server_factory(**{"proto-max-bulk-len": "1mb"})
    store = agentmem_store_factory(url=server.url, max_value_bytes=4 * 1024 * 1024)
    big = {"a": "x" * (1536 * 1024)}

    async def big_write() -> None:
        with pytest.raises(ContextTooLargeError, match="proto-max-bulk-len"):
            await store.save_context("big", big)

    await asyncio.gather(big_write(), *(store.save_context(f"s{i}", {"i": i}) for i in range(5)))
    assert store.retry_stats.retries == 0
    assert store.breaker.consecutive_failures == 0
    admin = Redis.from_url(server.url)
    try:
        assert await admin.exists(*KeySchema(agentmem_prefix).session("big").all()) == 0
        assert await admin.exists(*(KeySchema(agentmem_prefix).session(f"s{i}").base for i in range(5))) == 5
    finally:
        await admin.aclose()
    await store.save_context("fits", {"a": "y" * (900 * 1024)})  # under the limit: sent
    assert (await store.load_context("fits") or {})["a"] == "y" * (900 * 1024)


async def test_recovery_drops_connections_that_died_with_the_server(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory
) -> None:
    """After a restart, the breaker's recovery drops the idle pooled connections (all dead):
    the first burst after it needs no retry."""
    server = agentmem_server_factory(persistence=True, appendfsync="always")
    store = agentmem_store_factory(url=server.url)
    await asyncio.gather(*(store.update_context(f"s{i}", {"n": i}) for i in range(64)))
    assert len(store.client.connection_pool._available_connections) >= 2
    await asyncio.to_thread(server.kill)
    waiting = asyncio.create_task(store.load_context("s0"))  # fails, opens the breaker, waits
    for _ in range(150):
        if store.breaker.is_open:
            break
        await asyncio.sleep(0.01)
    assert store.breaker.is_open
    await asyncio.to_thread(server.start)
    assert await waiting == {"n": 0}
    retries = store.retry_stats.retries
    await asyncio.gather(*(store.update_context(f"s{i}", {"m": i}) for i in range(64)))
    assert store.retry_stats.retries == retries
