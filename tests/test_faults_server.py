"""Server-side faults: restart, pause, SIGKILL, killed connections, memory pressure."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable

import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentmem.testing import EmbeddedServer, ServerInfo, kill_connections, memory_pressure
from agentmem.testing.fixtures import ServerFactory
from agentmem.testing.server import ServerStartError, stop_process

ClientFactory = Callable[..., Redis]

#: Client socket timeout, seconds: short, so a call to a frozen server fails fast.
SOCKET_TIMEOUT = 0.3


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    """Clients that fail on the first error (no retry) and time out after SOCKET_TIMEOUT."""
    clients: list[Redis] = []

    def make(url: str, client_name: str | None = None) -> Redis:
        client = Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
            client_name=client_name,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_restart_drops_connections_then_answers(
    agentmem_private_server: EmbeddedServer, make_client: ClientFactory
) -> None:
    """restart() closes open connections, keeps the port, and answers again; no persistence
    means the data is gone."""
    server = agentmem_private_server
    client = make_client(server.url)
    await client.set("k", "v")
    old_pid, old_port = server.pid, server.port
    server.restart()
    assert (server.port, server.pid != old_pid) == (old_port, True)
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.get("k")
    assert await client.get("k") is None


async def test_restart_with_persistence_keeps_data(
    agentmem_server_factory: ServerFactory, make_client: ClientFactory
) -> None:
    """With persistence on (AOF), a restart keeps what was written."""
    server = agentmem_server_factory(persistence=True, appendfsync="always")
    client = make_client(server.url)
    await client.set("k", "kept")
    server.restart()
    assert await make_client(server.url).get("k") == b"kept"


async def test_kill_then_start_reuses_port(
    agentmem_private_server: EmbeddedServer, make_client: ClientFactory
) -> None:
    """kill() (SIGKILL) makes calls fail; start() brings the server back on its port."""
    server = agentmem_private_server
    client = make_client(server.url)
    assert await client.ping()
    server.kill()
    assert not server.running
    with pytest.raises(redis.exceptions.ConnectionError):
        await client.ping()
    server.start()
    assert await client.ping()


async def test_pause_times_out_and_resume_recovers(
    agentmem_private_server: EmbeddedServer, make_client: ClientFactory
) -> None:
    """pause() (SIGSTOP) makes calls time out; after resume() they succeed."""
    server = agentmem_private_server
    client = make_client(server.url)
    assert await client.ping()
    server.pause()
    with pytest.raises(redis.exceptions.TimeoutError):
        await client.ping()
    server.resume()
    assert await client.ping()


def test_paused_server_is_stopped_at_teardown(agentmem_server_factory: ServerFactory) -> None:
    """A paused server is stopped even so (stop() continues it first)."""
    server = agentmem_server_factory()
    pid = server.pid
    server.pause()
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_server_config_is_passed_through(agentmem_server_factory: ServerFactory) -> None:
    """Extra keyword config reaches the server's command line (underscores become dashes)."""
    server = agentmem_server_factory(maxmemory_policy="allkeys-lru", databases=4)
    args = server.command()
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert args[args.index("--databases") + 1] == "4"


def test_bad_config_fails_with_server_log(agentmem_server_factory: ServerFactory) -> None:
    """A server that exits at start raises ServerStartError quoting its log."""
    with pytest.raises(ServerStartError, match=r"exited \d+: .*no-such-directive"):
        agentmem_server_factory(no_such_directive="1")


def test_stop_process_ignores_gone_pids() -> None:
    """stop_process on a pid that is not running returns quietly."""
    stop_process(2**22 + 12345, timeout=0.1)


async def test_kill_connections_kills_only_that_name(
    agentmem_server: ServerInfo,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    make_client: ClientFactory,
) -> None:
    """kill_connections kills every connection with that client name and no other."""
    url = agentmem_server.url
    victim_name, bystander_name = f"{agentmem_prefix}-victim", f"{agentmem_prefix}-bystander"
    victims = [make_client(url, client_name=victim_name) for _ in range(2)]
    bystander = make_client(url, client_name=bystander_name)
    for client in (*victims, bystander):
        assert await client.ping()
    victim_id = await victims[0].client_id()
    assert await kill_connections(agentmem_redis, victim_name) == 2
    names = [client["name"] for client in await agentmem_redis.client_list()]
    assert victim_name not in names
    assert bystander_name in names
    # The victim's connection is gone: the next call either fails or (redis-py versions that
    # reconnect transparently) runs on a new connection with a new client id.
    reconnected = 0
    with contextlib.suppress(redis.exceptions.ConnectionError):
        assert await victims[0].client_id() != victim_id
        reconnected = 1
    assert await bystander.ping()
    assert await kill_connections(agentmem_redis, victim_name) == reconnected


async def test_memory_pressure_refuses_writes_then_restores(
    agentmem_private_server: EmbeddedServer, make_client: ClientFactory
) -> None:
    """Under memory_pressure(1 byte, noeviction) writes fail with OOM; maxmemory and the
    policy come back afterwards."""
    admin = make_client(agentmem_private_server.url)
    before = await admin.config_get("maxmemory*")
    async with memory_pressure(admin, 1, "noeviction"):
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            await admin.set("k", "v")
        assert await admin.ping()  # reads and non-writes still work
    assert await admin.config_get("maxmemory*") == before
    assert await admin.set("k", "v")


async def test_memory_pressure_restores_when_the_block_fails(
    agentmem_private_server: EmbeddedServer, make_client: ClientFactory
) -> None:
    """memory_pressure restores the settings even when the test fails inside the block."""
    admin = make_client(agentmem_private_server.url)
    before = await admin.config_get("maxmemory*")
    with pytest.raises(RuntimeError, match="test failed"):
        async with memory_pressure(admin, "1mb", "allkeys-lru"):
            raise RuntimeError("test failed")
    assert await admin.config_get("maxmemory*") == before
