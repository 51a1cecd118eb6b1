"""Which transport a store uses: a single server's pool, or a cluster's slot routing.

``from_url(url, cluster=None)`` asks the server once (``INFO cluster``) on the first
call; ``AgentMemoryStore(RedisCluster(...))`` routes by slot from the start, through
pools of its own built from that client's connection settings (the client itself is
left alone, and never closed by the store).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from agentmem._connect import build_pool
from agentmem._translate import is_permission
from agentmem.breaker import CircuitBreaker
from agentmem.cluster import Address, ClusterTransport
from agentmem.config import StoreConfig
from agentmem.replication import Wait
from agentmem.scripts import ScriptRunner

__all__ = ["client_transport", "cluster_transport", "is_cluster_node"]

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


def cluster_transport(
    url: str, config: StoreConfig, runner: ScriptRunner, breaker: CircuitBreaker, wait: Wait | None
) -> ClusterTransport:
    """The transport of ``from_url`` on a cluster: every node's pool built like the URL's."""
    parts = urlsplit(url)
    seed: Address = (parts.hostname or "localhost", parts.port or 6379)

    def pool_for(host: str, port: int) -> ConnectionPool:
        return build_pool(_node_url(url, host, port), config)

    return ClusterTransport([seed], pool_for, runner, breaker, batching=config.auto_pipeline, wait=wait)


def client_transport(
    client: RedisCluster,
    runner: ScriptRunner,
    breaker: CircuitBreaker,
    config: StoreConfig,
    wait: Wait | None,
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

    return ClusterTransport(seeds, pool_for, runner, breaker, batching=config.auto_pipeline, wait=wait)
