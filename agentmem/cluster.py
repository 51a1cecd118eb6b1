"""Sending store operations to a Redis Cluster: one pipeline per node, by slot.

Every :class:`~agentmem.calls.Call` names keys of one hash tag (or a ``route`` key), so
one slot, so one node. :class:`ClusterTransport` keeps its own slot map (``CLUSTER
SLOTS``) and one bounded pool per primary, and offers what
:class:`~agentmem.pipeline.NodeTransport` offers (``send(calls) -> replies``, batched
across the tasks of one event-loop iteration by the same :class:`~agentmem.batching.Batcher`,
or sent at once):

* the calls of a batch are grouped by node and each node's group goes out as one
  pipeline, every node at once; ``load_turn`` with a ``user_id`` whose facts live on
  another node is one round trip per node, concurrently;
* a ``MOVED`` reply updates that slot in the map, schedules a full refresh, and the
  call is sent again to the node named; an ``ASK`` reply sends ``ASKING`` and the call
  to the node named, once, without touching the map;
* ``TRYAGAIN``, ``CLUSTERDOWN``, ``MASTERDOWN`` and a lost node are transient: the call
  fails, the map is refreshed before the next round, and the store's retrier sends the
  call again within its ``retry_deadline``;
* ``NOSCRIPT`` is handled per node (a promoted replica or a new node has not loaded
  the scripts yet), by the same path as on a single server.

Failures are counted per node (:mod:`agentmem.outages`): after ``breaker_threshold``
failed round trips in a row a node is down, and its callers wait for it (or for a
failover to move its slots), sending nothing, up to ``retry_deadline``, while the callers
of the other nodes go on; the store's circuit breaker hears of a failure only while every
primary is failing (the cluster is unreachable). The slot map is asked of nodes that
answered last first, so a hung node does not stall every refresh. The breaker's probe
refreshes the map from any node that answers, then pings every primary of it on a fresh
connection: it passes once one answers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from redis import exceptions as rexc
from redis.asyncio import ConnectionPool, Redis
from redis.crc import key_slot

from agentmem._translate import is_permission, is_transient
from agentmem.batching import BatchCounters, Batcher, BatchStats, Item, fail
from agentmem.breaker import CircuitBreaker
from agentmem.calls import Call, PoolStats, pool_stats, raise_first_error
from agentmem.errors import MemoryPermissionError
from agentmem.outages import NodeOutages, NodeReport
from agentmem.pipeline import MAX_BATCH
from agentmem.probe import ping_fresh_connection
from agentmem.replication import Wait
from agentmem.scripts import ScriptRunner
from agentmem.wire import NodeLink, round_trip

__all__ = ["SLOTS", "Address", "ClusterTransport", "SlotMap"]

log = logging.getLogger("agentmem")

SLOTS = 16384
#: Redirections one call follows in one attempt before it fails (transient: the retrier
#: may send it again): a slot can move again while a call chases it, never for long.
MAX_REDIRECTS = 5

Address = tuple[str, int]
_ASKING = Call(None, (), (), command="ASKING")
_CLUSTER_SLOTS = Call(None, ("SLOTS",), (), command="CLUSTER")


def call_slot(call: Call) -> int:
    """The slot of a call's keys (all share one hash tag), else of its ``route``; slot 0
    for a keyless call without a route."""
    key = call.keys[0] if call.keys else call.route
    return key_slot(key.encode()) if key else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SlotMap:
    """Which primary serves each of the 16384 slots."""

    def __init__(self) -> None:
        self._owner: list[Address | None] = [None] * SLOTS
        self.loaded = False

    def node_for(self, slot: int) -> Address | None:
        return self._owner[slot]

    def update(self, slot: int, address: Address) -> None:
        self._owner[slot] = address

    @property
    def primaries(self) -> list[Address]:
        return sorted({a for a in self._owner if a is not None})

    def load(self, reply: Sequence[Any], asked: Address) -> None:
        """Replace the map with a raw ``CLUSTER SLOTS`` reply (from the node at ``asked``)."""
        owner: list[Address | None] = [None] * SLOTS
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = _text(primary[0]) or asked[0]  # "" or "?": the node we asked
            if host == "?":
                host = asked[0]
            address = (host, int(primary[1]))
            for slot in range(start, end + 1):
                owner[slot] = address
        self._owner = owner
        self.loaded = True


class ClusterTransport(BatchCounters):
    """Routes calls to the cluster's primaries (see the module docstring).

    ``pool_for(host, port)`` builds the pool of one node; ``seeds`` are the nodes asked
    for the slot map first. With ``batching`` (the store's ``auto_pipeline``) the calls of
    one event-loop iteration share pipelines; without, each ``send`` goes out at once.
    """

    def __init__(
        self,
        seeds: Sequence[Address],
        pool_for: Callable[[str, int], ConnectionPool],
        runner: ScriptRunner,
        breaker: CircuitBreaker,
        *,
        batching: bool = True,
        wait: Wait | None = None,
        max_batch: int = MAX_BATCH,
        stats: BatchStats | None = None,
    ) -> None:
        if not seeds:
            raise ValueError("a cluster transport needs at least one seed node")
        self._seeds = list(dict.fromkeys(seeds))
        self._pool_for = pool_for
        self._runner = runner
        self._breaker = breaker
        self._wait = wait
        self._max_batch = max_batch
        self._clients: dict[Address, Redis] = {}
        self._links: dict[Address, NodeLink] = {}
        #: Per-node failure counts and outages (a dead shard never stops the others).
        self.outages = NodeOutages(
            threshold=breaker.threshold,
            probe_interval=breaker.probe_interval,
            wait_limit=breaker.fail_fast_after,
            recovered=self._node_recovered,
        )
        self.slots = SlotMap()
        self._stale = True
        self._refresh_lock = asyncio.Lock()
        self._refreshes = 0
        self._batcher = Batcher(self._dispatch, max_batch=None, batching=batching)
        self._closed = False
        #: Pipelines sent, calls carried, sizes of the latest pipelines (all nodes).
        self.stats = stats if stats is not None else BatchStats()
        #: Pipelines per node.
        self.node_batches: collections.Counter[Address] = collections.Counter()
        self.redirects = 0

    # -- nodes and the slot map -------------------------------------------------------------

    def client(self, address: Address) -> Redis:
        """The pooled client of one node, made on first use."""
        client = self._clients.get(address)
        if client is None:
            client = self._clients[address] = Redis(connection_pool=self._pool_for(*address))
        return client

    def link(self, address: Address) -> NodeLink:
        """The round trips to one node, made on first use."""
        link = self._links.get(address)
        if link is None:
            report = NodeReport(self.outages, address, self._breaker, lambda: self.slots.primaries)
            link = self._links[address] = NodeLink(self.client(address), self._runner, report, self._wait)
        return link

    async def admin_client(self) -> Redis:
        """A client for a node-level command (INFO, CONFIG GET): the first primary known."""
        primaries = self.slots.primaries
        return self.client(primaries[0] if primaries else self._seeds[0])

    async def primaries(self) -> Sequence[Address]:
        """Every primary, from a fresh slot map."""
        await self.refresh(force=True)
        return self.slots.primaries

    async def topology(self) -> Literal["single", "cluster"] | None:
        return "cluster"

    def describe(self) -> dict[str, Any]:
        """The first seed node's address (each node has a pool of its own: see :meth:`pool_stats`)."""
        host, port = self._seeds[0]
        return {"server.address": host, "server.port": port, "db.namespace": "0"}

    def pool_stats(self) -> dict[str, PoolStats]:
        """Every node pool made so far (one per primary the store has talked to)."""
        clients = self._clients.items()
        return {f"{host}:{port}/0": pool_stats(client.connection_pool) for (host, port), client in clients}

    def _candidates(self) -> list[Address]:
        """Nodes to ask for the slot map: those that answered last first, so a dead or hung
        node is asked only when no other answers (not before every healthy caller's refresh)."""
        known = list(dict.fromkeys([*self.slots.primaries, *self._clients, *self._seeds]))
        return sorted(known, key=lambda address: address in self.failing)

    @property
    def failing(self) -> dict[Address, int]:
        """Consecutive failed round trips per node (absent: its last round trip answered)."""
        return self.outages.failing

    async def _node_recovered(self, address: Address) -> bool:
        """A down node's probe: it answers a PING, or a fresh slot map gives its slots to
        another node (a failover)."""
        with contextlib.suppress(Exception):
            await self.refresh(force=True)
        if address not in self.slots.primaries:
            return True
        await ping_fresh_connection(self.client(address))
        return True

    async def refresh(self, *, force: bool = False) -> None:
        """Load the slot map from the first node that answers ``CLUSTER SLOTS``; one refresh
        at a time (callers that waited for one in flight take its result)."""
        seen = self._refreshes
        async with self._refresh_lock:
            if not force and self._refreshes != seen and not self._stale:
                return
            last: BaseException | None = None
            for address in self._candidates():
                try:
                    # Not reported to the breaker: the probe refreshes too, and a reply from
                    # one node says nothing of the node the failing calls went to.
                    (reply,) = await round_trip(self.client(address), self._runner, [_CLUSTER_SLOTS])
                except Exception as exc:
                    if is_permission(exc):
                        raise _refused(exc) from exc
                    if not is_transient(exc):
                        raise
                    last = exc
                    continue
                if isinstance(reply, Exception):
                    if is_permission(reply):  # an ACL refusal is no outage: every node says the same
                        raise _refused(reply) from reply
                    last = reply
                    continue
                self.slots.load(reply, address)
                self._stale = False
                self._refreshes += 1
                return
            raise rexc.ConnectionError(f"no cluster node answered CLUSTER SLOTS: {last!r}") from last

    async def _ensure_map(self) -> None:
        if self._stale or not self.slots.loaded:
            await self.refresh()

    # -- sending ----------------------------------------------------------------------------

    def send(self, calls: Sequence[Call]) -> Awaitable[list[Any]]:
        """Send an operation's calls (queued for the next flush when batching); raise the
        first error reply."""
        return self._batcher.send(calls)

    async def _dispatch(self, items: list[Item], hops: int = 0) -> None:
        """Group items by node and send each group (in pipelines of at most ``max_batch``)."""
        try:
            await self._ensure_map()
        except Exception as exc:
            if is_transient(exc):
                self._breaker.record_failure()
            fail(items, exc)
            return
        groups: dict[Address, list[Item]] = collections.defaultdict(list)
        for item in items:
            address = self.slots.node_for(call_slot(item[0]))
            if address is None:
                self._stale = True
                fail([item], rexc.ClusterDownError(f"slot {call_slot(item[0])} is not served by any node"))
                continue
            groups[address].append(item)
        sends = [
            self._deliver(address, group[i : i + self._max_batch], hops)
            for address, group in groups.items()
            if not self.outages.is_down(address)
            for i in range(0, len(group), self._max_batch)
        ]
        sends += [
            self._after_outage(address, group, hops)
            for address, group in groups.items()
            if self.outages.is_down(address)
        ]
        await asyncio.gather(*sends)

    async def _after_outage(self, address: Address, items: list[Item], hops: int) -> None:
        """Calls for a node that is down wait for it (or for its slots to move), sending nothing."""
        if await self.outages.wait(address):
            await self._dispatch(items, hops)
            return
        host, port = address
        fail(
            items,
            rexc.ConnectionError(
                f"cluster node {host}:{port} did not answer within "
                f"{self.outages.wait_limit:g}s (retry_deadline); nothing was sent to it"
            ),
        )

    async def _deliver(self, address: Address, items: list[Item], hops: int, *, asking: bool = False) -> None:
        calls = [call for call, _ in items]
        wire = [c for call in calls for c in (_ASKING, call)] if asking else calls
        self.stats.record(calls)
        self.node_batches[address] += 1
        try:
            replies = await self.link(address).send_with_reload(wire)
        except asyncio.CancelledError:
            for _, future in items:
                future.cancel()
            raise
        except Exception as exc:  # the node is lost (or killed): every call of it failed
            if is_transient(exc):
                self._stale = True
            fail(items, exc)
            return
        if asking:
            replies = replies[1::2]
        moved: list[Item] = []
        asked: dict[Address, list[Item]] = collections.defaultdict(list)
        for item, reply in zip(items, replies, strict=True):
            if isinstance(reply, rexc.AskError) and hops < MAX_REDIRECTS:
                self.redirects += 1
                target = (reply.host or address[0], int(reply.port))
                if isinstance(reply, rexc.MovedError):
                    self.slots.update(int(reply.slot_id), target)
                    self._stale = True
                    moved.append(item)
                else:
                    asked[target].append(item)
                continue
            if isinstance(reply, (rexc.ClusterDownError, rexc.TryAgainError)):
                self._stale = True
            if not item[1].done():
                item[1].set_result(reply)
        follow = [self._deliver(target, group, hops + 1, asking=True) for target, group in asked.items()]
        if moved:
            follow.append(self._dispatch_known(moved, hops + 1))
        if follow:
            await asyncio.gather(*follow)

    async def _dispatch_known(self, items: list[Item], hops: int) -> None:
        """Resend after MOVED with the slots just learnt (the full refresh can wait)."""
        groups: dict[Address, list[Item]] = collections.defaultdict(list)
        for item in items:
            address = self.slots.node_for(call_slot(item[0]))
            assert address is not None  # just set from the MOVED reply
            groups[address].append(item)
        await asyncio.gather(*(self._deliver(a, g, hops) for a, g in groups.items()))

    async def send_to(self, address: Address, calls: Sequence[Call]) -> list[Any]:
        """Send calls to one node now, unbatched (a node-level command on every primary,
        such as ``FT.CREATE`` on each shard); raise the first error reply."""
        self.stats.record(calls)
        self.node_batches[address] += 1
        try:
            replies = await self.link(address).send_with_reload(calls)
        except Exception as exc:
            if is_transient(exc):
                self._stale = True
            raise
        return raise_first_error(replies)

    # -- breaker probe, recovery, close ----------------------------------------------------

    async def probe(self) -> None:
        """Pass once a fresh slot map names a primary that answers: the callers waiting for
        the healthy shards go on; a caller of a shard still down fails on its own."""
        await self.refresh(force=True)
        primaries = self.slots.primaries
        if not primaries:
            raise rexc.ClusterDownError("the cluster serves no slot")
        pings = await asyncio.gather(
            *(ping_fresh_connection(self.client(a)) for a in primaries), return_exceptions=True
        )
        for address, outcome in zip(primaries, pings, strict=True):
            if not isinstance(outcome, BaseException):
                self.outages.record_success(address)
        if all(isinstance(outcome, BaseException) for outcome in pings):
            raise next(o for o in pings if isinstance(o, BaseException))

    async def drop_idle(self) -> None:
        for client in list(self._clients.values()):
            await client.connection_pool.disconnect(inuse_connections=False)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._batcher.aclose()  # calls queued before the close are sent, not dropped
        await self.outages.aclose()
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                await client.aclose(close_connection_pool=True)


def _refused(exc: BaseException) -> MemoryPermissionError:
    error = MemoryPermissionError(
        f"the cluster refused this client CLUSTER SLOTS ({type(exc).__name__}: {exc}): a store on a "
        "Redis Cluster needs the rule `agentmem acl --cluster ...` prints (CLUSTER SLOTS, ASKING, INFO), "
        "applied on every node; not retried, nothing was written"
    )
    error.__cause__ = exc
    return error
