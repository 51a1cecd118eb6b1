"""The circuit breaker's state machine, on a fake clock (no I/O involved)."""

from __future__ import annotations

import pytest

from agentmem import CircuitOpenError
from agentmem.breaker import BreakerState, CircuitBreaker


def state(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (keeps mypy from narrowing a property across calls)."""
    return breaker.state


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_and_half_opens_after_cooldown() -> None:
    """Closed -> open at threshold -> half-open after cooldown -> closed on success."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown=5.0, clock=clock)
    for _ in range(2):
        breaker.before_attempt("op")
        breaker.record_failure()
    assert state(breaker) is BreakerState.CLOSED
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    with pytest.raises(CircuitOpenError, match=r"5\.0s"):
        breaker.before_attempt("op")
    clock.now += 5.0
    assert state(breaker) is BreakerState.HALF_OPEN
    breaker.before_attempt("probe")  # the one probe goes through
    with pytest.raises(CircuitOpenError):
        breaker.before_attempt("second caller")  # others still fail fast
    breaker.record_success()
    assert state(breaker) is BreakerState.CLOSED
    breaker.before_attempt("op")


def test_failed_probe_reopens() -> None:
    """A failed probe opens the breaker for a full new cooldown."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=2.0, clock=clock)
    breaker.record_failure()
    clock.now += 2.0
    breaker.before_attempt("probe")
    breaker.record_failure()
    assert state(breaker) is BreakerState.OPEN
    clock.now += 1.9
    assert state(breaker) is BreakerState.OPEN


def test_cancelled_probe_lets_another_probe() -> None:
    """A probe that never reports (cancelled) does not wedge the breaker half-open forever."""
    clock = Clock()
    breaker = CircuitBreaker(threshold=1, cooldown=1.0, clock=clock)
    breaker.record_failure()
    clock.now += 1.0
    breaker.before_attempt("probe")
    breaker.release_probe()
    breaker.before_attempt("next probe")


def test_threshold_zero_disables() -> None:
    """threshold=0 never opens."""
    breaker = CircuitBreaker(threshold=0, cooldown=1.0)
    for _ in range(100):
        breaker.record_failure()
    breaker.before_attempt("op")
    assert state(breaker) is BreakerState.CLOSED
