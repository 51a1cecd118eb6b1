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
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from agentmem._translate import is_transient, translate
from agentmem.breaker import CircuitBreaker
from agentmem.errors import AgentMemoryError, CircuitOpenError, MemoryUnavailableError

if TYPE_CHECKING:
    from agentmem.calls import Call, SendObserver, Transport
    from agentmem.config import StoreConfig

__all__ = ["Retrier", "RetryPolicy", "RetryStats", "RetryingSender", "backoff_delay"]

T = TypeVar("T")
log = logging.getLogger("agentmem")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int
    deadline: float
    base_delay: float
    max_delay: float

    @classmethod
    def of(cls, config: StoreConfig) -> RetryPolicy:
        return cls(config.retries, config.retry_deadline, config.retry_base_delay, config.retry_max_delay)


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

    async def run(
        self,
        operation: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        failed: Exception | None = None,
        started: float | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds, fails for good, or retries/deadline run out.

        Every call site passes an operation that is safe to send twice (the append
        script de-duplicates by an operation id), so a timeout that hid an applied
        write is harmless to retry. While the breaker is open the caller does not
        back off on its own: it waits for the breaker's probe, up to the deadline.

        ``failed``: the caller already made the first attempt (counted in ``stats``),
        started at ``started`` (``time.monotonic()``, the clock of asyncio's loop), and it
        raised this: go on from there, under the same deadline.
        """
        loop = asyncio.get_running_loop()
        deadline = (loop.time() if started is None else started) + self.policy.deadline
        attempts = 0
        last: Exception | None = None
        if failed is not None:
            attempts, last = 1, failed
            delay = self._after_failure(operation, failed, attempts, deadline)
            if not self.breaker.is_open:
                await asyncio.sleep(delay)
        while True:
            # Closed breaker: no admission to wait for (the common case, kept cheap).
            admission = (
                "go"
                if not self.breaker.is_open
                else await self.breaker.admit(deadline=deadline, new_caller=attempts == 0)
            )
            if admission != "go":
                self.stats.failures += 1
                raise self._refused(operation, attempts, last, waited=admission == "deadline")
            attempts += 1
            self.stats.attempts += 1
            try:
                return await attempt()
            except AgentMemoryError:
                raise
            except Exception as exc:
                last = exc
                delay = self._after_failure(operation, exc, attempts, deadline)
                if not self.breaker.is_open:
                    await asyncio.sleep(delay)

    def _after_failure(self, operation: str, exc: Exception, attempts: int, deadline: float) -> float:
        """After attempt number ``attempts`` raised ``exc``: the delay before the next one, or
        the typed error raised when there is none (not transient, retries or deadline spent).

        The breaker was told by the exchange itself: one failure per round trip, however
        many callers shared it.
        """
        if not is_transient(exc):
            raise translate(exc, operation=operation) from exc
        delay = backoff_delay(self.policy, attempts - 1)
        if attempts > self.policy.retries or asyncio.get_running_loop().time() + delay > deadline:
            self.stats.failures += 1
            raise translate(exc, operation=operation, attempts=attempts) from exc
        self.stats.retries += 1
        log.warning(
            "agentmem %s: %s: %s; retry %d/%d%s",
            operation,
            type(exc).__name__,
            exc,
            attempts,
            self.policy.retries,
            " when the server answers" if self.breaker.is_open else f" in {delay:.3f}s",
        )
        return delay

    def _refused(
        self, operation: str, attempts: int, last: Exception | None, *, waited: bool
    ) -> MemoryUnavailableError:
        """The error for a caller the open breaker did not let through."""
        outage = self.breaker.outage_seconds
        if attempts == 0:
            how = (
                f"waited {self.policy.deadline:g}s (retry_deadline) for the server to answer a probe"
                if waited
                else f"failing fast: the outage is older than retry_deadline={self.policy.deadline:g}s"
            )
            return CircuitOpenError(
                f"{operation}: Redis unreachable for {outage:.1f}s; {how}; nothing was sent. "
                f"The store keeps probing and resumes by itself when the server answers"
            )
        error = translate(last, operation=operation, attempts=attempts) if last else None
        # The operation is named once, at the head: not again in the translated cause.
        detail = f": {str(error).removeprefix(f'{operation}: ')}" if error is not None else ""
        refused = MemoryUnavailableError(
            f"{operation}: Redis unreachable within retry_deadline={self.policy.deadline:g}s "
            f"({attempts} attempts, then waited for the server){detail}"
        )
        refused.__cause__ = last
        return refused


class RetryingSender:
    """One operation's calls through a transport, retried as a whole by a :class:`Retrier`.

    The common case, one attempt that succeeds, is made without the retrier's coroutine
    and its closure (µs per call at 64 agents): while the breaker is closed and no
    observer watches, the first attempt goes straight to the transport, and a failure
    goes on through the retrier as its first attempt, under the same deadline. Every
    attempt first calls ``guard(operation, retry)``, which raises when the store was
    closed, so neither a new call nor a retry of one in flight reconnects a closed store.
    ``bulk(operation, calls)`` refuses an argument longer than the server takes, before
    any I/O (see :mod:`agentmem.bulk`).
    """

    def __init__(
        self,
        retrier: Retrier,
        transport: Transport,
        guard: Callable[[str, bool], None],
        *,
        bulk: Callable[[str, Sequence[Call]], Awaitable[None]] | None = None,
        observer: SendObserver | None = None,
    ) -> None:
        self.retrier = retrier
        self.transport = transport
        self.observer = observer
        self._guard = guard
        self._bulk = bulk
        self._breaker = retrier.breaker

    async def send(self, operation: str, calls: Sequence[Call], node: Any = None) -> list[Any]:
        """The replies in call order (``node``: one node named by ``transport.primaries()``)."""
        if self.observer is not None:
            return await self._observed(self.observer, operation, calls, node)
        self._guard(operation, False)
        if self._bulk is not None:
            await self._bulk(operation, calls)
        if node is None and not self._breaker.is_open:
            started = time.monotonic()
            self.retrier.stats.attempts += 1
            try:
                return await self.transport.send(calls)
            except AgentMemoryError:
                raise
            except Exception as exc:
                return await self._retried(operation, calls, node, None, failed=exc, started=started)
        return await self._retried(operation, calls, node, None)

    async def _observed(
        self, observer: SendObserver, operation: str, calls: Sequence[Call], node: Any
    ) -> list[Any]:
        scope = observer.start(operation, calls)
        error: BaseException | None = None
        try:
            self._guard(operation, False)
            if self._bulk is not None:
                await self._bulk(operation, calls)
            return await self._retried(operation, calls, node, scope)
        except BaseException as exc:
            error = exc
            raise
        finally:
            observer.end(scope, error)

    async def _retried(
        self,
        operation: str,
        calls: Sequence[Call],
        node: Any,
        scope: Any,
        *,
        failed: Exception | None = None,
        started: float | None = None,
    ) -> list[Any]:
        transport, guard, observer = self.transport, self._guard, self.observer
        attempts = 0 if failed is None else 1

        async def attempt() -> list[Any]:
            nonlocal attempts
            guard(operation, attempts > 0)
            sent = [call.retry or call for call in calls] if attempts else calls  # a retry's form
            attempts += 1
            if observer is not None:
                observer.attempt(scope)
            if node is None:
                return await transport.send(sent)
            return await transport.send_to(node, sent)

        return await self.retrier.run(operation, attempt, failed=failed, started=started)
