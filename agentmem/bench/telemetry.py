"""``agentmem bench --telemetry``: what ``telemetry=True`` costs, in client CPU per operation.

Throughput on a shared machine is noisy; the CPU time this process spends per store
operation is not (the server is another process). Three modes, each measured in
repetitions interleaved with ``off`` so drift hits both alike:

* ``off``: the default store (``telemetry=False``);
* ``api``: ``telemetry=True`` with no SDK installed as the global provider (what a
  library user pays when the application exports nothing): no-op spans and metrics;
* ``sdk``: ``telemetry=True`` with the OpenTelemetry SDK as the global providers: every
  span is built, batched and handed to an exporter (one that drops them, so the
  exporter's own cost is not counted), every metric recorded in a reader.

Operations are ``save_context`` + ``load_context`` pairs of the ~4 KB benchmark context.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from agentmem import AgentMemoryStore
from agentmem.bench.probes import delete_keys
from agentmem.bench.workload import CONTEXT
from agentmem.testing.embedded import embedded_server

__all__ = ["format_telemetry", "run_telemetry", "telemetry_overhead"]

CONCURRENCY = (1, 64)
#: Store operations per measurement (half saves, half loads) and measurements per mode.
OPS = 4000
QUICK_OPS = 400
REPETITIONS = 5
QUICK_REPETITIONS = 2
#: Sessions each task cycles through, so the server's data stays small and warm.
SESSIONS_PER_TASK = 4
RESULTS_NAME = "telemetry.json"


async def _measure(store: AgentMemoryStore, concurrency: int, ops: int) -> tuple[float, float]:
    """``(CPU µs per operation, operations per second)`` of ``ops`` operations."""
    pairs = max(1, ops // (2 * concurrency))

    async def task(worker: int) -> None:
        for i in range(pairs):
            session = f"t{worker}-{i % SESSIONS_PER_TASK}"
            await store.save_context(session, CONTEXT)
            await store.load_context(session)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(task(w) for w in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = 2 * pairs * concurrency
    return cpu / done * 1e6, done / wall


async def _compare(url: str, prefix: str, mode: str, ops: int, repetitions: int) -> list[dict[str, Any]]:
    """``off`` and ``mode`` (telemetry on), interleaved, at each concurrency."""
    rows: list[dict[str, Any]] = []
    stores = {
        "off": AgentMemoryStore.from_url(url, prefix=f"{prefix}:off"),
        mode: AgentMemoryStore.from_url(url, prefix=f"{prefix}:{mode}", telemetry=True),
    }
    try:
        for concurrency in CONCURRENCY:
            samples: dict[str, list[tuple[float, float]]] = {name: [] for name in stores}
            for store in stores.values():  # warm-up: connections, script loads
                await _measure(store, concurrency, max(ops // 4, 2 * concurrency))
            for _ in range(repetitions):
                for name, store in stores.items():
                    samples[name].append(await _measure(store, concurrency, ops))
            for name, measured in samples.items():
                rows.append(
                    {
                        "mode": name,
                        "concurrency": concurrency,
                        "cpu_us_per_op": round(statistics.median(m[0] for m in measured), 2),
                        "ops_per_s": round(statistics.median(m[1] for m in measured)),
                        "samples_cpu_us": [round(m[0], 2) for m in measured],
                    }
                )
    finally:
        for store in stores.values():
            await store.aclose()
    return rows


def _install_sdk() -> str | None:
    """Set the SDK as the global providers; why not, when it cannot be."""
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    except ImportError as exc:
        return f"needs the OpenTelemetry SDK: pip install 'agentmem-redis[otel]' opentelemetry-sdk ({exc})"

    class DropSpans(SpanExporter):
        """Exports nothing: what is measured is the SDK's own cost, not an exporter's."""

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
    return None


async def telemetry_overhead(url: str, *, ops: int, repetitions: int) -> dict[str, Any]:
    """Rows of CPU per operation and throughput, off vs ``api`` and off vs ``sdk``."""
    prefix = f"agentmem-bench-{secrets.token_hex(4)}"
    results: dict[str, Any] = {"key_prefix": prefix, "ops": ops, "repetitions": repetitions, "rows": []}
    try:
        try:
            import opentelemetry.sdk  # noqa: F401
            from opentelemetry import trace
        except ImportError as exc:
            results["skipped"] = f"needs pip install 'agentmem-redis[otel]' opentelemetry-sdk ({exc})"
            return results

        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            # The API-only comparison first: once the SDK is the global provider it stays so.
            results["rows"] += await _compare(url, prefix, "api", ops, repetitions)
            why_not = _install_sdk()
            if why_not is not None:
                results["skipped"] = f"sdk mode: {why_not}"
                return results
        else:
            results["note"] = "measured with the tracer provider this process had already set; no api mode"
        results["rows"] += await _compare(url, prefix, "sdk", ops, repetitions)
    finally:
        results["keys_deleted"] = await delete_keys(url, prefix)
    return results


def format_telemetry(results: dict[str, Any]) -> str:
    """The table: CPU per operation of each mode next to the ``off`` run it was interleaved with."""
    lines = [
        f"telemetry overhead: save_context + load_context of the ~4 KB context, {results['ops']} ops "
        f"x {results['repetitions']} interleaved repetitions, medians",
        f"{'mode':<6} {'tasks':>5} {'CPU us/op':>10} {'vs off':>8} {'ops/s':>8}",
    ]
    rows = results["rows"]
    for i, row in enumerate(rows):
        base = next(
            (r for r in reversed(rows[:i]) if r["mode"] == "off" and r["concurrency"] == row["concurrency"]),
            None,
        )
        delta = (
            f"{row['cpu_us_per_op'] - base['cpu_us_per_op']:+.1f}" if base and row["mode"] != "off" else ""
        )
        lines.append(
            f"{row['mode']:<6} {row['concurrency']:>5} {row['cpu_us_per_op']:>10.1f} {delta:>8} "
            f"{row['ops_per_s']:>8}"
        )
    for key in ("note", "skipped"):
        if key in results:
            lines.append(f"{key}: {results[key]}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def _server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    with embedded_server() as server:
        yield server.url


def run_telemetry(url: str | None, *, quick: bool, ops: int | None, repeat: int | None, out: Path) -> int:
    """``agentmem bench --telemetry``: print the overhead table, write ``telemetry.json``."""
    ops = ops or (QUICK_OPS if quick else OPS)
    repetitions = repeat or (QUICK_REPETITIONS if quick else REPETITIONS)
    with _server(url) as server_url:
        results = asyncio.run(telemetry_overhead(server_url, ops=ops, repetitions=repetitions))
    results["python"] = sys.version.split()[0]
    out.mkdir(parents=True, exist_ok=True)
    path = out / RESULTS_NAME
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(format_telemetry(results), end="")
    print(f"results: {path}")
    return 0
