"""Retries with exponential backoff, full jitter and a deadline, behind a circuit breaker.

The breaker is consulted before every attempt; it is fed by the sending layer
(:mod:`agentmem.pipeline`), once per round trip, so one lost pipeline carrying 200
callers counts as one failure, not 200.

This is the only retry layer: the pool a store builds is given a zero-retry policy so
redis-py does not retry underneath it (its default is 3 retries per command), and a
caller's own client is used as it is.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from agentmem._translate import is_transient, translate
from agentmem.breaker import CircuitBreaker
from agentmem.errors import AgentMemoryError

__all__ = ["Retrier", "RetryPolicy", "RetryStats", "backoff_delay"]

T = TypeVar("T")
log = logging.getLogger("agentmem")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int
    deadline: float
    base_delay: float
    max_delay: float


@dataclass(slots=True)
class RetryStats:
    """Counters a caller (or ``health()``, or the demo) can read."""

    attempts: int = 0
    retries: int = 0
    failures: int = 0


def backoff_delay(policy: RetryPolicy, retry_number: int, rand: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(max_delay, base * 2**n)]."""
    return float(rand()) * min(policy.max_delay, policy.base_delay * (2.0**retry_number))


class Retrier:
    def __init__(self, policy: RetryPolicy, breaker: CircuitBreaker) -> None:
        self.policy = policy
        self.breaker = breaker
        self.stats = RetryStats()

    async def run(self, operation: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or retries/deadline run out.

        Every call site passes an operation that is safe to send twice (the append
        script de-duplicates by an operation id), so a timeout that hid an applied
        write is harmless to retry.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.policy.deadline
        attempts = 0
        while True:
            self.breaker.before_attempt(operation)
            attempts += 1
            self.stats.attempts += 1
            try:
                result = await attempt()
            except asyncio.CancelledError:
                self.breaker.release_probe()
                raise
            except AgentMemoryError:
                self.breaker.release_probe()
                raise
            except Exception as exc:
                # The breaker was told by the exchange itself (one failure per round trip,
                # however many callers shared it); here only the probe slot is freed.
                self.breaker.release_probe()
                if not is_transient(exc):
                    raise translate(exc, operation=operation) from exc
                delay = backoff_delay(self.policy, attempts - 1)
                if attempts > self.policy.retries or loop.time() + delay > deadline:
                    self.stats.failures += 1
                    raise translate(exc, operation=operation, attempts=attempts) from exc
                self.stats.retries += 1
                log.warning(
                    "agentmem %s: %s: %s; retry %d/%d in %.3fs",
                    operation,
                    type(exc).__name__,
                    exc,
                    attempts,
                    self.policy.retries,
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                return result
