"""Sending store operations to one server (or the primary Sentinel names): one at a
time, or auto-pipelined across concurrent tasks.

Every store operation is a short list of :class:`~agentmem.calls.Call` objects (one
script run, or two for ``load_turn``), each atomic on the server. The
:class:`AutoPipeliner` collects the calls that concurrent tasks submit during one
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
import collections
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis

from agentmem.batching import Batcher, BatchStats, Item, cancel, fail, resolve
from agentmem.breaker import CircuitBreaker
from agentmem.calls import Call, raise_first_error
from agentmem.replication import Wait
from agentmem.scripts import ScriptRunner
from agentmem.wire import HeldConnection, NodeLink

__all__ = ["MAX_BATCH", "AutoPipeliner", "Call", "send_direct"]

#: Most calls one pipeline carries; a larger burst goes out as several pipelines at once,
#: on several connections. Small batches let the server run one batch while the client
#: encodes the next and decodes the last: measured with save+load pairs of the 4 KB
#: benchmark context on 2 cores, 16 gave ~1.3-1.5x the throughput of 256 at 64 and 256
#: concurrent tasks (median of 8 interleaved repetitions each).
MAX_BATCH = 16


async def send_direct(
    client: Redis,
    runner: ScriptRunner,
    calls: Sequence[Call],
    breaker: CircuitBreaker,
    wait: Wait | None = None,
) -> list[Any]:
    """Send one operation's calls now (one round trip); raise the first error reply."""
    return await NodeLink(client, runner, breaker, wait).send(calls)


class AutoPipeliner:
    """Batches calls submitted in one event-loop iteration into one round trip."""

    def __init__(
        self,
        client: Redis,
        runner: ScriptRunner,
        breaker: CircuitBreaker,
        *,
        max_batch: int = MAX_BATCH,
        wait: Wait | None = None,
    ) -> None:
        self._link = NodeLink(client, runner, breaker, wait)
        self._batcher = Batcher(self._send_batch, max_batch=max_batch)
        #: Inline sends on the wire now (callers that found the pipeliner idle).
        self._inline = 0
        self._held = HeldConnection(client)
        self.stats = BatchStats()

    @property
    def batches(self) -> int:
        return self.stats.batches

    @property
    def calls(self) -> int:
        return self.stats.calls

    @property
    def recent_sizes(self) -> collections.deque[int]:
        return self.stats.recent_sizes

    @property
    def queued(self) -> int:
        """Operations waiting for the next flush (0 while callers are sent inline)."""
        return self._batcher.queued

    @property
    def on_batch(self) -> Callable[[Sequence[Call]], None] | None:
        return self.stats.on_batch

    @on_batch.setter
    def on_batch(self, hook: Callable[[Sequence[Call]], None] | None) -> None:
        self.stats.on_batch = hook

    async def send(self, calls: Sequence[Call]) -> list[Any]:
        """Queue an operation's calls for the next flush; raise the first error reply.

        A caller that finds nothing queued and nothing on the wire, while callers come
        one at a time, sends its calls at once from its own task instead (no future, no
        extra loop pass).
        """
        batcher = self._batcher
        if batcher.idle and not self._inline and batcher.last_flush_ops <= 1:
            return await self._send_inline(calls)
        return await batcher.send(calls)

    async def _send_inline(self, calls: Sequence[Call]) -> list[Any]:
        self._inline += 1
        try:
            self.stats.record(calls)
            replies = await self._link.send_with_reload(calls, self._held)
        finally:
            self._inline -= 1
        return raise_first_error(replies)

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

    async def drop_held(self) -> None:
        """Give the connection kept for inline sends back (after an outage it is likely dead)."""
        await self._held.drop()

    async def aclose(self) -> None:
        """Send what callers queued before the close, wait for every round trip on the wire
        (batches and inline sends), then give the held connection back: a call accepted
        before ``aclose()`` completes instead of meeting a pool closed under it."""
        await self._batcher.aclose(lambda: self._inline > 0)
        await self._held.drop(close=True)
