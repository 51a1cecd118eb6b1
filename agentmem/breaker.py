"""A circuit breaker: after repeated failures, fail fast for a cool-down instead of
making every agent wait out a timeout; then let one probe through (half-open)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from agentmem.errors import CircuitOpenError

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(str, enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts consecutive failed attempts; ``threshold=0`` disables it."""

    def __init__(
        self, *, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or self._clock() - self._opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def before_attempt(self, operation: str) -> None:
        """Raise :class:`CircuitOpenError` unless an attempt may be sent now."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True  # this caller is the one probe
            return
        assert self._opened_at is not None
        remaining = max(0.0, self.cooldown - (self._clock() - self._opened_at))
        raise CircuitOpenError(
            f"{operation}: circuit open after {self._failures} consecutive failures; "
            f"failing fast for another {remaining:.1f}s (nothing was sent)"
        )

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def release_probe(self) -> None:
        """The probe was cancelled before it could tell anything: let another caller probe."""
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        if self._probing or (self.threshold and self._failures >= self.threshold):
            self._opened_at = self._clock()
        self._probing = False
