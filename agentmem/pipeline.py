"""Sending store operations: one at a time, or auto-pipelined across concurrent tasks.

Every store operation is a short list of :class:`Call` objects (one script run, or
two for ``load_turn``), each atomic on the server. The :class:`AutoPipeliner`
collects the calls that concurrent tasks submit during one event-loop iteration and
sends them as one pipeline round trip, the way ioredis's auto-pipelining does:

* batching never merges operations: each call stays its own ``EVALSHA``, so each
  stays atomic, and an error reply fails only the call it belongs to;
* a caller cancelled before the flush is dropped from the batch; one cancelled after
  it simply never reads its reply, which disturbs no other caller;
* after ``NOSCRIPT`` (a restart, a failover, SCRIPT FLUSH) the missing scripts are
  loaded and only the calls that hit it are sent again;
* a connection error fails every call of that batch, and each caller's own retry
  policy decides whether to try again (in a later batch).

Redis Cluster next: every call's keys sit in one slot (one hash tag), so a batch
splits into one pipeline per node by slot, with the same per-call result routing.
"""

from __future__ import annotations

import asyncio
import collections
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem._translate import is_transient
from agentmem.breaker import CircuitBreaker
from agentmem.replication import Wait, acknowledge, carries_writes
from agentmem.scripts import Script, ScriptRunner

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - redis-py depends on async-timeout there
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found,unused-ignore]

__all__ = ["AutoPipeliner", "Call", "HeldConnection", "drain", "send_direct"]

#: Most calls one pipeline carries; a larger burst goes out as several pipelines at once,
#: on several connections. Small batches let the server run one batch while the client
#: encodes the next and decodes the last: measured with save+load pairs of the 4 KB
#: benchmark context on 2 cores, 16 gave ~1.3-1.5x the throughput of 256 at 64 and 256
#: concurrent tasks (median of 8 interleaved repetitions each).
MAX_BATCH = 16


@dataclass(frozen=True, slots=True)
class Call:
    """One atomic server command: a script run (``script`` set) or a plain command."""

    script: Script | None
    keys: Sequence[str]
    args: Sequence[Any] = ()
    command: str = "EVALSHA"

    def wire_args(self, runner: ScriptRunner) -> tuple[Any, ...]:
        if self.script is None:
            return (self.command, *self.keys, *self.args)
        return ("EVALSHA", runner.sha(self.script), len(self.keys), *self.keys, *self.args)


def _missing_script(reply: object) -> bool:
    return isinstance(reply, rexc.NoScriptError)


def _pack_python(commands: Sequence[tuple[Any, ...]]) -> bytes:
    out: list[bytes] = []
    for args in commands:
        out.append(b"*%d\r\n" % len(args))
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


try:  # hiredis (a core dependency through redis[hiredis]) packs in C, ~5x faster
    from hiredis import pack_command as _hiredis_pack

    def _pack(commands: Sequence[tuple[Any, ...]]) -> bytes:
        return b"".join(_hiredis_pack(args) for args in commands)

except ImportError:  # pragma: no cover - hiredis is installed with agentmem
    _pack = _pack_python


def _peer_closed(connection: Any) -> bool:
    """Whether the connection's transport already saw the peer go away (redis-py internals,
    read defensively: an unknown layout counts as open)."""
    writer = getattr(connection, "_writer", None)
    transport = getattr(writer, "transport", None)
    return bool(transport is not None and transport.is_closing())


async def _write_and_read(connection: Any, packed: bytes, count: int, extra: float = 0.0) -> list[Any]:
    """Write one packed pipeline and read its ``count`` replies, all under one
    ``socket_timeout`` (one timer per round trip, not one per reply), plus ``extra``
    seconds the server is asked to wait (``WAIT``'s timeout)."""
    replies: list[Any] = []
    limit = connection.socket_timeout + extra if connection.socket_timeout is not None else None
    try:
        async with _timeout(limit):
            writer = connection._writer
            if writer is None or writer.transport.is_closing():
                raise rexc.ConnectionError("connection closed by the server before write")
            writer.write(packed)
            await writer.drain()
            for _ in range(count):
                try:
                    # inf: no timer of redis-py's own per reply; ours above covers them all
                    replies.append(await connection.read_response(timeout=math.inf))
                except rexc.ResponseError as exc:  # an error reply: the stream is still in step
                    replies.append(exc)
    except asyncio.TimeoutError as exc:
        raise rexc.TimeoutError(
            f"no reply within socket_timeout={connection.socket_timeout}s"
            f"{f' + wait_timeout={extra}s' if extra else ''} "
            f"({len(replies)} of {count} replies read)"
        ) from exc
    except OSError as exc:
        raise rexc.ConnectionError(f"connection lost: {exc!r}") from exc
    return replies


#: Smallest pool whose connection an idle pipeliner may keep checked out (see HeldConnection).
MIN_POOL_TO_HOLD = 2


class HeldConnection:
    """One pooled connection kept checked out between a pipeliner's inline sends.

    Checking a connection out of redis-py's ``BlockingConnectionPool`` and back costs
    ~14 us of CPU (a lock, a timer, readiness checks): for one caller at a time that is
    a large part of each call. A failed exchange gives it back to the pool (disconnected,
    as every failed connection is); ``drop`` gives it back after an outage and on close.
    """

    def __init__(self, client: Redis) -> None:
        self._pool = client.connection_pool
        self._connection: Any = None
        # A pool of one connection must never lose it to an idle hold: a batch or a
        # SCRIPT LOAD would wait for it until pool_timeout.
        self._closed = getattr(self._pool, "max_connections", MIN_POOL_TO_HOLD) < MIN_POOL_TO_HOLD

    @property
    def idle(self) -> int:
        return 0 if self._connection is None else 1

    async def take(self) -> Any:
        connection, self._connection = self._connection, None
        if connection is None:
            connection = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        return connection

    async def keep(self, connection: Any) -> None:
        if self._closed or self._connection is not None:
            await self._pool.release(connection)
        else:
            self._connection = connection

    async def give_back(self, connection: Any) -> None:
        await self._pool.release(connection)

    async def drop(self, *, close: bool = False) -> None:
        """Disconnect the held connection and return it to the pool (``close``: for good)."""
        self._closed = self._closed or close
        connection, self._connection = self._connection, None
        if connection is not None:
            await connection.disconnect()
            await self._pool.release(connection)


async def _pipeline(
    client: Redis,
    runner: ScriptRunner,
    calls: Sequence[Call],
    held: HeldConnection | None = None,
    wait: Wait | None = None,
) -> list[Any]:
    """Send calls in one round trip on one connection (pooled, or ``held``); replies (or
    per-call errors) in order.

    The commands are packed here and written in one send; redis-py's per-command client
    machinery (response callbacks, its own retry, a timer per reply) is not needed for
    EVALSHA/UNLINK replies. With ``wait`` and a write among the calls, one ``WAIT``
    follows them on the same connection (see :mod:`agentmem.replication`).
    """
    commands = [call.wire_args(runner) for call in calls]
    waits = wait is not None and carries_writes(calls)
    if waits:
        assert wait is not None
        commands.append(wait.command)
    packed = _pack(commands)
    pool = client.connection_pool
    if held is not None:
        connection = await held.take()
    else:
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    exchanged = False
    try:
        if _peer_closed(connection):
            # Reset or killed while it sat in the pool. Reconnect instead of writing into a
            # dead transport: that costs an attempt, and on CPython 3.12.1/3.13.0 such a
            # write can leave a stale selector entry that hangs the next connect (gh-115514).
            await connection.disconnect()
        if not connection.is_connected:
            await connection.connect()
        await connection.check_health()  # a PING only when health_check_interval is due
        extra = wait.timeout_ms / 1000 if waits and wait is not None else 0.0
        replies = await _write_and_read(connection, packed, len(commands), extra)
        exchanged = True
        if waits:
            assert wait is not None
            acked = replies.pop()  # WAIT's count, or the error it raised
            replies = acknowledge(wait, calls, replies, acked)
    except (AttributeError, TypeError) as exc:
        # CPython 3.12+ can raise these from a write into a transport the peer just reset
        # (gh-136234); when the transport is indeed closing, it is a lost connection.
        lost = _peer_closed(connection)
        await connection.disconnect()
        if lost:
            raise rexc.ConnectionError(f"connection lost while writing: {exc!r}") from exc
        raise
    except BaseException:
        # A failed or cancelled exchange leaves replies unread: never hand this
        # connection to anyone else.
        await connection.disconnect()
        raise
    finally:
        if held is not None and exchanged:
            await held.keep(connection)
        elif held is not None:
            await held.give_back(connection)
        else:
            await pool.release(connection)
    return replies


class FailureSink(Protocol):
    """What a round trip reports to: the store's breaker, or a cluster node's account of it."""

    def record_failure(self) -> None: ...

    def record_success(self) -> None: ...


async def _exchange(
    client: Redis,
    runner: ScriptRunner,
    calls: Sequence[Call],
    breaker: FailureSink,
    held: HeldConnection | None = None,
    wait: Wait | None = None,
) -> list[Any]:
    """One round trip, reported to the breaker: any reply means the server is reachable."""
    try:
        replies = await _pipeline(client, runner, calls, held, wait)
    except Exception as exc:
        if is_transient(exc):
            breaker.record_failure()
        raise
    breaker.record_success()
    return replies


async def _send_with_reload(
    client: Redis,
    runner: ScriptRunner,
    calls: Sequence[Call],
    breaker: FailureSink,
    held: HeldConnection | None = None,
    wait: Wait | None = None,
) -> list[Any]:
    loads = runner.loads
    replies = await _exchange(client, runner, calls, breaker, held, wait)
    again = [i for i, reply in enumerate(replies) if _missing_script(reply)]
    if again:
        scripts = {id(calls[i].script): calls[i].script for i in again}
        # A concurrent batch that met the same NOSCRIPT may have loaded it meanwhile.
        missing = [s for s in scripts.values() if s is not None and not runner.loaded_since(client, s, loads)]
        await runner.load(client, missing)
        resent = await _exchange(client, runner, [calls[i] for i in again], breaker, held, wait)
        for i, reply in zip(again, resent, strict=True):
            replies[i] = reply
    return replies


def _raise_first_error(replies: list[Any]) -> list[Any]:
    """An operation's replies, or its first error reply raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


async def send_direct(
    client: Redis,
    runner: ScriptRunner,
    calls: Sequence[Call],
    breaker: CircuitBreaker,
    wait: Wait | None = None,
) -> list[Any]:
    """Send one operation's calls now (one round trip); raise the first error reply."""
    return _raise_first_error(await _send_with_reload(client, runner, calls, breaker, wait=wait))


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
        self._client = client
        self._wait = wait
        self._runner = runner
        self._breaker = breaker
        self._max_batch = max_batch
        #: One entry per operation: its calls always travel in the same pipeline.
        self._pending: list[list[tuple[Call, asyncio.Future[Any]]]] = []
        self._flush_scheduled = False
        self._inflight: set[asyncio.Task[None]] = set()
        #: Operations the last batch carried: 1 means callers come one at a time, so an
        #: idle pipeliner sends a caller's calls inline (no future, no extra loop pass).
        self._last_batch_ops = 0
        self._inline = 0
        self._held = HeldConnection(client)
        #: Pipelines sent, calls carried, and the sizes of the latest pipelines.
        self.batches = 0
        self.calls = 0
        self.recent_sizes: collections.deque[int] = collections.deque(maxlen=64)
        #: Called with each pipeline's calls before it is sent (telemetry's batch sizes).
        self.on_batch: Callable[[Sequence[Call]], None] | None = None

    async def send(self, calls: Sequence[Call]) -> list[Any]:
        """Queue an operation's calls for the next flush; raise the first error reply.

        A caller that finds nothing queued and nothing on the wire, while callers come
        one at a time, sends its calls at once from its own task instead.
        """
        if not self._pending and not self._inflight and not self._inline and self._last_batch_ops <= 1:
            return await self._send_inline(calls)
        loop = asyncio.get_running_loop()
        if len(calls) == 1:  # most operations: one script run
            future: asyncio.Future[Any] = loop.create_future()
            futures = [future]
            self._pending.append([(calls[0], future)])
        else:
            futures = [loop.create_future() for _ in calls]
            self._pending.append(list(zip(calls, futures, strict=True)))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        try:
            replies = [await future for future in futures]
        except BaseException:
            for future in futures:
                if future.done() and not future.cancelled():
                    future.exception()  # mark retrieved: the caller already raised one
                future.cancel()  # not sent yet: dropped at flush; sent: reply ignored
            raise
        return _raise_first_error(replies)

    async def _send_inline(self, calls: Sequence[Call]) -> list[Any]:
        self.batches += 1
        self.calls += len(calls)
        self.recent_sizes.append(len(calls))
        self._inline += 1
        try:
            if self.on_batch is not None:
                self.on_batch(calls)
            replies = await _send_with_reload(
                self._client, self._runner, calls, self._breaker, self._held, self._wait
            )
        finally:
            self._inline -= 1
        return _raise_first_error(replies)

    def _flush(self) -> None:
        self._flush_scheduled = False
        # An operation whose caller was cancelled before the flush has cancelled futures: drop it.
        operations = [op for op in self._pending if not op[0][1].done()]
        self._pending = []
        self._last_batch_ops = len(operations)
        batch: list[tuple[Call, asyncio.Future[Any]]] = []
        for operation in operations:
            if batch and len(batch) + len(operation) > self._max_batch:
                self._start(batch)
                batch = []
            batch.extend(operation)
        if batch:
            self._start(batch)

    def _start(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        task = asyncio.ensure_future(self._send_batch(batch))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _send_batch(self, batch: list[tuple[Call, asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.calls += len(batch)
        self.recent_sizes.append(len(batch))
        try:
            calls = [c for c, _ in batch]
            if self.on_batch is not None:
                self.on_batch(calls)
            replies = await _send_with_reload(
                self._client, self._runner, calls, self._breaker, wait=self._wait
            )
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # connection-level: every call of the batch failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if not future.done():
                future.set_result(reply)

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
        if self._flush_scheduled:
            self._flush()  # the scheduled flush then finds nothing to send
        await drain(self._inflight, lambda: self._inline > 0)
        await self._held.drop(close=True)
