"""The store's engine: what layers and adapters build on (``store.engine``).

A :class:`StoreEngine` sends :class:`~agentmem.calls.Call` lists the way every store
operation does (one retried operation under ``retry_deadline``, behind the circuit
breaker, auto-pipelined, with typed errors), and knows the store's configuration, key
schema and TTLs. It holds one :class:`~agentmem.calls.Transport` (a single server, a
cluster, or the wrapper that asks which) and never asks which kind it is. Adapters
(LangGraph, ADK, OpenAI Agents) and layers use these names and no ``_``-name of the
store; each of them is tested on a single server and on a cluster.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal

from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem.batching import BatchStats
from agentmem.breaker import CircuitBreaker
from agentmem.bulk import MIN_BULK_LIMIT, BulkLimit
from agentmem.calls import Call, Observation, SendObserver, Transport
from agentmem.config import StoreConfig
from agentmem.errors import StoreClosedError
from agentmem.keys import KeySchema, SessionKeys
from agentmem.refresh import RefreshCoalescer
from agentmem.retry import Retrier, RetryingSender, RetryPolicy
from agentmem.scripts import Script, ScriptRunner

if TYPE_CHECKING:
    from agentmem.topology import Connect

__all__ = ["MIN_APPEND_WINDOW", "StoreEngine", "Topology", "TtlKind", "append_window"]

Topology = Literal["single", "cluster"]
TtlKind = Literal["session", "read", "profile"]

#: The append log keeps an operation id at least this long, whatever the options say:
#: margin for a server clock that steps (NTP, a failover to a replica with another clock).
MIN_APPEND_WINDOW = 60.0


def append_window(config: StoreConfig) -> float:
    """Seconds an append's operation id is remembered: twice the longest time between an
    append's first attempt and the last retry of it reaching the server, at least
    ``MIN_APPEND_WINDOW``.

    No attempt starts later than ``retry_deadline`` after the first (a caller waiting
    for an open breaker included), and one attempt can wait ``pool_timeout`` for a
    connection, ``socket_connect_timeout`` to connect and ``socket_timeout`` twice (a
    health-check PING, then the script, plus ``wait_timeout`` with ``wait_replicas``).
    """
    attempt = config.pool_timeout + config.socket_connect_timeout + 2 * config.socket_timeout
    if config.wait_replicas:  # the script's pipeline is read under socket_timeout + wait_timeout
        attempt += config.wait_timeout
    return max(MIN_APPEND_WINDOW, 2 * (config.retry_deadline + attempt))


_append_window_for = append_window

#: Sessions whose keys an engine keeps built (a few hundred bytes each).
KEY_CACHE_SIZE = 4096


def _ms(value: float | None) -> int:
    return 0 if value is None else max(1, int(value * 1000))


class _Unobserved(AbstractAsyncContextManager["_Unobserved"]):
    """The scope :meth:`StoreEngine.observe` opens without telemetry: records nothing (one
    shared instance; entering it costs no generator)."""

    def annotate(self, **attributes: Any) -> None:
        pass

    async def __aexit__(self, *exc: object) -> None:
        return None


_NOTHING = _Unobserved()


class StoreEngine:
    """Sending, keys, TTLs and topology of one store (see the module docstring).

    ``connect`` builds the transport (see :mod:`agentmem.topology`); ``client`` is the
    client the store was given or built (asked for ``proto-max-bulk-len`` when values
    may be that large); ``append_window``: seconds an append's id is kept, when a layer
    needs longer than :func:`append_window` (the journal: the session TTL).
    """

    def __init__(
        self,
        config: StoreConfig,
        connect: Connect,
        *,
        client: Any,
        append_window: float | None = None,
    ) -> None:
        self.config = config
        #: The only key builder.
        self.keys = KeySchema(config.prefix)
        # Agents touch the same few sessions every turn: build (and validate) their keys once.
        self._cached_session_keys = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(self.keys.session)
        #: When this store's reads last refreshed each session's (user's) TTLs: reads and plain
        #: writes within the bound skip refreshes (agentmem.refresh).
        self.refresh = RefreshCoalescer()
        self.scripts = ScriptRunner()
        self.closed = False
        self.breaker = CircuitBreaker(
            threshold=config.breaker_threshold,
            fail_fast_after=config.retry_deadline,
            probe_interval=config.breaker_probe_interval,
            probe=self._probe,
            on_recover=self._drop_idle,
        )
        self.retrier = Retrier(RetryPolicy.of(config), self.breaker)
        #: Pipelines sent and calls carried, whichever transport carried them.
        self.stats = BatchStats()
        self.transport: Transport = connect(self.scripts, self.breaker, self.stats)
        window = append_window if append_window is not None else _append_window_for(config)
        #: How long (ms) an append's operation id is remembered against a repeat.
        self.append_window_ms = _ms(window)
        #: What the telemetry's backlog gauge reads (a journaled store sets it).
        self.journal_backlog: Callable[[], int | None] = lambda: None
        observer: SendObserver | None = None
        if config.telemetry:  # an optional layer: a store without it imports none of it
            from agentmem.telemetry import OtelObserver

            observer = OtelObserver(
                self.transport.describe(),
                self.transport.pool_stats,
                prefix=config.prefix,
                breaker_state=lambda: self.breaker.state.value,
                closed=lambda: self.closed,
                backlog=lambda: self.journal_backlog(),
            )
            self.stats.on_batch = observer.batch
        bulk = BulkLimit(client, self.retrier).check if config.max_value_bytes > MIN_BULK_LIMIT else None
        self._sender = RetryingSender(
            self.retrier, self.transport, self.check_open, bulk=bulk, observer=observer
        )
        self.observer = observer
        #: ``await send(operation, calls)``: one operation's calls, retried as a whole under
        #: ``retry_deadline`` behind the breaker, with typed errors (the path every store
        #: call takes, fast path included); the replies in call order. The sender's own
        #: method, so a store call costs no extra coroutine.
        self.send: Callable[[str, Sequence[Call]], Awaitable[list[Any]]] = self._sender.send

    def session_keys(self, session_id: str) -> SessionKeys:
        """The session's keys (``keys.session``, cached); :class:`~agentmem.InvalidKeyError`
        for an unusable id."""
        if type(session_id) is str:
            keys: SessionKeys = self._cached_session_keys(session_id)
            return keys
        return self.keys.session(session_id)  # not a str: raises the typed error

    def check_open(self, operation: str, retry: bool = False) -> None:
        """Raise :class:`~agentmem.StoreClosedError` once the store is closed (``retry``:
        for a retry of a call whose earlier attempt may have been applied)."""
        if self.closed:
            if retry:
                raise StoreClosedError(
                    f"{operation}: the store was closed by aclose() before this call's retry; its "
                    "earlier attempt failed and may have been applied (safe to repeat)"
                )
            raise StoreClosedError(f"{operation}: the store was closed by aclose(); nothing was sent")

    async def _probe(self) -> None:
        await self.transport.probe()

    async def _drop_idle(self) -> None:
        await self.transport.drop_idle()

    async def script(self, operation: str, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script as an operation of its own; its reply."""
        return (await self._sender.send(operation, (Call(script, keys, args),)))[0]

    async def scan(self, operation: str, match: str, *, count: int = 500) -> set[bytes]:
        """Every key matching ``match`` (``SCAN``, never ``KEYS``), on the server or on every
        primary of a cluster; each step retried like any call. For listings, not hot paths."""
        self.check_open(operation)
        found: set[bytes] = set()
        for node in await self._primaries(operation):
            cursor: int | bytes = 0
            while True:
                scan = Call(None, (), (cursor, "MATCH", match, "COUNT", count), command="SCAN")
                ((cursor, keys),) = await self._sender.send(operation, (scan,), node)
                found.update(keys)
                if int(cursor) == 0:
                    break
        return found

    async def each_primary(self, operation: str, call: Call) -> list[Any]:
        """The same keyless call on every primary (one reply on a single server or under
        Sentinel), each retried like any call: ``FT.CREATE``/``FT.INFO`` on every shard, a
        search's fan-out. Replies in the order of the primaries' addresses."""
        self.check_open(operation)
        replies: list[Any] = []
        for node in await self._primaries(operation):
            (reply,) = await self._sender.send(operation, (call,), node)
            replies.append(reply)
        return replies

    async def _primaries(self, operation: str) -> Sequence[Any]:
        return await self.retrier.run(operation, self.transport.primaries)

    def ttl_ms(self, kind: TtlKind) -> int:
        """A TTL in milliseconds as the scripts take it: ``session`` (``ttl``), ``profile``
        (``profile_ttl``, 0 for none), ``read`` (what a read refreshes: the session TTL with
        ``sliding_ttl``, else 0)."""
        if kind == "session":
            return _ms(self.config.ttl)
        if kind == "profile":
            return _ms(self.config.profile_ttl)
        if kind == "read":
            return _ms(self.config.ttl) if self.config.sliding_ttl else 0
        raise ValueError(f"unknown TTL kind {kind!r}")

    async def topology(self) -> Topology:
        """``"cluster"`` on a Redis Cluster, else ``"single"`` (Sentinel included). A store
        from ``from_url(cluster=None)`` asks the server once (``INFO cluster``); while it
        does not answer, asking is retried like any call (``MemoryUnavailableError`` when
        ``retry_deadline`` runs out)."""
        known = await self.transport.topology()
        if known is not None:
            return known
        return await self.retrier.run("topology", self._ask_topology)

    async def _ask_topology(self) -> Topology:
        self.check_open("topology")
        known = await self.transport.topology()
        if known is None:
            raise rexc.ConnectionError("the server did not answer INFO cluster")
        return known

    def observe(self, operation: str) -> AbstractAsyncContextManager[Observation]:
        """A span/metrics scope for an operation of several sends (with ``telemetry=True``;
        else a no-op). The scope's first send of the same name joins it; other sends
        inside it are its children."""
        if self.observer is None:
            return _NOTHING
        return self.observer.observe(operation)

    async def admin_client(self) -> Redis:
        """Where node-level commands (INFO, PING) go: the server, or a cluster primary."""
        return await self.transport.admin_client()

    async def aclose(self) -> None:
        """Stop the breaker's prober, send what is queued, release the connections the
        store opened (a caller's client stays open)."""
        self.closed = True
        try:
            await self.breaker.aclose()
        finally:
            await self.transport.aclose()
