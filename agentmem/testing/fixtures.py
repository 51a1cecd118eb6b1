"""The fixtures of the agentmem pytest plugin (loaded by :mod:`agentmem.testing.plugin`).

Every test gets its own key prefix (:func:`make_prefix`); the fixtures that write to
the shared server delete every key under it afterwards (:func:`delete_prefix`).
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

import pytest
from redis.asyncio import Redis

from agentmem.keys import escape_glob
from agentmem.testing.cluster import ClusterGroup, SharedCluster
from agentmem.testing.plugin import (
    PRIVATE_SERVER_FIXTURES,
    SHARED_SERVER_FIXTURES,
    needs_shared_server,
    on_cluster,
    plugin_state,
)
from agentmem.testing.provision import ServerInfo, ServerUnavailableError
from agentmem.testing.proxy import TcpProxy
from agentmem.testing.sentinel import SentinelGroup
from agentmem.testing.server import EmbeddedServer, ServerStartError, parse_version
from agentmem.testing.tls import ClientCerts, TlsServer, start_tls_server

if TYPE_CHECKING:
    from agentmem.store import AgentMemoryStore

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - async fixtures then need another asyncio plugin
    async_fixture = pytest.fixture  # type: ignore[assignment]  # same call shape for our uses

__all__ = [
    "ProxyFactory",
    "ServerFactory",
    "StoreFactory",
    "TlsServerFactory",
    "agentmem_cluster",
    "agentmem_cluster_store",
    "agentmem_prefix",
    "agentmem_private_cluster",
    "agentmem_private_server",
    "agentmem_proxy",
    "agentmem_proxy_factory",
    "agentmem_redis",
    "agentmem_sentinel",
    "agentmem_server",
    "agentmem_server_factory",
    "agentmem_store",
    "agentmem_store_factory",
    "agentmem_tls_server",
    "agentmem_tls_server_factory",
    "delete_prefix",
    "make_prefix",
]

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
_NAME_LENGTH = 40
_SCAN_BATCH = 500


class StoreFactory(Protocol):
    def __call__(self, url: str | None = None, **options: Any) -> AgentMemoryStore: ...


class ProxyFactory(Protocol):
    def __call__(self, url: str | None = None) -> TcpProxy: ...


class TlsServerFactory(Protocol):
    def __call__(self, *, client_certs: ClientCerts = "optional", **config: str | int) -> TlsServer: ...


class ServerFactory(Protocol):
    def __call__(
        self, *, persistence: bool = False, appendfsync: str = "everysec", **config: str | int
    ) -> EmbeddedServer: ...


def make_prefix(worker: str, test_name: str) -> str:
    """A key prefix unique to one test: worker, sanitized test name, random suffix.

    It holds no glob character, ``{`` or ``}``, and stays under ~70 characters.
    """
    name = _UNSAFE_NAME.sub("_", test_name).strip("_")[:_NAME_LENGTH] or "test"
    return f"test:{worker}:{name}:{secrets.token_hex(4)}"


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def agentmem_server(request: pytest.FixtureRequest) -> ServerInfo:
    """The run's shared server: ``.url``, ``.version``, ``.version_info``, ``.flavor``, ``.source``."""
    run = plugin_state(request.config)
    try:
        return run.shared_server().acquire(run.start)
    except ServerUnavailableError as exc:
        run.unavailable(str(exc))
        raise  # unreachable: unavailable() skips or fails
    except ImportError as exc:  # an extra missing; collection normally catches this first
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(autouse=True)
def _agentmem_markers(request: pytest.FixtureRequest) -> None:
    """Apply ``real_redis`` / ``min_server_version`` to tests that carry them."""
    node = request.node
    wanted = node.get_closest_marker("min_server_version")
    if not needs_shared_server(node) and wanted is None:
        return
    fixtures = set(request.fixturenames)
    if fixtures & PRIVATE_SERVER_FIXTURES and not fixtures & SHARED_SERVER_FIXTURES:
        # Private servers only: don't start the shared one; they all run this binary.
        if wanted is None:
            return
        binary = plugin_state(request.config).private_binary()
        flavor, version = binary.flavor, binary.version
    else:
        server: ServerInfo = request.getfixturevalue("agentmem_server")
        flavor, version = server.flavor, server.version
    if wanted is not None:
        if len(wanted.args) != 1 or not isinstance(wanted.args[0], str):
            raise pytest.UsageError('use @pytest.mark.min_server_version("7.0")')
        if parse_version(version) < parse_version(wanted.args[0]):
            pytest.skip(f"needs server >= {wanted.args[0]}; this is {flavor} {version}")


@pytest.fixture
def agentmem_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test (worker id, test name, random suffix)."""
    return make_prefix(plugin_state(request.config).worker, request.node.name)


def _client_name(prefix: str) -> str:
    return "agentmem-" + prefix.replace(":", "-")


async def delete_prefix(url: str, prefix: str) -> int:
    """UNLINK every key starting with ``prefix``; return how many."""
    deleted = 0
    client = Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in client.scan_iter(match=escape_glob(prefix) + "*", count=_SCAN_BATCH):
            batch.append(key)
            if len(batch) >= _SCAN_BATCH:
                deleted += await client.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await client.unlink(*batch)
    finally:
        await client.aclose()
    return deleted


class _Target:
    """Where the test's store fixtures stand: the shared server, or the shared cluster."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self.cluster: list[str] | None = None
        if on_cluster(request.config):
            self.cluster = request.getfixturevalue("agentmem_cluster")
            self.url = self.cluster[0]
        else:
            server: ServerInfo = request.getfixturevalue("agentmem_server")
            self.url = server.url

    def raw_client(self, name: str) -> Redis:
        if self.cluster is not None:
            from redis.asyncio.cluster import RedisCluster

            return cast(Redis, RedisCluster.from_url(self.url, client_name=name))
        return Redis.from_url(self.url, client_name=name)

    async def delete(self, prefix: str) -> None:
        if self.cluster is not None:
            await delete_cluster_prefix(self.cluster, prefix)
        else:
            await delete_prefix(self.url, prefix)


@async_fixture
async def agentmem_redis(request: pytest.FixtureRequest, agentmem_prefix: str) -> AsyncIterator[Redis]:
    """A raw ``redis.asyncio.Redis`` (bytes replies) on the shared server (a
    ``RedisCluster`` with ``--agentmem-topology cluster``); keys under the test's prefix
    are deleted afterwards."""
    target = _Target(request)
    client = target.raw_client(_client_name(agentmem_prefix) + "-raw")
    try:
        yield client
    finally:
        try:
            await client.aclose()
        finally:
            await target.delete(agentmem_prefix)


@async_fixture
async def agentmem_store(
    request: pytest.FixtureRequest, agentmem_prefix: str
) -> AsyncIterator[AgentMemoryStore]:
    """An ``AgentMemoryStore`` on the shared server (the shared cluster with
    ``--agentmem-topology cluster``) with the test's prefix and its own client name;
    closed, and its keys deleted, afterwards."""
    from agentmem.store import AgentMemoryStore

    target = _Target(request)
    store = AgentMemoryStore.from_url(
        target.url, prefix=agentmem_prefix, client_name=_client_name(agentmem_prefix)
    )
    try:
        yield store
    finally:
        try:
            await store.aclose()
        finally:
            await target.delete(agentmem_prefix)


@async_fixture
async def agentmem_store_factory(
    request: pytest.FixtureRequest, agentmem_prefix: str
) -> AsyncIterator[StoreFactory]:
    """``make(url=None, **options)``: stores with the test's prefix and a client name of
    their own (``<name>-1``, ``-2``...); the URL defaults to the shared server (the class
    from ``fallback``, as :func:`agentmem.open_store` picks it). Every store made is
    closed afterwards."""
    from agentmem.factory import open_store

    made: list[AgentMemoryStore] = []
    shared: list[_Target] = []

    def make(url: str | None = None, **options: Any) -> AgentMemoryStore:
        if url is None:
            if not shared:
                shared.append(_Target(request))
            url = shared[0].url
        options.setdefault("prefix", agentmem_prefix)
        options.setdefault("client_name", f"{_client_name(agentmem_prefix)}-{len(made) + 1}")
        store: AgentMemoryStore = open_store(url, **options)
        made.append(store)
        return store

    try:
        yield make
    finally:
        try:
            for store in made:
                await store.aclose()
        finally:
            for target in shared:
                await target.delete(agentmem_prefix)


@pytest.fixture
def agentmem_proxy_factory(request: pytest.FixtureRequest) -> Iterator[ProxyFactory]:
    """``make(url=None) -> TcpProxy``: a started proxy in front of ``url`` (default: the
    shared server); every proxy made is stopped afterwards."""
    proxies: list[TcpProxy] = []

    def make(url: str | None = None) -> TcpProxy:
        if url is None:
            server: ServerInfo = request.getfixturevalue("agentmem_server")
            url = server.url
        proxy = TcpProxy(url)
        proxies.append(proxy)
        return proxy.start()

    try:
        yield make
    finally:
        for proxy in proxies:
            proxy.stop()


@pytest.fixture
def agentmem_proxy(agentmem_server: ServerInfo, agentmem_proxy_factory: ProxyFactory) -> TcpProxy:
    """A started :class:`~agentmem.testing.TcpProxy` in front of the shared server."""
    return agentmem_proxy_factory(agentmem_server.url)


@pytest.fixture
def agentmem_server_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerFactory]:
    """``make(*, persistence=False, appendfsync="everysec", **config) -> EmbeddedServer``:
    a started server of the test's own, for faults that would disturb other workers.
    Stopped afterwards (resumed first if paused), whatever the test did."""
    run = plugin_state(request.config)
    servers: list[EmbeddedServer] = []

    def make(
        *, persistence: bool = False, appendfsync: str = "everysec", **config: str | int
    ) -> EmbeddedServer:
        server = EmbeddedServer(
            run.private_binary(),
            tmp_path_factory.mktemp("agentmem-server"),
            persistence=persistence,
            appendfsync=appendfsync,
            config=config,
        )
        servers.append(server)
        return server.start()

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def agentmem_private_server(agentmem_server_factory: ServerFactory) -> EmbeddedServer:
    """A started private server with the defaults (no persistence)."""
    return agentmem_server_factory()


@pytest.fixture
def agentmem_sentinel(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SentinelGroup]:
    """A Sentinel group of the test's own: a primary (AOF, fsync always), one replica and
    three sentinels monitoring it as ``agentmem``; ``.url`` is its ``redis+sentinel://``
    URL, ``.kill_primary()`` and ``.wait_for_promotion(old)`` drive a failover. Stopped
    afterwards, whatever the test did."""
    run = plugin_state(request.config)
    group = SentinelGroup(run.private_binary(), tmp_path_factory.mktemp("agentmem-sentinel"))
    try:
        yield group.start()
    finally:
        group.stop()


@pytest.fixture
def agentmem_tls_server_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsServerFactory]:
    """``make(*, client_certs="optional", **config) -> TlsServer``: a private server with a
    TLS port, a fresh CA and certificates (``client_certs="required"`` is mutual TLS).
    Fails in CI (skips elsewhere, loudly) when no binary has TLS. Stopped afterwards."""
    run = plugin_state(request.config)
    servers: list[TlsServer] = []

    def make(*, client_certs: ClientCerts = "optional", **config: str | int) -> TlsServer:
        try:
            server = start_tls_server(
                run.tls_candidates(),
                tmp_path_factory.mktemp("agentmem-tls"),
                client_certs=client_certs,
                config=config,
            )
        except ServerStartError as exc:
            run.unavailable(f"TLS: {exc}")
            raise  # unreachable: unavailable() skips or fails
        run.tls_binary = server.binary.path
        servers.append(server)
        return server

    try:
        yield make
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def agentmem_tls_server(agentmem_tls_server_factory: TlsServerFactory) -> TlsServer:
    """A private TLS server: ``.url`` (``rediss://``), ``.ca_path``, ``.client_cert_path``,
    ``.client_key_path``, ``.plain_url`` (its plain port, for admin); client
    certificates optional (checked when sent)."""
    return agentmem_tls_server_factory()


# -- Redis Cluster ---------------------------------------------------------------------------


_SHARED_CLUSTERS: list[SharedCluster] = []


@pytest.fixture(scope="session")
def agentmem_cluster(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The run's shared Redis Cluster (3 primaries, 3 replicas; one for every xdist
    worker): the URLs of its six nodes, any of which seeds a store. Tests must not
    kill its nodes (use ``agentmem_private_cluster``)."""
    run = plugin_state(request.config)
    binary = run.private_binary()
    directory = run.shared_dir()
    if directory is None:  # pragma: no cover - only with pytest's tmpdir plugin off
        raise pytest.UsageError("agentmem needs pytest's tmpdir plugin (-p tmpdir)")
    shared = SharedCluster(directory / "agentmem", run.worker)
    # Kept for the life of the process: when this worker started the cluster but leaves
    # before the others, its Popen objects of the still-running detached nodes must not be
    # collected mid-run (a ResourceWarning, an error under filterwarnings=error).
    _SHARED_CLUSTERS.append(shared)
    try:
        ports = shared.acquire(binary)
    except ServerStartError as exc:
        shared.release()
        run.unavailable(f"cluster: {exc}")
        raise  # unreachable: unavailable() skips or fails
    try:
        yield [f"redis://127.0.0.1:{port}" for port in ports]
    finally:
        shared.release()


async def delete_cluster_prefix(urls: list[str], prefix: str) -> int:
    """UNLINK every key under ``prefix`` on every node that is a primary."""
    deleted = 0
    for url in urls:
        client = Redis.from_url(url)
        try:
            role: Any = await client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        except Exception:  # a node a test stopped: nothing to delete there
            continue
        finally:
            await client.aclose()
        if role[0] in (b"master", "master"):
            deleted += await _delete_prefix_by_key(url, prefix)
    return deleted


async def _delete_prefix_by_key(url: str, prefix: str) -> int:
    """UNLINK keys one by one: on a cluster node one UNLINK of keys in several slots fails."""
    deleted = 0
    client = Redis.from_url(url)
    try:
        async for key in client.scan_iter(match=escape_glob(prefix) + "*", count=_SCAN_BATCH):
            deleted += await client.unlink(key)
    finally:
        await client.aclose()
    return deleted


@contextlib.asynccontextmanager
async def cluster_store(urls: list[str], prefix: str, **options: Any) -> AsyncIterator[AgentMemoryStore]:
    """An ``AgentMemoryStore`` on the cluster of ``urls`` (``from_url`` of the first node,
    the cluster detected) with ``prefix``; closed and the prefix's keys deleted on exit."""
    from agentmem.store import AgentMemoryStore

    store = AgentMemoryStore.from_url(urls[0], prefix=prefix, client_name=_client_name(prefix), **options)
    try:
        yield store
    finally:
        try:
            await store.aclose()
        finally:
            await delete_cluster_prefix(urls, prefix)


@async_fixture
async def agentmem_cluster_store(
    agentmem_cluster: list[str], agentmem_prefix: str
) -> AsyncIterator[AgentMemoryStore]:
    """An ``AgentMemoryStore`` on the shared cluster (``from_url`` of one node, the
    cluster detected), with the test's prefix; closed and its keys deleted afterwards."""
    async with cluster_store(agentmem_cluster, agentmem_prefix) as store:
        yield store


@pytest.fixture
def agentmem_private_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterGroup]:
    """A Redis Cluster of the test's own (3 primaries, 3 replicas, ``cluster-node-timeout``
    1 s): ``.url``, ``.kill_primary(port)``, ``.wait_for_promotion(port)``,
    ``.primary_for(slot)``. Stopped afterwards, whatever the test did."""
    run = plugin_state(request.config)
    group = ClusterGroup(run.private_binary(), tmp_path_factory.mktemp("agentmem-cluster"))
    try:
        yield group.start()
    finally:
        group.stop()
