"""Time and attempt bounds of a call during an outage, on a real server behind a proxy.

Every store uses the default resilience options (``retries=8``, ``retry_deadline=2.0``,
``socket_timeout=1.0``, ``breaker_threshold=5``): a blackholed proxy makes each attempt
take one ``socket_timeout``; a refusing proxy makes it fail at once. The bounds are the
documented ones with a margin for a loaded machine, and each is at least 0.5 s below what
a call that restarted or ignored its deadline would take.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, MemoryPermissionError, MemoryUnavailableError
from agentmem.config import StoreConfig

StoreFactory = Callable[..., AgentMemoryStore]
DEFAULTS = StoreConfig()
#: What one blackholed attempt costs: the reply is awaited for socket_timeout.
ATTEMPT = DEFAULTS.socket_timeout
DEADLINE = DEFAULTS.retry_deadline


async def _timed(call: Any) -> tuple[float, BaseException | None]:
    """Seconds the awaitable took, and what it raised (None if it returned)."""
    started = time.monotonic()
    try:
        await call
    except Exception as exc:
        return time.monotonic() - started, exc
    return time.monotonic() - started, None


async def _until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.fixture
def proxied(
    agentmem_private_server: Any, agentmem_proxy_factory: Any, agentmem_store_factory: StoreFactory
) -> tuple[Any, AgentMemoryStore]:
    """A private server behind a proxy, and a default store through the proxy."""
    proxy = agentmem_proxy_factory(agentmem_private_server.url)
    return proxy, agentmem_store_factory(url=proxy.url)


async def test_fast_path_failure_keeps_the_first_attempts_deadline(
    proxied: tuple[Any, AgentMemoryStore],
) -> None:
    """A lone caller's first (fast-path) attempt times out: its retries end within
    retry_deadline of the call's start plus one attempt, not of the first failure."""
    proxy, store = proxied
    await store.save_context("s", {"a": 1})  # idle, closed breaker: the next call takes the fast path
    attempts = store.retry_stats.attempts
    proxy.blackhole()
    elapsed, error = await _timed(store.load_context("s"))
    assert isinstance(error, MemoryUnavailableError)
    # Correct: attempts at 0 and ~1.05 s, given up at ~2.1 s. Restarted after the first
    # attempt: a third attempt, given up at ~3.1 s.
    assert elapsed < DEADLINE + ATTEMPT * 0.5 + 0.2, elapsed
    assert store.retry_stats.attempts - attempts == 2
    proxy.restore()
    assert await store.load_context("s") == {"a": 1}


async def test_retry_deadline_bounds_a_call_with_many_retries(
    proxied: tuple[Any, AgentMemoryStore],
) -> None:
    """retries=8 (the default) does not stretch a call past retry_deadline plus one attempt:
    concurrent callers against a blackholed server all give up by then."""
    proxy, store = proxied
    await store.save_context("s", {"a": 1})
    attempts = store.retry_stats.attempts
    proxy.blackhole()
    results = await asyncio.gather(*(_timed(store.load_context("s")) for _ in range(3)))
    for elapsed, error in results:
        assert isinstance(error, MemoryUnavailableError)
        # Each: attempts at 0 and ~1.05 s, given up at ~2.1 s. Retrying by count only: 1 s
        # attempts until the breaker opens (>= 3 s), then a wait.
        assert elapsed < DEADLINE + ATTEMPT * 0.5 + 0.2, elapsed
    assert store.retry_stats.attempts - attempts <= 2 * len(results)
    proxy.restore()
    assert await store.load_context("s") == {"a": 1}


async def test_a_waiter_waits_only_what_is_left_of_its_own_deadline(
    proxied: tuple[Any, AgentMemoryStore],
) -> None:
    """A caller whose first attempt timed out and then found the breaker open waits for the
    probe only until its own retry_deadline (counted from its start), not a new one."""
    proxy, store = proxied
    await store.save_context("s", {"a": 1})
    proxy.blackhole()
    others = []
    for i in range(DEFAULTS.breaker_threshold):  # separate round trips: they open the breaker
        others.append(asyncio.create_task(_timed(store.load_context(f"o{i}"))))
        await asyncio.sleep(0.02)
    late = asyncio.create_task(_timed(store.load_context("s")))  # fails after the breaker opened
    await _until(lambda: store.breaker.is_open)
    elapsed, error = await late
    assert isinstance(error, MemoryUnavailableError)
    # Its attempt failed ~1 s in; then it waits ~1 s more. A new deadline at the wait: ~3 s.
    assert DEADLINE - 0.3 < elapsed < DEADLINE + 0.5, elapsed
    await asyncio.gather(*others)
    proxy.restore()
    await _until(lambda: not store.breaker.is_open)
    assert await store.load_context("s") == {"a": 1}


@pytest.fixture
async def acl_proxied(
    agentmem_private_server: Any, agentmem_proxy_factory: Any, agentmem_store_factory: StoreFactory
) -> AsyncIterator[tuple[Any, Redis, AgentMemoryStore]]:
    """A proxy in front of a private server, an admin client on the server, and a store
    through the proxy that logs in as the ACL user ``agent`` (password ``pw``)."""
    admin = Redis.from_url(agentmem_private_server.url)
    await admin.acl_setuser("agent", enabled=True, passwords=["+pw"], commands=["+@all"], keys=["*"])
    proxy = agentmem_proxy_factory(agentmem_private_server.url)
    store = agentmem_store_factory(url=proxy.url.replace("redis://", "redis://agent:pw@", 1))
    try:
        yield proxy, admin, store
    finally:
        await admin.aclose()


async def test_a_probe_answered_by_wrongpass_releases_waiters_with_a_permission_error(
    acl_proxied: tuple[Any, Redis, AgentMemoryStore],
) -> None:
    """The server comes back with the store's password changed: the probe counts WRONGPASS as
    an answer and the waiter gets MemoryPermissionError at once, not an outage at its deadline."""
    proxy, admin, store = acl_proxied
    await store.save_context("s", {"a": 1})
    proxy.refuse()
    proxy.reset()  # the open connections die too: a real outage
    waiter = asyncio.create_task(_timed(store.load_context("s")))
    await _until(lambda: store.breaker.is_open)
    await admin.acl_setuser("agent", enabled=True, passwords=["-pw", "+changed"])
    restored = time.monotonic()
    proxy.restore()
    _, error = await waiter
    answered = time.monotonic() - restored
    assert isinstance(error, MemoryPermissionError), error
    assert answered < DEFAULTS.breaker_probe_interval + 0.5, answered
    await admin.acl_setuser("agent", enabled=True, passwords=["-changed", "+pw"])
    assert await store.load_context("s") == {"a": 1}


async def test_a_probe_answered_by_noperm_releases_waiters_with_a_permission_error(
    acl_proxied: tuple[Any, Redis, AgentMemoryStore],
) -> None:
    """The server comes back denying the store's user PING and its scripts: NOPERM is an
    answer; the waiter gets MemoryPermissionError at once."""
    proxy, admin, store = acl_proxied
    await store.save_context("s", {"a": 1})
    proxy.refuse()
    proxy.reset()  # the open connections die too: a real outage
    waiter = asyncio.create_task(_timed(store.load_context("s")))
    await _until(lambda: store.breaker.is_open)
    await admin.acl_setuser("agent", enabled=True, commands=["-@all"])
    restored = time.monotonic()
    proxy.restore()
    _, error = await waiter
    answered = time.monotonic() - restored
    assert isinstance(error, MemoryPermissionError), error
    assert answered < DEFAULTS.breaker_probe_interval + 0.5, answered
    await admin.acl_setuser("agent", enabled=True, commands=["+@all"])
    assert await store.load_context("s") == {"a": 1}
