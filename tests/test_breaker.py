"""The circuit breaker's state machine: its own prober, waiting callers, failing fast.

No server here: the probe is a plain coroutine the test controls, and the outage's
age comes from a fake clock. The same behaviour against a real server is in
``test_resilience.py`` and ``test_chaos.py``.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from agentmem.breaker import FIRST_PROBE_DELAY, BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Server:
    """What the probe sees: down until ``up`` is set; records when it was probed."""

    def __init__(self) -> None:
        self.up = False
        self.probed_at: list[float] = []

    async def probe(self) -> None:
        self.probed_at.append(asyncio.get_running_loop().time())
        if not self.up:
            raise ConnectionError("refused")


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (keeps mypy from narrowing a property across calls)."""
    return breaker.state


def deadline(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_opens_at_threshold_and_probes_by_itself() -> None:
    """Closed below the threshold; at it the breaker opens and probes without any caller."""
    server = Server()
    breaker = CircuitBreaker(threshold=3, fail_fast_after=2.0, probe_interval=0.1, probe=server.probe)
    for _ in range(2):
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    await asyncio.sleep(FIRST_PROBE_DELAY + 0.05)
    assert server.probed_at, "the breaker did not probe on its own"
    server.up = True
    await asyncio.sleep(0.15)
    assert state(breaker) is BreakerState.CLOSED
    assert breaker.opened == 1
    assert breaker.failed_probes >= 1
    await breaker.aclose()


async def test_waiting_callers_all_proceed_on_the_first_answer() -> None:
    """Callers within their deadline wait (none refused) and are released together by one probe."""
    server = Server()
    breaker = CircuitBreaker(threshold=1, fail_fast_after=2.0, probe_interval=0.05, probe=server.probe)
    breaker.record_failure()
    waiters = [
        asyncio.ensure_future(breaker.admit(deadline=deadline(2.0), new_caller=True)) for _ in range(20)
    ]
    await asyncio.sleep(0.1)
    assert not any(w.done() for w in waiters)
    server.up = True
    results = await asyncio.wait_for(asyncio.gather(*waiters), 1.0)
    assert results == ["go"] * 20
    assert breaker.fast_failures == 0
    await breaker.aclose()


async def test_probes_back_off_to_the_interval() -> None:
    """The first probe comes within tens of ms; later ones back off, never further apart than the interval."""
    server = Server()
    breaker = CircuitBreaker(threshold=1, fail_fast_after=2.0, probe_interval=0.2, probe=server.probe)
    opened = asyncio.get_running_loop().time()
    breaker.record_failure()
    await asyncio.sleep(1.5)
    times = [opened, *server.probed_at]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] < 0.08  # FIRST_PROBE_DELAY plus scheduling slack on a loaded machine
    assert gaps[-1] > gaps[1]  # backed off
    assert max(gaps) < 0.2 + 0.1  # never past the interval (plus scheduling slack)
    await breaker.aclose()


async def test_new_callers_fail_fast_only_once_the_outage_outlasts_the_deadline() -> None:
    """A new caller waits while the outage is younger than fail_fast_after, and is refused at once after."""
    clock = Clock()
    server = Server()
    breaker = CircuitBreaker(
        threshold=1, fail_fast_after=2.0, probe_interval=0.05, probe=server.probe, clock=clock
    )
    breaker.record_failure()
    assert await breaker.admit(deadline=deadline(0.05), new_caller=True) == "deadline"  # waited
    clock.now += 2.0
    assert state(breaker) is BreakerState.FAILING_FAST
    assert await breaker.admit(deadline=deadline(5.0), new_caller=True) == "fail_fast"
    # A caller already retrying still waits for the probe within its own deadline.
    retrying = asyncio.ensure_future(breaker.admit(deadline=deadline(5.0), new_caller=False))
    await asyncio.sleep(0.05)
    assert not retrying.done()
    server.up = True
    assert await asyncio.wait_for(retrying, 1.0) == "go"
    assert breaker.fast_failures == 1
    await breaker.aclose()


async def test_cancelled_waiter_disturbs_nobody() -> None:
    """Cancelling a waiting caller neither closes nor wedges the breaker; other waiters still proceed."""
    server = Server()
    breaker = CircuitBreaker(threshold=1, fail_fast_after=2.0, probe_interval=0.05, probe=server.probe)
    breaker.record_failure()
    cancelled = asyncio.ensure_future(breaker.admit(deadline=deadline(2.0), new_caller=True))
    other = asyncio.ensure_future(breaker.admit(deadline=deadline(2.0), new_caller=True))
    await asyncio.sleep(0.03)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert state(breaker) is BreakerState.OPEN
    server.up = True
    assert await asyncio.wait_for(other, 1.0) == "go"
    await breaker.aclose()


async def test_an_in_flight_success_closes_it() -> None:
    """A round trip sent before the breaker opened comes back: the breaker closes without a probe."""
    breaker = CircuitBreaker(threshold=1, fail_fast_after=2.0, probe_interval=0.5)  # no prober
    breaker.record_failure()
    waiter = asyncio.ensure_future(breaker.admit(deadline=deadline(2.0), new_caller=True))
    breaker.record_success()
    assert await asyncio.wait_for(waiter, 1.0) == "go"
    assert state(breaker) is BreakerState.CLOSED
    await breaker.aclose()


async def test_on_recover_runs_before_the_callers_are_released() -> None:
    """The recovery hook (the store drops idle pooled connections there) runs before waiters go."""
    server = Server()
    order: list[str] = []

    async def on_recover() -> None:
        order.append("recover")

    breaker = CircuitBreaker(
        threshold=1, fail_fast_after=2.0, probe_interval=0.05, probe=server.probe, on_recover=on_recover
    )
    breaker.record_failure()

    async def caller() -> None:
        assert await breaker.admit(deadline=deadline(2.0), new_caller=True) == "go"
        order.append("caller")

    task = asyncio.ensure_future(caller())
    server.up = True
    await asyncio.wait_for(task, 1.0)
    assert order == ["recover", "caller"]
    await breaker.aclose()


async def test_a_slow_on_recover_finishes_before_the_callers_are_released() -> None:
    """A recovery hook that yields (as dropping connections does) still ends before any waiter goes."""
    server = Server()
    order: list[str] = []

    async def on_recover() -> None:
        order.append("recover started")
        await asyncio.sleep(0.05)
        order.append("recover done")

    breaker = CircuitBreaker(
        threshold=1, fail_fast_after=2.0, probe_interval=0.05, probe=server.probe, on_recover=on_recover
    )
    breaker.record_failure()

    async def caller(i: int) -> None:
        assert await breaker.admit(deadline=deadline(2.0), new_caller=True) == "go"
        order.append(f"caller {i}")

    tasks = [asyncio.ensure_future(caller(i)) for i in range(3)]
    await asyncio.sleep(0.03)
    server.up = True
    await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
    assert order[:2] == ["recover started", "recover done"]
    assert sorted(order[2:]) == ["caller 0", "caller 1", "caller 2"]
    await breaker.aclose()


async def test_threshold_zero_disables() -> None:
    """threshold=0 never opens, whatever fails."""
    breaker = CircuitBreaker(threshold=0, fail_fast_after=2.0, probe_interval=0.5)
    for _ in range(100):
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    assert await breaker.admit(deadline=deadline(0.0), new_caller=True) == "go"


async def test_aclose_stops_probing_and_releases_waiters() -> None:
    """Closing the store's breaker ends its prober and lets waiters return at once."""
    server = Server()
    breaker = CircuitBreaker(threshold=1, fail_fast_after=2.0, probe_interval=0.05, probe=server.probe)
    breaker.record_failure()
    waiter = asyncio.ensure_future(breaker.admit(deadline=deadline(5.0), new_caller=True))
    await asyncio.sleep(0.05)
    await breaker.aclose()
    await asyncio.wait_for(waiter, 1.0)
    probes = len(server.probed_at)
    await asyncio.sleep(0.15)
    assert len(server.probed_at) == probes
