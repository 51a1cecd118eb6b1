"""Redis Sentinel: a pool that asks the sentinels where the primary is, and follows a failover.

redis-py's ``SentinelConnectionPool`` does the routing (every new connection asks the
sentinels for the primary's address; a connection to a demoted primary that answers
``READONLY`` is dropped). Its pool raises at once when every connection is in use; the
store's pools *wait* up to ``pool_timeout`` instead, so the pool here is both.

A ``redis+sentinel://`` (or ``rediss+sentinel://``) URL names the sentinels and the
service: ``redis+sentinel://[user:password@]host1:26379,host2:26379/<service>[/<db>]``.
The credentials (and the TLS options, with ``rediss+sentinel://``) are the data nodes';
sentinels that need their own go in ``AgentMemoryStore.from_sentinel(...,
sentinel_kwargs={...})``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from agentmem.errors import InvalidArgumentError

__all__ = [
    "SENTINEL_SCHEMES",
    "BlockingSentinelPool",
    "SentinelTarget",
    "parse_sentinel_url",
    "sentinel_pool",
    "sentinel_url",
]

SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel-routed pool whose callers wait for a free connection (``timeout``)."""

    sentinel_manager: Sentinel

    async def disconnect(self, inuse_connections: bool = True) -> None:
        """Closing the pool (``inuse_connections``) closes the connections to the sentinels too."""
        await super().disconnect(inuse_connections)
        if inuse_connections:
            for sentinel in self.sentinel_manager.sentinels:
                await sentinel.connection_pool.disconnect()


class SentinelTarget:
    """What a ``redis+sentinel://`` URL says: the sentinels, the service, the data nodes'
    database and whether they speak TLS."""

    def __init__(
        self, sentinels: list[tuple[str, int]], service_name: str, *, db: int = 0, ssl: bool = False
    ):
        self.sentinels = sentinels
        self.service_name = service_name
        self.db = db
        self.ssl = ssl


def sentinel_url(sentinels: Sequence[tuple[str, int]], service_name: str, *, tls: bool = False) -> str:
    """The ``redis+sentinel://`` (``rediss+sentinel://`` with ``tls``) URL naming them."""
    hosts = ",".join(f"{host}:{port}" for host, port in sentinels)
    return f"{SENTINEL_SCHEMES[tls]}://{hosts}/{quote(service_name, safe='')}"


def parse_sentinel_url(url: str) -> SentinelTarget:
    """Read a ``redis+sentinel://`` URL; raise :class:`InvalidArgumentError` naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in SENTINEL_SCHEMES:
        raise InvalidArgumentError(f"not a Sentinel URL (redis+sentinel://...): {url!r}")
    if parts.query:
        raise InvalidArgumentError(
            f"a redis+sentinel:// URL takes no query parameters but store options ({parts.query!r}); "
            "pass the others as keywords"
        )
    hosts = parts.netloc.rsplit("@", 1)[-1]
    sentinels: list[tuple[str, int]] = []
    for item in filter(None, hosts.split(",")):
        host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        try:
            sentinels.append((host or item, int(port) if port else DEFAULT_SENTINEL_PORT))
        except ValueError:
            raise InvalidArgumentError(f"bad sentinel address {item!r} in {url!r}") from None
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not sentinels or not path or len(path) > 2:
        raise InvalidArgumentError(
            f"a Sentinel URL is redis+sentinel://host:port[,host:port...]/<service>[/<db>], got {url!r}"
        )
    try:
        db = int(path[1]) if len(path) == 2 else 0
    except ValueError:
        raise InvalidArgumentError(f"bad database number {path[1]!r} in {url!r}") from None
    return SentinelTarget(sentinels, path[0], db=db, ssl=parts.scheme == "rediss+sentinel")


def sentinel_pool(
    sentinels: Sequence[tuple[str, int]],
    service_name: str,
    *,
    max_connections: int,
    pool_timeout: float,
    socket_timeout: float,
    socket_connect_timeout: float,
    sentinel_kwargs: Mapping[str, Any] | None = None,
    **connection_kwargs: Any,
) -> BlockingSentinelPool:
    """A waiting, Sentinel-routed pool for the primary of ``service_name``.

    Neither the sentinel connections nor the data connections retry inside redis-py: the
    store is the one retry layer (with its deadline and breaker).
    """
    timeouts = {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_connect_timeout}
    manager = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # untyped before redis-py 8
        list(sentinels),
        sentinel_kwargs={**timeouts, "retry": Retry(NoBackoff(), 0), **(sentinel_kwargs or {})},
    )
    return BlockingSentinelPool(  # type: ignore[no-untyped-call]
        service_name,
        manager,
        max_connections=max_connections,
        timeout=pool_timeout,
        retry=Retry(NoBackoff(), 0),
        **timeouts,
        **connection_kwargs,
    )
