"""One connection's round trip: the calls of one pipeline written in one send, their
replies read under one ``socket_timeout``, ``WAIT`` appended when the pipeline carries
writes (``wait_replicas``, see :mod:`agentmem.replication`), and ``NOSCRIPT`` answered by
loading the missing scripts and sending again only the calls that met it.

Both transports (:mod:`agentmem.pipeline` for a single server, :mod:`agentmem.cluster`
for each cluster node) send every pipeline through a :class:`NodeLink`.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import Sequence
from typing import Any

import hiredis
from hiredis import pack_command
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from agentmem._translate import is_transient
from agentmem.calls import EXEC, MULTI, Call, FailureSink, raise_first_error, transaction_reply
from agentmem.replication import Wait, acknowledge, carries_writes
from agentmem.scripts import ScriptRunner

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # pragma: no cover - redis-py depends on async-timeout there
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found,unused-ignore]

try:  # the sentinel redis-py's hiredis parser builds its reader with (internal: read defensively)
    from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
except ImportError:  # pragma: no cover - another redis-py layout: read_response reads every reply
    _NOT_ENOUGH_DATA = None
#: The read of redis-py's plain connections. A connection class with a read_response of its
#: own (Sentinel's, which turns READONLY into a reconnect to the new primary) is read through it.
_PLAIN_READ: Any = getattr(AbstractConnection, "read_response", None)
#: hiredis's RESP3 push type (hiredis >= 3.2), which is not a reply.
_PUSH: Any = getattr(hiredis, "PushNotification", None)

__all__ = [
    "MIN_POOL_TO_HOLD",
    "HeldConnection",
    "NodeLink",
    "pack",
    "peer_closed",
    "round_trip",
    "write_and_read",
]


def pack(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """Commands in the wire protocol, packed by hiredis (in C, ~5x faster than in Python;
    a core dependency through ``redis[hiredis]``)."""
    return b"".join(pack_command(args) for args in commands)


def _missing_script(reply: object) -> bool:
    return isinstance(reply, rexc.NoScriptError)


def peer_closed(connection: Any) -> bool:
    """Whether the connection's transport already saw the peer go away (redis-py internals,
    read defensively: an unknown layout counts as open)."""
    writer = getattr(connection, "_writer", None)
    transport = getattr(writer, "transport", None)
    return bool(transport is not None and transport.is_closing())


async def write_and_read(connection: Any, packed: bytes, count: int, extra: float = 0.0) -> list[Any]:
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
            parser = connection._parser
            if (
                _NOT_ENOUGH_DATA is not None
                and getattr(type(connection), "read_response", None) is _PLAIN_READ
                and isinstance(getattr(parser, "_reader", None), hiredis.Reader)
            ):
                await _read_from_hiredis(parser, count, replies)
                if connection.health_check_interval:  # as read_response does: no PING while busy
                    loop = asyncio.get_running_loop()
                    connection.next_health_check = loop.time() + connection.health_check_interval
            for _ in range(count - len(replies)):
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


async def _read_from_hiredis(parser: Any, count: int, replies: list[Any]) -> None:
    """Read up to ``count`` replies straight from the connection's hiredis reader (error
    replies as exception objects, as read_response gives them): a pipeline of many short
    replies (a transaction's ``QUEUED``) costs a C call each instead of redis-py's per-reply
    machinery. Stops early if the parser was disconnected (read_response raises then)."""
    reader, read_more = parser._reader, parser.read_from_socket
    while len(replies) < count and parser._connected:
        reply = reader.gets()
        while reply is _NOT_ENOUGH_DATA:
            await read_more()
            reply = reader.gets()
        if isinstance(reply, rexc.ConnectionError):
            raise reply
        if _PUSH is not None and isinstance(reply, _PUSH):
            # not a reply: a server push (redis-py's maintenance notices); its handler, if any
            handle = getattr(parser, "handle_push_response", None)
            if handle is not None:
                await handle(reply)
            continue
        replies.append(reply)


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


async def round_trip(
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
    commands = _expand(calls, runner)
    waits = wait is not None and carries_writes(calls)
    if waits:
        assert wait is not None
        commands.append(wait.command)
    packed = pack(commands)
    pool = client.connection_pool
    if held is not None:
        connection = await held.take()
    else:
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    exchanged = False
    try:
        if peer_closed(connection):
            # Reset or killed while it sat in the pool. Reconnect instead of writing into a
            # dead transport: that costs an attempt, and on CPython 3.12.1/3.13.0 such a
            # write can leave a stale selector entry that hangs the next connect (gh-115514).
            await connection.disconnect()
        if not connection.is_connected:
            await connection.connect()
        await connection.check_health()  # a PING only when health_check_interval is due
        # A pipeline carrying WAIT is read under socket_timeout + wait_timeout: the server
        # holds WAIT's reply for up to wait_timeout by design.
        extra = wait.timeout_ms / 1000 if waits and wait is not None else 0.0
        replies = await write_and_read(connection, packed, len(commands), extra)
        exchanged = True
        acked = replies.pop() if waits else None  # WAIT's count, or the error it raised
        if len(replies) != len(calls):  # a transaction's replies, one per command
            replies = _fold(calls, replies)
        if waits:
            assert wait is not None
            replies = acknowledge(wait, calls, replies, acked)
    except (AttributeError, TypeError) as exc:
        # CPython 3.12+ can raise these from a write into a transport the peer just reset
        # (gh-136234); when the transport is indeed closing, it is a lost connection.
        lost = peer_closed(connection)
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


def _expand(calls: Sequence[Call], runner: ScriptRunner) -> list[tuple[Any, ...]]:
    """The commands of ``calls``, a transaction's wrapped in MULTI/EXEC."""
    commands: list[tuple[Any, ...]] = []
    for call in calls:
        if call.group:
            commands += (MULTI, *call.group, EXEC)
        else:
            commands.append(call.wire_args(runner))
    return commands


def _fold(calls: Sequence[Call], replies: list[Any]) -> list[Any]:
    """One reply per call: a transaction's replies folded into one (:func:`transaction_reply`)."""
    out: list[Any] = []
    at = 0
    for call in calls:
        if call.group:
            size = len(call.group) + 2
            chunk = replies[at : at + size]
            # whether the transaction writes matters only when MULTI itself was refused
            writes = isinstance(chunk[0], Exception) and carries_writes((call,))
            out.append(transaction_reply(chunk, writes=writes))
            at += size
        else:
            out.append(replies[at])
            at += 1
    return out


class NodeLink:
    """One node's round trips: its client's pool, the scripts, the breaker (or a cluster
    node's account, see :mod:`agentmem.outages`) told of every round trip, and ``WAIT``
    when ``wait_replicas`` asks for it."""

    __slots__ = ("breaker", "client", "runner", "wait")

    def __init__(
        self, client: Redis, runner: ScriptRunner, breaker: FailureSink, wait: Wait | None = None
    ) -> None:
        self.client = client
        self.runner = runner
        self.breaker = breaker
        self.wait = wait

    async def exchange(self, calls: Sequence[Call], held: HeldConnection | None = None) -> list[Any]:
        """One round trip, reported to the breaker: any reply means the server is reachable."""
        try:
            replies = await round_trip(self.client, self.runner, calls, held, self.wait)
        except Exception as exc:
            if is_transient(exc):
                self.breaker.record_failure()
            raise
        self.breaker.record_success()
        return replies

    async def send_with_reload(self, calls: Sequence[Call], held: HeldConnection | None = None) -> list[Any]:
        """The calls' replies (or per-call errors) in order, ``NOSCRIPT`` handled."""
        runner, client = self.runner, self.client
        loads = runner.loads
        replies = await self.exchange(calls, held)
        again = [i for i, reply in enumerate(replies) if _missing_script(reply)]
        if again:
            scripts = {id(calls[i].script): calls[i].script for i in again}
            # A concurrent batch that met the same NOSCRIPT may have loaded it meanwhile.
            missing = [
                s for s in scripts.values() if s is not None and not runner.loaded_since(client, s, loads)
            ]
            await runner.load(client, missing)
            resent = await self.exchange([calls[i] for i in again], held)
            for i, reply in zip(again, resent, strict=True):
                replies[i] = reply
        return replies

    async def send(self, calls: Sequence[Call]) -> list[Any]:
        """Send one operation's calls now (one round trip); raise the first error reply."""
        return raise_first_error(await self.send_with_reload(calls))
