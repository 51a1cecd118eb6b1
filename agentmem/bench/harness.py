"""Measuring: concurrent workers for a time (or an op count), repeated, summarised by medians.

A *step* is one awaited unit of work by one worker: one operation for a contender that
sends one operation at a time, or a whole batch for a hand-pipelined contender. Every
operation of a step is recorded with the step's latency, since that is how long each
of them waited.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Budget",
    "Progress",
    "Sample",
    "Summary",
    "measure_async",
    "measure_sync",
    "percentile",
    "rate_in_process",
    "summarize",
]

#: A worker's step: given its worker index, do some work and return how many operations it did.
AsyncStep = Callable[[int], Awaitable[int]]
SyncStep = Callable[[], int]


@dataclass(frozen=True, slots=True)
class Budget:
    """How long one repetition runs: ``seconds`` of wall time, or ``ops`` operations when set."""

    seconds: float
    ops: int | None = None

    def scaled(self, factor: float) -> Budget:
        """A smaller budget for warm-up runs."""
        ops = None if self.ops is None else max(1, math.ceil(self.ops * factor))
        return Budget(seconds=self.seconds * factor, ops=ops)


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (``nan`` when empty)."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Sample:
    """One repetition: operations done, wall time, and per-operation latencies in seconds."""

    ops: int
    seconds: float
    p50: float
    p99: float
    #: CPU seconds per operation: this process (``time.process_time``) and the server
    #: (``INFO cpu``); ``None`` when not measured. Throughput on a shared machine moves with
    #: what else runs; CPU per operation is the steadier figure.
    client_cpu: float | None = None
    server_cpu: float | None = None

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else 0.0

    @classmethod
    def from_latencies(cls, ops: int, seconds: float, latencies: list[float]) -> Sample:
        latencies.sort()
        return cls(ops=ops, seconds=seconds, p50=percentile(latencies, 0.50), p99=percentile(latencies, 0.99))

    def as_dict(self) -> dict[str, float | None]:
        return {
            "ops": self.ops,
            "seconds": round(self.seconds, 6),
            "ops_per_s": round(self.ops_per_s, 1),
            "p50_ms": round(self.p50 * 1000, 4),
            "p99_ms": round(self.p99 * 1000, 4),
            "client_cpu_us": _micros(self.client_cpu),
            "server_cpu_us": _micros(self.server_cpu),
        }


def _micros(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1e6, 2)


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


@dataclass(frozen=True, slots=True)
class Summary:
    """Medians over repetitions: robust to one repetition disturbed by another process."""

    ops_per_s: float
    p50: float
    p99: float
    samples: tuple[Sample, ...]
    client_cpu: float | None = None
    server_cpu: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops_per_s": round(self.ops_per_s, 1),
            "p50_ms": round(self.p50 * 1000, 4),
            "p99_ms": round(self.p99 * 1000, 4),
            "client_cpu_us": _micros(self.client_cpu),
            "server_cpu_us": _micros(self.server_cpu),
            "repetitions": [s.as_dict() for s in self.samples],
        }


def summarize(samples: Sequence[Sample]) -> Summary:
    return Summary(
        ops_per_s=statistics.median(s.ops_per_s for s in samples),
        p50=statistics.median(s.p50 for s in samples),
        p99=statistics.median(s.p99 for s in samples),
        samples=tuple(samples),
        client_cpu=_median([s.client_cpu for s in samples]),
        server_cpu=_median([s.server_cpu for s in samples]),
    )


async def measure_async(step: AsyncStep, workers: int, ops_per_step: int, budget: Budget) -> Sample:
    """Run ``workers`` concurrent loops of ``step`` until the budget is spent."""
    latencies: list[float] = []
    done = 0
    claimed = 0
    clock = time.perf_counter
    start = clock()
    deadline = start + budget.seconds

    async def worker(index: int) -> None:
        nonlocal done, claimed
        while True:
            if budget.ops is not None:
                if claimed >= budget.ops:
                    return
                claimed += ops_per_step
            elif clock() >= deadline:
                return
            began = clock()
            count = await step(index)
            latency = clock() - began
            done += count
            if count == 1:
                latencies.append(latency)
            else:
                latencies.extend([latency] * count)

    tasks = [asyncio.ensure_future(worker(i)) for i in range(workers)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        # One worker failed: stop the others now, or they would run into the next scenario.
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return Sample.from_latencies(done, clock() - start, latencies)


def measure_sync(step: SyncStep, budget: Budget) -> Sample:
    """One thread calling ``step`` in a loop until the budget is spent."""
    latencies: list[float] = []
    done = 0
    clock = time.perf_counter
    start = clock()
    deadline = start + budget.seconds
    while (done < budget.ops) if budget.ops is not None else (clock() < deadline):
        began = clock()
        count = step()
        latencies.append(clock() - began)
        done += count
    return Sample.from_latencies(done, clock() - start, latencies)


def rate_in_process(work: Callable[[], object], seconds: float, *, chunk: int = 50) -> float:
    """Calls per second of ``work`` run back to back for about ``seconds``."""
    clock = time.perf_counter
    calls = 0
    start = clock()
    while True:
        for _ in range(chunk):
            work()
        calls += chunk
        elapsed = clock() - start
        if elapsed >= seconds:
            return calls / elapsed


class Progress:
    """One line per finished scenario on stderr, with the time elapsed (``step`` counts them
    out of ``total``; ``note`` only stamps the time)."""

    def __init__(self, enabled: bool, total: int = 0) -> None:
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.started = time.perf_counter()

    def note(self, text: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.started:6.1f}s] {text}", file=sys.stderr, flush=True)

    def step(self, text: str) -> None:
        self.done += 1
        self.note(f"{self.done:>2}/{self.total} {text}")
