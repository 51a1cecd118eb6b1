"""What a store operation sends (:class:`Call`), what sends it (:class:`Transport`) and
who watches (:class:`SendObserver`).

Every store operation is a short list of calls (one script run, or two for
``load_turn``), each one atomic server command; every transport (a single server's
pipeliner, a cluster's slot router, the wrapper that asks which one it is) takes such a
list and returns one reply per call, in order. The engine holds one transport and never
asks which kind it is.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from redis.asyncio import Redis

from agentmem._translate import is_permission
from agentmem.errors import AgentMemoryError, MemoryPermissionError
from agentmem.scripts import Script, ScriptRunner

__all__ = [
    "EXEC",
    "MULTI",
    "Call",
    "FailureSink",
    "Observation",
    "PoolStats",
    "SendObserver",
    "Transport",
    "raise_first_error",
    "transaction_reply",
]


@dataclass(frozen=True, slots=True)
class Call:
    """One atomic server command: a script run (``script`` set) or a plain command.

    ``route``: for a call without keys (``FT.SEARCH``, ``SCAN``...), a key whose slot picks
    the node it goes to on a Redis Cluster (any key with the right hash tag); a single
    server ignores it. A keyless call without a route goes to the node of slot 0.

    ``group``: a transaction instead of one command: these commands (all keys in one
    slot; ``keys`` names them for routing) sent as one ``MULTI`` ... ``EXEC``, for an
    operation that needs atomicity but decides nothing on the server (a plain save, a
    coalesced load), where a script's fixed cost would exceed the commands' own. Its reply
    is ``EXEC``'s list, or the first error: a command refused while queued (``OOM``,
    ``MOVED``, ``NOPERM``: then nothing ran), one that failed inside, or a refused
    ``MULTI`` itself (then the server ran the rest one by one: see
    :func:`transaction_reply`).

    ``retry``: what an attempt after one that may have reached the server sends instead
    (the store's retries do; a resend of a call the server did not run, after ``NOSCRIPT``
    or ``MOVED``, keeps the call): an append's first attempt skips the lookup of its
    operation id that only its retry needs.
    """

    script: Script | None
    keys: Sequence[str]
    args: Sequence[Any] = ()
    command: str = "EVALSHA"
    route: str | None = None
    retry: Call | None = None
    group: tuple[tuple[Any, ...], ...] = ()

    def wire_args(self, runner: ScriptRunner) -> tuple[Any, ...]:
        if self.script is None:
            return (self.command, *self.keys, *self.args)
        return ("EVALSHA", runner.sha(self.script), len(self.keys), *self.keys, *self.args)

    def arguments(self) -> Sequence[Any]:
        """Every argument the call sends (the argument-size check reads them)."""
        if self.group:
            return [arg for command in self.group for arg in command]
        return self.args


#: What a transaction (``Call.group``) wraps its commands in.
MULTI: tuple[Any, ...] = ("MULTI",)
EXEC: tuple[Any, ...] = ("EXEC",)


def transaction_reply(replies: Sequence[Any], *, writes: bool = True) -> Any:
    """One transaction's reply from its ``MULTI``, queued and ``EXEC`` replies: the first
    error (refused while queued: nothing ran; or failed inside), else ``EXEC``'s list.

    A refused ``MULTI`` (an ACL rule from before the store sent transactions, without
    ``+multi``) is worse: the server then ran the commands after it one by one, not queued,
    so a write may be applied, and not atomically. The error says so (a
    :class:`MemoryPermissionError` with ``applied`` when every command of a write ran)."""
    multi, *queued, executed = replies
    if isinstance(multi, Exception):
        return _multi_refused(multi, queued, writes=writes)
    for reply in queued:
        if isinstance(reply, Exception):
            return reply
    if isinstance(executed, Exception):
        return executed
    for reply in executed or ():
        if isinstance(reply, Exception):
            return reply
    return executed


def _multi_refused(refusal: Exception, ran: Sequence[Any], *, writes: bool) -> AgentMemoryError:
    applied = writes and not any(isinstance(reply, Exception) for reply in ran)
    what = (
        "every command ran, so the write is applied, though not atomically"
        if applied
        else "any write among them may be partly applied"
        if writes
        else "nothing was written"
    )
    message = (
        f"the server refused MULTI ({type(refusal).__name__}: {refusal}), so it ran the "
        f"transaction's commands one by one instead: {what}. The store sends a plain save and "
        "load_context as MULTI/EXEC: re-apply the rule `agentmem acl` prints "
        "(+multi +exec +mget); not retried"
    )
    error: AgentMemoryError
    if is_permission(refusal):
        error = MemoryPermissionError(message)
        error.applied = applied
    else:
        error = AgentMemoryError(message)
    error.__cause__ = refusal
    return error


def raise_first_error(replies: list[Any]) -> list[Any]:
    """An operation's replies, or its first error reply raised."""
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class FailureSink(Protocol):
    """What a round trip reports to: the store's breaker, or one cluster node's account
    (:mod:`agentmem.outages`)."""

    def record_failure(self) -> None: ...

    def record_success(self) -> None: ...


class Observation(Protocol):
    """The scope of one observed operation (``StoreEngine.observe``)."""

    def annotate(self, **attributes: Any) -> None:
        """Attributes for the operation's span (``agentmem.journaled=True``...)."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One connection pool's figures: connections checked out (``held`` of them kept idle
    for the next inline send), idle in the pool, and the most it opens."""

    in_use: int
    idle: int
    size: int
    held: int = 0


def pool_stats(pool: Any, held: int = 0) -> PoolStats:
    """The figures of a redis-py pool (private lists, read defensively)."""
    return PoolStats(
        in_use=len(getattr(pool, "_in_use_connections", ()) or ()),
        idle=len(getattr(pool, "_available_connections", ()) or ()),
        size=int(getattr(pool, "max_connections", 0) or 0),
        held=held,
    )


class Transport(Protocol):
    """Sends calls to wherever their keys live; implemented by
    :class:`~agentmem.pipeline.NodeTransport`, :class:`~agentmem.cluster.ClusterTransport`
    and :class:`~agentmem.topology.DetectingTransport`."""

    def send(self, calls: Sequence[Call]) -> Awaitable[list[Any]]:
        """The calls' replies in order, or the first error reply raised (one attempt)."""
        ...

    def send_to(self, node: Any, calls: Sequence[Call]) -> Awaitable[list[Any]]:
        """The same, on one node named by :meth:`primaries`."""
        ...

    async def primaries(self) -> Sequence[Any]:
        """The nodes holding data, as :meth:`send_to` names them (one on a single server)."""
        ...

    async def topology(self) -> Literal["single", "cluster"] | None:
        """Which kind of deployment this is; ``None`` while the server did not say."""
        ...

    async def admin_client(self) -> Redis:
        """A client for node-level commands (INFO, PING): the server, or a cluster primary."""
        ...

    async def probe(self) -> None:
        """The breaker's probe: return once the nodes the calls need answer."""
        ...

    async def drop_idle(self) -> None:
        """After an outage: drop idle pooled connections (they predate it, likely dead)."""
        ...

    def describe(self) -> dict[str, Any]:
        """``server.address``, ``server.port``, ``db.namespace`` as far as they are known."""
        ...

    def pool_stats(self) -> dict[str, PoolStats]:
        """Every pool's figures, by pool name (``host:port/db``)."""
        ...

    async def aclose(self) -> None:
        """Send what was queued, wait for it, release the connections this transport owns."""
        ...


class SendObserver(Protocol):
    """Told of a store's operations by the engine (telemetry is one); imports no store."""

    def start(self, operation: str, calls: Sequence[Call]) -> Any:
        """An operation begins; returns what :meth:`attempt` and :meth:`end` are given."""
        ...

    def attempt(self, scope: Any) -> None:
        """One attempt of the operation goes out."""
        ...

    def end(self, scope: Any, error: BaseException | None) -> None:
        """The operation ended (``error``: what it raised)."""
        ...

    def batch(self, calls: Sequence[Call]) -> None:
        """A pipeline carrying these calls is about to be sent."""
        ...

    def observe(self, operation: str) -> AbstractAsyncContextManager[Observation]:
        """A scope for an operation of several sends (see ``StoreEngine.observe``)."""
        ...
