"""A circuit breaker that turns an outage into fast failures without turning a blip into one.

Closed, every attempt goes through. After ``threshold`` consecutive failed round trips
(one lost pipeline counts once, however many callers shared it) the breaker opens:

* no caller sends anything while it is open; the breaker probes the server by itself
  (a PING on a fresh connection, see :mod:`agentmem.probe`), the first probe after
  :data:`FIRST_PROBE_DELAY`, then backing off to at most ``probe_interval``;
* a caller whose own retry deadline has not run out *waits* for the probe, and every
  waiter proceeds the moment one probe is answered, so a 0.2 s restart costs the
  agents 0.2 s of latency, not an error;
* only once the outage has lasted longer than ``fail_fast_after`` (the store's
  ``retry_deadline``) does a *new* caller fail fast with
  :class:`~agentmem.CircuitOpenError`, having sent nothing.

There is no half-open state in which one caller is the probe and everybody else is
refused: the breaker's own prober is the probe.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

__all__ = ["FIRST_PROBE_DELAY", "Admission", "BreakerState", "CircuitBreaker"]

log = logging.getLogger("agentmem")

#: Seconds from the breaker opening to its first probe: a connection kill or a fast
#: restart is over within tens of milliseconds, so the first look comes early.
FIRST_PROBE_DELAY = 0.02
#: Each failed probe waits this much longer than the last, up to ``probe_interval``.
PROBE_BACKOFF = 1.5

Admission = Literal["go", "fail_fast", "deadline"]
Probe = Callable[[], Awaitable[object]]
Hook = Callable[[], Awaitable[object]]


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    #: Probing; callers within their retry deadline wait for the first answer.
    OPEN = "open"
    #: Still probing, and the outage is older than ``fail_fast_after``: new callers fail fast.
    FAILING_FAST = "failing_fast"


class CircuitBreaker:
    """Counts consecutive failed round trips; ``threshold=0`` disables it.

    ``probe`` is awaited to learn whether the server answers again; it raises while the
    server is unreachable. ``on_recover`` runs once after a probe succeeded and before
    the waiting callers are released (the store drops idle pooled connections there:
    after a restart they are all dead).
    """

    def __init__(
        self,
        *,
        threshold: int,
        fail_fast_after: float,
        probe_interval: float,
        probe: Probe | None = None,
        on_recover: Hook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.fail_fast_after = fail_fast_after
        self.probe_interval = probe_interval
        self._probe = probe
        self._on_recover = on_recover
        self._clock = clock
        self._failures = 0
        self._first_failure_at: float | None = None
        #: Set while open; set() releases every waiting caller at once.
        self._recovered: asyncio.Event | None = None
        self._prober: asyncio.Task[None] | None = None
        self._recovering = False
        self._closed_for_good = False
        #: Times the breaker opened, probes that failed, callers failed fast.
        self.opened = 0
        self.failed_probes = 0
        self.fast_failures = 0

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        if self._recovered is None:
            return BreakerState.CLOSED
        if self.outage_seconds >= self.fail_fast_after:
            return BreakerState.FAILING_FAST
        return BreakerState.OPEN

    @property
    def is_open(self) -> bool:
        return self._recovered is not None

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def outage_seconds(self) -> float:
        """Seconds since the first of the current run of failed round trips (0 when none)."""
        if self._first_failure_at is None:
            return 0.0
        return self._clock() - self._first_failure_at

    # -- fed by the sending layer, once per round trip ----------------------------------

    def record_failure(self) -> None:
        self._failures += 1
        if self._first_failure_at is None:
            self._first_failure_at = self._clock()
        if (
            self.threshold
            and self._failures >= self.threshold
            and self._recovered is None
            and not self._closed_for_good
        ):
            self._open()

    def record_success(self) -> None:
        self._failures = 0
        self._first_failure_at = None
        if self._recovered is not None and not self._recovering:
            # A round trip sent before the breaker opened came back: the server answers.
            if self._prober is not None:
                self._prober.cancel()
            self._prober = asyncio.ensure_future(self._recover())

    # -- consulted before every attempt -------------------------------------------------

    async def admit(self, *, deadline: float, new_caller: bool) -> Admission:
        """Wait until an attempt may be sent: ``"go"``, or why not (nothing was sent).

        A new caller is refused at once (``"fail_fast"``) when the outage is older than
        ``fail_fast_after``; otherwise a caller waits for the server to answer a probe,
        up to its own ``deadline`` (loop time), and gets ``"deadline"`` if it does not.
        """
        recovered = self._recovered
        if recovered is None:
            return "go"
        if new_caller and self.outage_seconds >= self.fail_fast_after:
            self.fast_failures += 1
            return "fail_fast"
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return "deadline"
        try:
            await asyncio.wait_for(recovered.wait(), remaining)
        except asyncio.TimeoutError:
            return "deadline"
        return "go"

    # -- opening, probing, recovering ---------------------------------------------------

    def _open(self) -> None:
        self._recovered = asyncio.Event()
        self.opened += 1
        log.warning(
            "agentmem: circuit open after %d consecutive failed round trips; probing the server",
            self._failures,
        )
        if self._probe is not None:
            self._prober = asyncio.ensure_future(self._probe_until_answered())

    async def _probe_until_answered(self) -> None:
        assert self._probe is not None
        delay = FIRST_PROBE_DELAY
        while True:
            await asyncio.sleep(delay)
            try:
                await self._probe()
            except Exception as exc:  # still unreachable: look again, a little later
                self.failed_probes += 1
                log.debug("agentmem: probe failed: %s: %s", type(exc).__name__, exc)
                delay = min(delay * PROBE_BACKOFF, self.probe_interval)
                continue
            break
        await self._recover()

    async def probe_now(self) -> bool:
        """Probe once, now, when open (a caller that must not wait for the next scheduled
        probe, such as ``flush_journal()``); closes the breaker and returns ``True`` when
        the server answered, ``True`` at once when closed."""
        if self._recovered is None:
            return True
        if self._probe is None:
            return False
        try:
            await self._probe()
        except Exception as exc:
            self.failed_probes += 1
            log.debug("agentmem: probe failed: %s: %s", type(exc).__name__, exc)
            return False
        await self._recover()
        return True

    async def _recover(self) -> None:
        recovered = self._recovered
        if recovered is None or self._recovering:
            return
        self._recovering = True
        outage = self.outage_seconds
        try:
            if self._on_recover is not None:
                await self._on_recover()
        except Exception as exc:  # the waiters reconnect on their own if this fails
            log.warning("agentmem: dropping idle connections after the outage failed: %s", exc)
        finally:
            self._recovering = False
        self._failures = 0
        self._first_failure_at = None
        self._recovered = None
        self._prober = None
        recovered.set()
        log.warning("agentmem: server answers again after %.3fs; circuit closed", outage)

    async def aclose(self) -> None:
        """Stop probing and release every waiting caller (they will find the store closed)."""
        self._closed_for_good = True
        prober, self._prober = self._prober, None
        if prober is not None and not prober.done():
            prober.cancel()
            await asyncio.gather(prober, return_exceptions=True)
        recovered, self._recovered = self._recovered, None
        if recovered is not None:
            recovered.set()
