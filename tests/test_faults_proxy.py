"""TcpProxy faults, seen by a raw redis.asyncio client with retries off."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentmem.testing import EmbeddedServer, TcpProxy
from agentmem.testing.fixtures import ProxyFactory

ClientFactory = Callable[[str], Redis]

#: Client socket timeout, seconds: short, so a stalled call fails fast.
SOCKET_TIMEOUT = 0.3
#: Added one-way latency, seconds: well above a loopback round trip; 2x is below the timeout.
LATENCY = 0.1


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Clients that fail on the first error (no retry) and time out after SOCKET_TIMEOUT."""
    clients: list[Redis] = []

    def make(url: str) -> Redis:
        client = Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_blackhole_times_out_and_restore_recovers(
    agentmem_proxy: TcpProxy, make_client: ClientFactory
) -> None:
    """Under blackhole a call times out; after restore() calls work again."""
    client = make_client(agentmem_proxy.url)
    assert await client.ping()
    agentmem_proxy.blackhole()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.TimeoutError):
        await client.ping()
    assert time.monotonic() - started >= SOCKET_TIMEOUT * 0.9
    agentmem_proxy.restore()
    assert await client.ping()


async def test_blackhole_holds_new_connections(agentmem_proxy: TcpProxy, make_client: ClientFactory) -> None:
    """A connection opened during blackhole is accepted but gets no answer."""
    agentmem_proxy.blackhole()
    with pytest.raises(redis.exceptions.TimeoutError):
        await make_client(agentmem_proxy.url).ping()


async def test_blackhole_delivers_buffered_writes_on_restore(
    agentmem_proxy: TcpProxy,
    make_client: ClientFactory,
    agentmem_redis: Redis,
    agentmem_prefix: str,
) -> None:
    """A write sent during blackhole reaches the server after restore, as TCP would."""
    client = make_client(agentmem_proxy.url)
    assert await client.ping()
    agentmem_proxy.blackhole()
    key = f"{agentmem_prefix}:late"
    with pytest.raises(redis.exceptions.TimeoutError):
        await client.set(key, "arrived")
    assert await agentmem_redis.get(key) is None
    agentmem_proxy.restore()
    for _ in range(100):
        if await agentmem_redis.get(key) == b"arrived":
            break
        await asyncio.sleep(0.01)
    assert await agentmem_redis.get(key) == b"arrived"


async def test_reset_breaks_open_connections(agentmem_proxy: TcpProxy, make_client: ClientFactory) -> None:
    """reset() kills open connections (the next call on one fails); new ones work."""
    client = make_client(agentmem_proxy.url)
    assert await client.ping()
    assert agentmem_proxy.connections == 1
    agentmem_proxy.reset()
    assert agentmem_proxy.connections == 0
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.ping()
    assert await client.ping()  # the client reconnects through the proxy


async def test_refuse_fails_connects_until_restore(
    agentmem_proxy: TcpProxy, make_client: ClientFactory
) -> None:
    """refuse() makes connects fail at once; restore() listens again on the same port."""
    port = agentmem_proxy.port
    agentmem_proxy.refuse()
    started = time.monotonic()
    with pytest.raises(redis.exceptions.ConnectionError):
        await make_client(agentmem_proxy.url).ping()
    assert time.monotonic() - started < SOCKET_TIMEOUT  # refused, not timed out
    agentmem_proxy.restore()
    assert agentmem_proxy.port == port
    assert await make_client(agentmem_proxy.url).ping()


async def test_latency_adds_delay_until_restore(agentmem_proxy: TcpProxy, make_client: ClientFactory) -> None:
    """latency(s) delays each direction by s (a round trip by 2s); restore() removes it."""
    client = make_client(agentmem_proxy.url)
    assert await client.ping()
    agentmem_proxy.latency(LATENCY)
    started = time.monotonic()
    assert await client.ping()
    assert 2 * LATENCY <= time.monotonic() - started < 4 * LATENCY
    agentmem_proxy.restore()
    started = time.monotonic()
    assert await client.ping()
    assert time.monotonic() - started < LATENCY


def test_proxy_works_from_sync_code(agentmem_proxy: TcpProxy) -> None:
    """The proxy runs its own loop: a sync client and sync control calls work too."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(agentmem_proxy.url, socket_timeout=SOCKET_TIMEOUT)
    try:
        assert client.ping()
        agentmem_proxy.latency(LATENCY)
        agentmem_proxy.restore()
        assert client.ping()
    finally:
        client.close()


async def test_proxy_factory_fronts_any_url(
    agentmem_proxy_factory: ProxyFactory,
    agentmem_private_server: EmbeddedServer,
    make_client: ClientFactory,
) -> None:
    """The proxy factory puts a proxy in front of any URL, e.g. a private server."""
    url = agentmem_private_server.url
    proxy = agentmem_proxy_factory(url)
    client = make_client(proxy.url)
    await client.set("k", "v")
    assert await make_client(url).get("k") == b"v"


def test_proxy_url_keeps_credentials_and_db() -> None:
    """The proxy URL keeps the target's user, password and db, swapping host and port."""
    with TcpProxy("redis://user:secret@127.0.0.1:1/3") as proxy:
        assert proxy.url == f"redis://user:secret@127.0.0.1:{proxy.port}/3"
