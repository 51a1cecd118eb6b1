"""Sending store operations to one server (or the primary Sentinel names): one at a
time, or auto-pipelined across concurrent tasks.

Every store operation is a short list of :class:`~agentmem.calls.Call` objects (one
script run, or two for ``load_turn``), each atomic on the server. The
:class:`NodeTransport` collects the calls that concurrent tasks submit during one
event-loop iteration and sends them as one pipeline round trip, the way ioredis's
auto-pipelining does (the rules are in :mod:`agentmem.batching`); each pipeline goes out
through :class:`~agentmem.wire.NodeLink`, which reloads scripts after ``NOSCRIPT`` (a
restart, a failover, SCRIPT FLUSH) and sends again only the calls that hit it.

While callers come one at a time, a call goes out inline from its caller's task, on a
connection kept checked out between calls (:class:`~agentmem.wire.HeldConnection`).
A Redis Cluster is routed by :mod:`agentmem.cluster`, with the same batching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, Literal

from redis.asyncio import Redis

from agentmem.batching import BatchCounters, Batcher, BatchStats, Item, cancel, fail, resolve
from agentmem.breaker import CircuitBreaker
from agentmem.calls import Call, PoolStats, pool_stats, raise_first_error
from agentmem.probe import ping_fresh_connection
from agentmem.replication import Wait
from agentmem.scripts import ScriptRunner
from agentmem.wire import HeldConnection, NodeLink

__all__ = ["MAX_BATCH", "NodeTransport", "describe_pool", "pool_name"]

#: Most calls one pipeline carries; a larger burst goes out as several pipelines at once,
#: on several connections. Small batches let the server run one batch while the client
#: encodes the next and decodes the last: measured with save+load pairs of the 4 KB
#: benchmark context on 2 cores, 16 gave ~1.3-1.5x the throughput of 256 at 64 and 256
#: concurrent tasks (median of 8 interleaved repetitions each).
MAX_BATCH = 16


def describe_pool(client: Redis) -> dict[str, Any]:
    """``server.address``, ``server.port`` and ``db.namespace`` of a client's pool, as far as
    it knows them (a Sentinel pool learns its primary per connection: no address)."""
    kwargs = client.connection_pool.connection_kwargs
    attributes: dict[str, Any] = {}
    if kwargs.get("path"):
        attributes["server.address"] = str(kwargs["path"])
    elif kwargs.get("host"):
        attributes["server.address"] = str(kwargs["host"])
        if kwargs.get("port") is not None:
            attributes["server.port"] = int(kwargs["port"])
    attributes["db.namespace"] = str(kwargs.get("db") or 0)
    return attributes


def pool_name(attributes: dict[str, Any]) -> str:
    """``host:port/db`` (``address/db`` without a port) of :func:`describe_pool`'s attributes."""
    address = attributes.get("server.address", "unknown")
    port = attributes.get("server.port")
    name = f"{address}:{port}" if port is not None else str(address)
    return f"{name}/{attributes['db.namespace']}"


class NodeTransport(BatchCounters):
    """One server's :class:`~agentmem.calls.Transport`: with ``batching`` (the store's
    ``auto_pipeline``) it batches the calls of one event-loop iteration into one round
    trip; without, each operation is one round trip of its own. ``owns_client``: the
    client's pool is closed with the transport."""

    def __init__(
        self,
        client: Redis,
        runner: ScriptRunner,
        breaker: CircuitBreaker,
        *,
        batching: bool = True,
        max_batch: int = MAX_BATCH,
        wait: Wait | None = None,
        stats: BatchStats | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self._owns_client = owns_client
        self._link = NodeLink(client, runner, breaker, wait)
        self._batching = batching
        self._batcher = Batcher(self._send_batch, max_batch=max_batch)
        #: Inline sends on the wire now (callers that found the pipeliner idle, and every
        #: send without batching): aclose() waits for them.
        self._inline = 0
        self._held = HeldConnection(client)
        self.stats = stats if stats is not None else BatchStats()

    @property
    def queued(self) -> int:
        """Operations waiting for the next flush (0 while callers are sent inline)."""
        return self._batcher.queued

    def send(self, calls: Sequence[Call]) -> Awaitable[list[Any]]:
        """Queue an operation's calls for the next flush; raise the first error reply.

        A caller that finds nothing queued and nothing on the wire, while callers come
        one at a time, sends its calls at once from its own task instead (no future, no
        extra loop pass). Not a coroutine of its own: the caller awaits the path taken.
        """
        batcher = self._batcher
        if not self._batching:
            self.stats.record(calls)
            return self._send_unbatched(calls)
        if not batcher.pending and not batcher.running and not self._inline and batcher.last_flush_ops <= 1:
            return self._send_inline(calls)
        return batcher.send(calls)

    async def send_to(self, node: Any, calls: Sequence[Call]) -> list[Any]:
        """:meth:`send` (a single server is its only node)."""
        return await self.send(calls)

    async def primaries(self) -> Sequence[Any]:
        return (None,)

    async def topology(self) -> Literal["single", "cluster"] | None:
        return "single"

    async def admin_client(self) -> Redis:
        return self.client

    async def probe(self) -> None:
        """The breaker's probe: the server answers on a fresh connection."""
        await ping_fresh_connection(self.client)

    async def drop_idle(self) -> None:
        """After an outage: idle pooled connections (and the held one) predate it."""
        await self._held.drop()
        await self.client.connection_pool.disconnect(inuse_connections=False)

    def describe(self) -> dict[str, Any]:
        return describe_pool(self.client)

    def pool_stats(self) -> dict[str, PoolStats]:
        return {pool_name(self.describe()): pool_stats(self.client.connection_pool, self._held.idle)}

    async def _send_inline(self, calls: Sequence[Call]) -> list[Any]:
        self._inline += 1
        try:
            self.stats.record(calls)
            replies = await self._link.send_with_reload(calls, self._held)
        finally:
            self._inline -= 1
        return raise_first_error(replies)

    async def _send_unbatched(self, calls: Sequence[Call]) -> list[Any]:
        """One operation's own round trip (``auto_pipeline=False``), counted so that
        ``aclose()`` waits for it instead of closing the pool under it."""
        self._inline += 1
        try:
            return await self._link.send(calls)
        finally:
            self._inline -= 1

    async def _send_batch(self, batch: list[Item]) -> None:
        try:
            calls = [c for c, _ in batch]
            self.stats.record(calls)
            replies = await self._link.send_with_reload(calls)
        except asyncio.CancelledError:
            cancel(batch)
            raise
        except Exception as exc:  # connection-level: every call of the batch failed
            fail(batch, exc)
            return
        resolve(batch, replies)

    @property
    def idle_held(self) -> int:
        """Connections checked out of the pool and kept idle for the next inline send (0 or 1)."""
        return self._held.idle

    async def aclose(self) -> None:
        """Send what callers queued before the close, wait for every round trip on the wire
        (batches and inline sends), then give the held connection back: a call accepted
        before ``aclose()`` completes instead of meeting a pool closed under it. The
        client's pool is closed when the transport owns it."""
        try:
            await self._batcher.aclose(lambda: self._inline > 0)
            await self._held.drop(close=True)
        finally:
            if self._owns_client:
                await self.client.aclose(close_connection_pool=True)
