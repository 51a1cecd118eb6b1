"""The store's engine: what layers and adapters build on (``store.engine``).

A :class:`StoreEngine` sends :class:`~agentmem.calls.Call` lists the way every store
operation does (one retried operation under ``retry_deadline``, behind the circuit
breaker, auto-pipelined, with typed errors), and knows the store's configuration, key
schema and TTLs. Adapters (LangGraph, ADK, OpenAI Agents) and layers use these names and
no ``_``-name of the store; each of them is tested on a single server and on a cluster.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal

from redis import exceptions as rexc

from agentmem.calls import Call, Observation

if TYPE_CHECKING:
    from agentmem.breaker import CircuitBreaker
    from agentmem.config import StoreConfig
    from agentmem.keys import KeySchema
    from agentmem.scripts import Script
    from agentmem.store import AgentMemoryStore

__all__ = ["Observation", "StoreEngine", "Topology", "TtlKind"]

Topology = Literal["single", "cluster"]
TtlKind = Literal["session", "read", "profile"]


def _ms(value: float | None) -> int:
    return 0 if value is None else max(1, int(value * 1000))


class _Unobserved:
    """The scope :meth:`StoreEngine.observe` opens without telemetry: records nothing."""

    def annotate(self, **attributes: Any) -> None:
        pass


_NOTHING = _Unobserved()


class StoreEngine:
    """Sending, keys, TTLs and topology of one store (see the module docstring)."""

    def __init__(self, store: AgentMemoryStore) -> None:
        self._store = store

    @property
    def config(self) -> StoreConfig:
        return self._store.config

    @property
    def keys(self) -> KeySchema:
        """The only key builder."""
        return self._store._keys

    @property
    def breaker(self) -> CircuitBreaker:
        return self._store.breaker

    @property
    def append_window_ms(self) -> int:
        """How long (ms) an append's operation id is remembered against a repeat."""
        return self._store._append_window_ms

    @property
    def transport(self) -> Any:
        """The object sending calls now (its ``batches``, ``calls``, ``recent_sizes``
        counters; on a cluster also ``node_batches`` and ``slots``); ``None`` when calls
        go out one by one without batching."""
        store = self._store
        return store._cluster if store._cluster is not None else store._pipeliner

    async def send(self, operation: str, calls: Sequence[Call]) -> list[Any]:
        """Send one operation's calls, retried as a whole under ``retry_deadline`` behind
        the breaker, with typed errors; the replies in call order."""
        return await self._store._send(operation, calls)

    async def script(self, operation: str, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script as an operation of its own; its reply."""
        return (await self._store._send(operation, (Call(script, keys, args),)))[0]

    async def scan(self, operation: str, match: str, *, count: int = 500) -> set[bytes]:
        """Every key matching ``match`` (``SCAN``, never ``KEYS``), on the server or on every
        primary of a cluster; each step retried like any call. For listings, not hot paths."""
        return await self._store._scan(operation, match, count=count)

    async def each_primary(self, operation: str, call: Call) -> list[Any]:
        """The same keyless call on every primary (one reply on a single server or under
        Sentinel), each retried like any call: ``FT.CREATE``/``FT.INFO`` on every shard, a
        search's fan-out. Replies in the order of the primaries' addresses."""
        if await self.topology() == "single":
            return await self.send(operation, (call,))
        store = self._store
        cluster = store._cluster
        assert cluster is not None
        async with self.observe(operation):
            await store._retrier.run(operation, lambda: cluster.refresh(force=True))
            replies: list[Any] = []
            for address in cluster.slots.primaries:
                store._check_open(operation)
                (reply,) = await store._retrier.run(
                    operation, functools.partial(cluster.send_to, address, (call,))
                )
                replies.append(reply)
            return replies

    def ttl_ms(self, kind: TtlKind) -> int:
        """A TTL in milliseconds as the scripts take it: ``session`` (``ttl``), ``profile``
        (``profile_ttl``, 0 for none), ``read`` (what a read refreshes: the session TTL with
        ``sliding_ttl``, else 0)."""
        config = self._store.config
        if kind == "session":
            return _ms(config.ttl)
        if kind == "profile":
            return _ms(config.profile_ttl)
        if kind == "read":
            return _ms(config.ttl) if config.sliding_ttl else 0
        raise ValueError(f"unknown TTL kind {kind!r}")

    async def topology(self) -> Topology:
        """``"cluster"`` on a Redis Cluster, else ``"single"`` (Sentinel included). A store
        from ``from_url(cluster=None)`` asks the server once (``INFO cluster``); while it
        does not answer, asking is retried like any call (``MemoryUnavailableError`` when
        ``retry_deadline`` runs out)."""
        store = self._store
        if store._detect_cluster is not None:
            await store._resolve_topology()
        if store._detect_cluster is not None:  # the server did not answer

            async def ask() -> None:
                store._check_open("topology")
                await store._resolve_topology()
                if store._detect_cluster is not None:
                    raise rexc.ConnectionError("the server did not answer INFO cluster")

            await store._retrier.run("topology", ask)
        return "cluster" if store._cluster is not None else "single"

    def observe(self, operation: str) -> AbstractAsyncContextManager[Observation]:
        """A span/metrics scope for an operation of several sends (with ``telemetry=True``;
        else a no-op). The scope's first send of the same name joins it; other sends
        inside it are its children."""
        telemetry = self._store._telemetry
        if telemetry is None:
            return _nothing()
        return telemetry.scope(operation)


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[Observation]:
    yield _NOTHING
