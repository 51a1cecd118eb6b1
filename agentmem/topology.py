"""Which transport a store uses: a single server's pool, or a cluster's slot routing.

``from_url(url, cluster=None)`` gets a :class:`DetectingTransport`, which asks the
server once (``INFO cluster``) on the first call and then hands every call to the
transport that fits; ``AgentMemoryStore(RedisCluster(...))`` routes by slot from the
start, through pools of its own built from that client's connection settings (the
client itself is left alone, and never closed by the store). The builders here are the
only place that picks a transport: the store and its engine never ask which one they hold.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from agentmem._connect import build_pool
from agentmem._translate import is_permission, is_transient
from agentmem.batching import BatchStats
from agentmem.breaker import CircuitBreaker
from agentmem.calls import Call, PoolStats, Transport
from agentmem.cluster import Address, ClusterTransport
from agentmem.config import StoreConfig
from agentmem.pipeline import NodeTransport
from agentmem.replication import Wait
from agentmem.scripts import ScriptRunner

__all__ = [
    "Connect",
    "DetectingTransport",
    "client_transport",
    "cluster_enabled",
    "cluster_transport",
    "connect_client",
    "connect_url",
    "is_cluster_node",
]

#: How an engine gets its transport: given the engine's scripts, breaker and batch counters.
Connect = Callable[[ScriptRunner, CircuitBreaker, BatchStats], Transport]

#: Settings of a RedisCluster's connections that a plain node connection takes as well
#: (the rest, such as its response callbacks and its own connect hook, belong to it).
_NODE_SETTINGS = (
    "username",
    "password",
    "credential_provider",
    "socket_timeout",
    "socket_connect_timeout",
    "socket_keepalive",
    "client_name",
    "health_check_interval",
    "protocol",
    "lib_name",
    "lib_version",
    "encoding",
    "encoding_errors",
    "ssl_keyfile",
    "ssl_certfile",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_ca_data",
    "ssl_check_hostname",
    "ssl_min_version",
    "ssl_ciphers",
)


def cluster_enabled(info: Any) -> bool:
    """Whether an ``INFO cluster`` reply says ``cluster_enabled:1``."""
    return bool(isinstance(info, dict) and int(info.get("cluster_enabled", 0) or 0))


async def is_cluster_node(client: Redis) -> bool:
    """Whether the server says ``cluster_enabled:1``; ``False`` when INFO is not allowed."""
    try:
        info: Any = await client.execute_command("INFO", "cluster")  # type: ignore[no-untyped-call]
    except ResponseError as exc:
        if is_permission(exc):
            return False
        raise
    return cluster_enabled(info)


def _node_url(url: str, host: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, "", "", ""))


def _wait(config: StoreConfig) -> Wait | None:
    """``wait_replicas``' WAIT, or None."""
    if not config.wait_replicas:
        return None
    return Wait(config.wait_replicas, max(1, int(config.wait_timeout * 1000)))


def cluster_transport(
    url: str,
    config: StoreConfig,
    runner: ScriptRunner,
    breaker: CircuitBreaker,
    wait: Wait | None,
    stats: BatchStats | None = None,
) -> ClusterTransport:
    """The transport of ``from_url`` on a cluster: every node's pool built like the URL's."""
    parts = urlsplit(url)
    seed: Address = (parts.hostname or "localhost", parts.port or 6379)

    def pool_for(host: str, port: int) -> ConnectionPool:
        return build_pool(_node_url(url, host, port), config)

    return ClusterTransport(
        [seed], pool_for, runner, breaker, batching=config.auto_pipeline, wait=wait, stats=stats
    )


def client_transport(
    client: RedisCluster,
    runner: ScriptRunner,
    breaker: CircuitBreaker,
    config: StoreConfig,
    wait: Wait | None,
    stats: BatchStats | None = None,
) -> ClusterTransport:
    """The transport of ``AgentMemoryStore(RedisCluster(...))``: its nodes as seeds, its
    connection settings for pools of the store's own (``max_connections`` per node)."""
    kwargs = client.get_connection_kwargs()
    settings: dict[str, Any] = {name: kwargs[name] for name in _NODE_SETTINGS if kwargs.get(name) is not None}
    connection_class = kwargs.get("connection_class") or Connection
    startup = getattr(client.nodes_manager, "startup_nodes", {}) or {}
    nodes = [*client.get_nodes(), *startup.values()]
    seeds: list[Address] = [(str(node.host), int(node.port)) for node in nodes]

    def pool_for(host: str, port: int) -> ConnectionPool:
        return BlockingConnectionPool(
            connection_class=connection_class,
            host=host,
            port=port,
            max_connections=config.max_connections,
            timeout=config.pool_timeout,
            retry=Retry(NoBackoff(), 0),
            **settings,
        )

    return ClusterTransport(
        seeds, pool_for, runner, breaker, batching=config.auto_pipeline, wait=wait, stats=stats
    )


class DetectingTransport:
    """``from_url(cluster=None)``: a single server's transport until the first call has
    asked the server once whether it is a cluster node; then the cluster's, if it is.

    Unanswered (the server is down), the call goes on as on a single server, where it
    fails and is retried (and counted by the breaker) as any call; the next attempt asks
    again. The asking is not a retried call of its own, so ``retry_stats`` count the
    caller's calls only. Attributes it lacks are read from the transport in use (its
    counters: ``batches``, ``slots``...).
    """

    def __init__(
        self, node: NodeTransport, cluster: Callable[[], ClusterTransport], *, known: bool = False
    ) -> None:
        self._node = node
        self._make_cluster = cluster
        self.current: Transport = node
        #: Whether the server said (or the caller told) which it is.
        self.known = False
        self._detecting: asyncio.Future[None] | None = None
        #: ``send(calls)``: asks the server first while it has not said which it is.
        self.send: Callable[[Sequence[Call]], Awaitable[list[Any]]] = self._send_after_asking
        if known:
            self._use_cluster()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.current, name)

    def _use_cluster(self) -> None:
        self.current = self._make_cluster()
        self._set_known()

    def _set_known(self) -> None:
        self.known = True
        # From now on a call goes straight to the transport in use: no call of this one's.
        self.send = self.current.send

    async def _resolve(self) -> None:
        # One INFO for a first burst of concurrent calls, and every caller of the burst
        # released in the same loop iteration (a lock would let them out one by one, each
        # in a round trip of its own, instead of in one pipeline).
        detecting = self._detecting
        if detecting is None:
            detecting = self._detecting = asyncio.ensure_future(self._detect())
            detecting.add_done_callback(self._detection_done)
        await asyncio.shield(detecting)

    def _detection_done(self, detecting: asyncio.Future[None]) -> None:
        if self._detecting is detecting:
            self._detecting = None
        if not detecting.cancelled():
            detecting.exception()  # raised to its waiters; retrieved here for the one-off task

    async def _detect(self) -> None:
        if self.known:
            return
        try:
            cluster = await is_cluster_node(self._node.client)
        except Exception as exc:
            if is_transient(exc):
                return
            cluster = False
        if cluster:
            self._use_cluster()
        else:
            self._set_known()

    async def _send_after_asking(self, calls: Sequence[Call]) -> list[Any]:
        await self._resolve()
        return await self.current.send(calls)

    async def send_to(self, node: Any, calls: Sequence[Call]) -> list[Any]:
        await self._resolve()
        return await self.current.send_to(node, calls)

    async def primaries(self) -> Sequence[Any]:
        await self._resolve()
        return await self.current.primaries()

    async def topology(self) -> Literal["single", "cluster"] | None:
        if not self.known:
            await self._resolve()
        return await self.current.topology() if self.known else None

    async def admin_client(self) -> Redis:
        if not self.known:
            await self._resolve()
        return await self.current.admin_client()

    async def probe(self) -> None:
        await self.current.probe()

    async def drop_idle(self) -> None:
        await self.current.drop_idle()

    def describe(self) -> dict[str, Any]:
        return self.current.describe()

    def pool_stats(self) -> dict[str, PoolStats]:
        return self.current.pool_stats()

    async def aclose(self) -> None:
        """A detection still asking finishes first (its callers fail closed), then the
        transport in use closes, and the seed node's own pool with it."""
        try:
            if self._detecting is not None:
                await asyncio.gather(self._detecting, return_exceptions=True)
            if self.current is not self._node:
                await self.current.aclose()
        finally:
            await self._node.aclose()


def connect_client(client: Redis | RedisCluster, config: StoreConfig) -> Connect:
    """The transport of ``AgentMemoryStore(client)``: the caller's client is never closed."""
    wait = _wait(config)
    if isinstance(client, RedisCluster):
        cluster_client = client
        return lambda runner, breaker, stats: client_transport(
            cluster_client, runner, breaker, config, wait, stats
        )
    return lambda runner, breaker, stats: NodeTransport(
        client, runner, breaker, batching=config.auto_pipeline, wait=wait, stats=stats
    )


def connect_url(url: str, client: Redis, config: StoreConfig, *, cluster: bool | None) -> Connect:
    """The transport of ``from_url``: on ``client`` (the store's own pool, closed with the
    transport) for a single server or Sentinel; ``cluster=None`` asks the server on the
    first call, ``True`` routes by slot from the start."""
    wait = _wait(config)

    def connect(runner: ScriptRunner, breaker: CircuitBreaker, stats: BatchStats) -> Transport:
        node = NodeTransport(
            client, runner, breaker, batching=config.auto_pipeline, wait=wait, stats=stats, owns_client=True
        )
        if cluster is False:
            return node
        return DetectingTransport(
            node, lambda: cluster_transport(url, config, runner, breaker, wait, stats), known=bool(cluster)
        )

    return connect
