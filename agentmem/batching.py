"""Auto-pipelining: the calls concurrent tasks submit in one event-loop iteration, sent
together (ioredis's auto-pipelining), written once for both transports.

* batching never merges operations: each call stays its own command, so each stays
  atomic, and an error reply fails only the call it belongs to;
* a caller cancelled before the flush is dropped from the batch; one cancelled after
  it simply never reads its reply, which disturbs no other caller;
* a connection error fails every call of that batch, and each caller's own retry
  policy decides whether to try again (in a later batch);
* ``aclose`` sends what callers queued before it and waits for every batch on the wire.

How a batch goes out (one pipeline on one server; one per node on a cluster) is the
transport's ``dispatch``.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentmem.calls import Call, raise_first_error

__all__ = ["BatchCounters", "BatchStats", "Batcher", "Item", "cancel", "drain", "fail", "resolve"]

#: A call and the future its caller awaits the reply on.
Item = tuple[Call, "asyncio.Future[Any]"]


@dataclass(slots=True)
class BatchStats:
    """Pipelines sent, calls carried, and the sizes of the latest pipelines."""

    batches: int = 0
    calls: int = 0
    recent_sizes: collections.deque[int] = field(default_factory=lambda: collections.deque(maxlen=64))
    #: Called with each pipeline's calls before it is sent (telemetry's batch sizes).
    on_batch: Callable[[Sequence[Call]], None] | None = None

    def record(self, calls: Sequence[Call]) -> None:
        """Count one pipeline about to be sent."""
        self.batches += 1
        self.calls += len(calls)
        self.recent_sizes.append(len(calls))
        if self.on_batch is not None:
            self.on_batch(calls)


class BatchCounters:
    """A transport's ``batches``, ``calls`` and ``recent_sizes``, read from its ``stats``."""

    stats: BatchStats

    @property
    def batches(self) -> int:
        return self.stats.batches

    @property
    def calls(self) -> int:
        return self.stats.calls

    @property
    def recent_sizes(self) -> collections.deque[int]:
        return self.stats.recent_sizes


def fail(items: Iterable[Item], exc: BaseException) -> None:
    for _, future in items:
        if not future.done():
            future.set_exception(exc)


def cancel(items: Iterable[Item]) -> None:
    for _, future in items:
        future.cancel()


def resolve(items: Iterable[Item], replies: Iterable[Any]) -> None:
    for (_, future), reply in zip(items, replies, strict=True):
        if not future.done():
            future.set_result(reply)


async def drain(tasks: set[asyncio.Task[None]], busy: Callable[[], bool] = lambda: False) -> None:
    """Wait until none of ``tasks`` (a set that may grow meanwhile) is running and ``busy()``
    is false. Only running tasks are awaited: a finished task stays in the set until its
    done-callback runs, and awaiting a gather of finished tasks never yields to the loop."""
    while True:
        running = [task for task in tasks if not task.done()]
        if running:
            await asyncio.gather(*running, return_exceptions=True)
        elif busy():  # an inline send runs in its caller's task: let it come back
            await asyncio.sleep(0.001)
        else:
            return


class Batcher:
    """Queues operations until the end of the loop iteration, then hands them to
    ``dispatch`` (a task per batch).

    ``max_batch``: operations are packed into batches of at most that many calls (an
    operation's calls always travel together); ``None``: one batch per flush, which
    ``dispatch`` splits itself (by node). ``batching=False`` dispatches each operation at once.
    """

    def __init__(
        self,
        dispatch: Callable[[list[Item]], Awaitable[None]],
        *,
        max_batch: int | None,
        batching: bool = True,
    ) -> None:
        self._dispatch = dispatch
        self._max_batch = max_batch
        self._batching = batching
        #: Operations queued for the next flush, one entry each: its calls always travel
        #: in the same batch (read, never changed, outside this class).
        self.pending: list[list[Item]] = []
        self._flush_scheduled = False
        self.inflight: set[asyncio.Task[None]] = set()
        #: Batches whose dispatch has not returned. Unlike ``inflight`` (a finished task
        #: leaves it only when its done-callback runs, a loop pass after its callers were
        #: woken), this drops inside the task itself: a caller woken by its reply sees the
        #: wire free, so callers that come one at a time go back to the inline path.
        self.running: set[asyncio.Task[None]] = set()
        #: Operations the last flush carried (1: callers come one at a time).
        self.last_flush_ops = 0

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing on the wire."""
        return not self.pending and not self.inflight

    @property
    def queued(self) -> int:
        """Operations waiting for the next flush."""
        return len(self.pending)

    async def send(self, calls: Sequence[Call]) -> list[Any]:
        """Queue an operation's calls; their replies, or the first error reply raised."""
        loop = asyncio.get_running_loop()
        if len(calls) == 1:  # most operations: one script run
            future: asyncio.Future[Any] = loop.create_future()
            futures = [future]
            operation: list[Item] = [(calls[0], future)]
        else:
            futures = [loop.create_future() for _ in calls]
            operation = list(zip(calls, futures, strict=True))
        if self._batching:
            self.pending.append(operation)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                loop.call_soon(self.flush)
        else:
            self._start(operation)
        try:
            replies = [await future for future in futures]
        except BaseException:
            for future in futures:
                if future.done() and not future.cancelled():
                    future.exception()  # mark retrieved: the caller already raised one
                future.cancel()  # not sent yet: dropped at flush; sent: reply ignored
            raise
        return raise_first_error(replies)

    def flush(self) -> None:
        self._flush_scheduled = False
        # An operation whose caller was cancelled before the flush has cancelled futures: drop it.
        operations = [op for op in self.pending if not op[0][1].done()]
        self.pending = []
        self.last_flush_ops = len(operations)
        if self._max_batch is None:
            if operations:
                self._start([item for op in operations for item in op])
            return
        batch: list[Item] = []
        for operation in operations:
            if batch and len(batch) + len(operation) > self._max_batch:
                self._start(batch)
                batch = []
            batch.extend(operation)
        if batch:
            self._start(batch)

    def _start(self, batch: list[Item]) -> None:
        task = asyncio.ensure_future(self._run(batch))
        self.inflight.add(task)
        self.running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self.inflight.discard(task)
        self.running.discard(task)  # a task cancelled before it ran never left it itself

    async def _run(self, batch: list[Item]) -> None:
        try:
            await self._dispatch(batch)
        finally:
            self.running.discard(asyncio.current_task())

    async def aclose(self, busy: Callable[[], bool] = lambda: False) -> None:
        """Send what callers queued, then wait for every batch on the wire (and ``busy()``)."""
        if self._flush_scheduled:
            self.flush()  # the scheduled flush then finds nothing to send
        await drain(self.inflight, busy)
