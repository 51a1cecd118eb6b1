"""Per-node outages of a Redis Cluster, for :class:`~agentmem.cluster.ClusterTransport`.

A store-wide circuit breaker opened by one dead primary would stop the callers of every
shard. Instead each node's failed round trips are counted here: after ``threshold``
consecutive ones the node is *down*; its callers wait (without sending, up to
``wait_limit``, the store's ``retry_deadline``) until a prober sees it answer again or the
slot map move its slots elsewhere (a failover), while the callers of the other nodes go
on. The store's breaker hears of a failure only while every primary is failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from agentmem.breaker import FIRST_PROBE_DELAY, PROBE_BACKOFF
from agentmem.calls import FailureSink

__all__ = ["NodeOutages", "NodeReport"]

log = logging.getLogger("agentmem")

Address = tuple[str, int]


class NodeOutages:
    """Failure counts and outages of a cluster's nodes.

    ``recovered(address)`` is the probe: ``True`` once the node answers (or no longer
    serves slots); it may raise, which counts as ``False``.
    """

    def __init__(
        self,
        *,
        threshold: int,
        probe_interval: float,
        wait_limit: float,
        recovered: Callable[[Address], Awaitable[bool]],
    ) -> None:
        self.threshold = threshold
        self.probe_interval = probe_interval
        self.wait_limit = wait_limit
        self._recovered = recovered
        #: Consecutive failed round trips per node (absent: its last round trip answered).
        self.failing: dict[Address, int] = {}
        self._down: dict[Address, asyncio.Event] = {}
        self._probers: dict[Address, asyncio.Task[None]] = {}

    def is_down(self, address: Address) -> bool:
        return address in self._down

    def record_failure(self, address: Address) -> None:
        count = self.failing[address] = self.failing.get(address, 0) + 1
        if self.threshold and count >= self.threshold and address not in self._down:
            log.warning(
                "agentmem: cluster node %s:%d failed %d round trips in a row; its callers wait "
                "for it while the other nodes serve",
                *address,
                count,
            )
            self._down[address] = asyncio.Event()
            self._probers[address] = asyncio.ensure_future(self._probe(address))

    def record_success(self, address: Address) -> None:
        self.failing.pop(address, None)
        self._end(address)

    async def wait(self, address: Address) -> bool:
        """Wait until the node's outage ends; ``False`` after ``wait_limit`` without it."""
        event = self._down.get(address)
        if event is None:
            return True
        try:
            await asyncio.wait_for(event.wait(), self.wait_limit)
        except asyncio.TimeoutError:
            return False
        return True

    def _end(self, address: Address) -> None:
        event = self._down.pop(address, None)
        prober = self._probers.pop(address, None)
        if prober is not None and prober is not asyncio.current_task():
            prober.cancel()
        if event is not None:
            event.set()

    async def _probe(self, address: Address) -> None:
        delay = FIRST_PROBE_DELAY
        while True:
            await asyncio.sleep(delay)
            answered = False
            with contextlib.suppress(Exception):
                answered = await self._recovered(address)
            if answered:
                break
            delay = min(delay * PROBE_BACKOFF, self.probe_interval)
        log.warning("agentmem: cluster node %s:%d answers again (or its slots moved)", *address)
        self.failing.pop(address, None)
        self._end(address)

    async def aclose(self) -> None:
        """Stop probing and release every waiter (it will find the store closed)."""
        probers = list(self._probers.values())
        for address in list(self._down):
            self._end(address)
        for prober in probers:
            prober.cancel()
        await asyncio.gather(*probers, return_exceptions=True)


class NodeReport:
    """One node's round trips, reported per node (a :class:`~agentmem.calls.FailureSink`
    for its :class:`~agentmem.wire.NodeLink`): the store's ``breaker`` hears of a failure
    only when every primary is failing (the cluster is unreachable), so a dead or hung
    shard never opens it for the healthy ones; any answer is a success for both."""

    __slots__ = ("_address", "_breaker", "_outages", "_primaries")

    def __init__(
        self,
        outages: NodeOutages,
        address: Address,
        breaker: FailureSink,
        primaries: Callable[[], Sequence[Address]],
    ) -> None:
        self._outages = outages
        self._address = address
        self._breaker = breaker
        self._primaries = primaries

    def record_failure(self) -> None:
        outages = self._outages
        outages.record_failure(self._address)
        primaries = self._primaries() or [self._address]
        if all(address in outages.failing for address in primaries):
            self._breaker.record_failure()

    def record_success(self) -> None:
        self._outages.record_success(self._address)
        self._breaker.record_success()
