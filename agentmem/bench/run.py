"""``agentmem bench``: agentmem and hand-written Redis code, side by side (``python -m benchmarks``
in a checkout runs the same).

One run, one server, every contender: agentmem (with and without auto-pipelining), the
same work on redis.asyncio one command at a time and hand-pipelined, and a synchronous
tutorial-style store; then a pool-size sweep, round trips per call, server memory per
session and json-vs-orjson encoding. It prints a table, writes JSON (and a PNG when
matplotlib is installed) and deletes every key it wrote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import math
import secrets
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.asyncio import Redis

from agentmem.bench.chart import MISSING_MATPLOTLIB, chart_available, draw_chart
from agentmem.bench.contenders import (
    CONTENDER_NOTES,
    DEFAULT_POOL_SIZE,
    PIPELINE_BATCH,
    AgentMem,
    Contender,
    Measure,
    standard_contenders,
)
from agentmem.bench.encoding import encoding_benchmark
from agentmem.bench.harness import Budget, Sample, summarize
from agentmem.bench.machine import machine_info, server_info
from agentmem.bench.memory import format_memory, memory_per_session
from agentmem.bench.probes import delete_keys, round_trips, session_memory
from agentmem.bench.recall import add_arguments as recall_arguments
from agentmem.bench.recall import run_recall
from agentmem.bench.report import compute_ratios, format_report
from agentmem.bench.telemetry import run_telemetry
from agentmem.bench.workload import OPERATIONS
from agentmem.testing.embedded import NoServerBinaryError, embedded_server

__all__ = ["Settings", "main"]

FULL_CONCURRENCY = (1, 8, 64, 256)
QUICK_CONCURRENCY = (1, 64)
FULL_POOL_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
QUICK_POOL_SIZES = (1, 8, 64)
FULL_SWEEP_CONCURRENCY = 256
QUICK_SWEEP_CONCURRENCY = 64
#: The operation the pool sweep runs: a write and a read per step.
SWEEP_OPERATION = "pair"
#: Measured seconds per scenario, split over the repetitions (~100 scenarios in a full run).
FULL_SECONDS = 1.2
QUICK_SECONDS = 0.06
FULL_REPETITIONS = 3
QUICK_REPETITIONS = 2
#: Warm-up before each scenario, as a fraction of one repetition (connections, script loads).
WARMUP_FRACTION = 0.25
FULL_ROUND_TRIP_CALLS = 50
QUICK_ROUND_TRIP_CALLS = 10
FULL_MEMORY_SESSIONS = 32
QUICK_MEMORY_SESSIONS = 4
#: In-process seconds per codec measurement (encode or decode) per repetition.
FULL_ENCODING_SECONDS = 0.25
QUICK_ENCODING_SECONDS = 0.02
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
RESULTS_NAME = "latest.json"
MEMORY_NAME = "memory.json"
#: Sessions ``--memory`` writes per layout (``--quick``: a smoke-sized run).
FULL_MEMORY_RUN_SESSIONS = 10_000
QUICK_MEMORY_RUN_SESSIONS = 200
CHART_NAME = "latest.png"
SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run's size depends on."""

    quick: bool
    concurrency: tuple[int, ...]
    pool_sizes: tuple[int, ...]
    sweep_concurrency: int
    repetitions: int
    budget: Budget
    round_trip_calls: int
    memory_sessions: int
    encoding_seconds: float
    out: Path
    chart: bool
    progress: bool

    @property
    def warmup(self) -> Budget:
        return self.budget.scaled(WARMUP_FRACTION)

    @property
    def sessions(self) -> int:
        return max(*self.concurrency, self.sweep_concurrency)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        quick: bool = args.quick
        repetitions: int = args.repeat or (QUICK_REPETITIONS if quick else FULL_REPETITIONS)
        seconds: float = args.duration or (QUICK_SECONDS if quick else FULL_SECONDS)
        ops = None if args.ops is None else max(1, math.ceil(args.ops / repetitions))
        return cls(
            quick=quick,
            concurrency=QUICK_CONCURRENCY if quick else FULL_CONCURRENCY,
            pool_sizes=QUICK_POOL_SIZES if quick else FULL_POOL_SIZES,
            sweep_concurrency=QUICK_SWEEP_CONCURRENCY if quick else FULL_SWEEP_CONCURRENCY,
            repetitions=repetitions,
            budget=Budget(seconds=seconds / repetitions, ops=ops),
            round_trip_calls=QUICK_ROUND_TRIP_CALLS if quick else FULL_ROUND_TRIP_CALLS,
            memory_sessions=QUICK_MEMORY_SESSIONS if quick else FULL_MEMORY_SESSIONS,
            encoding_seconds=QUICK_ENCODING_SECONDS if quick else FULL_ENCODING_SECONDS,
            out=Path(args.out),
            chart=not args.no_chart,
            progress=not args.quiet,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "concurrency": list(self.concurrency),
            "repetitions": self.repetitions,
            "seconds_per_repetition": self.budget.seconds,
            "ops_per_repetition": self.budget.ops,
            "warmup_seconds": self.warmup.seconds,
            "pool_size": DEFAULT_POOL_SIZE,
            "pipeline_batch": PIPELINE_BATCH,
            "pool_sizes": list(self.pool_sizes),
            "sweep_concurrency": self.sweep_concurrency,
            "sessions": self.sessions,
        }


class Progress:
    """One line per finished scenario on stderr, with the time elapsed."""

    def __init__(self, enabled: bool, total: int) -> None:
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


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _server_cpu(admin: Redis | None) -> float | None:
    """The server's CPU seconds so far (``INFO cpu``), or ``None`` when it will not say."""
    if admin is None:
        return None
    try:
        info: dict[str, Any] = await admin.info("cpu")
        return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
    except (redis.RedisError, KeyError, ValueError):
        return None


async def _measured(measure: Measure, budget: Budget, admin: Redis | None) -> Sample:
    """One repetition, with the client's and the server's CPU per operation beside it."""
    server = await _server_cpu(admin)
    client = time.process_time()
    sample = await measure(budget)
    client_cpu = time.process_time() - client
    server_after = await _server_cpu(admin)
    ops = max(1, sample.ops)
    return dataclasses.replace(
        sample,
        client_cpu=client_cpu / ops,
        server_cpu=None if server is None or server_after is None else (server_after - server) / ops,
    )


async def _measure_group(
    contenders: Sequence[Contender],
    operation: str,
    concurrency: int,
    settings: Settings,
    admin: Redis | None = None,
) -> list[dict[str, Any]]:
    """Warm every contender up, then interleave their repetitions (rotating who goes first),
    so a disturbance from outside hits them all alike."""
    active = [c for c in contenders if c.runs_at(concurrency)]
    plans = {c.name: c.plan(operation, concurrency) for c in active}
    samples: dict[str, list[Sample]] = {name: [] for name in plans}
    errors: dict[str, str] = {}
    for name, measure in plans.items():
        try:
            await measure(settings.warmup)
        except Exception as exc:  # a failing contender is reported, and the run goes on
            errors[name] = _error_text(exc)
    for repetition in range(settings.repetitions):
        names = [name for name in plans if name not in errors]
        if not names:
            break
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            try:
                samples[name].append(await _measured(plans[name], settings.budget, admin))
            except Exception as exc:
                errors[name] = _error_text(exc)
    rows = []
    for contender in active:
        row: dict[str, Any] = {
            "operation": operation,
            "contender": contender.name,
            "kind": contender.kind,
            "concurrency": concurrency,
            "max_connections": contender.max_connections,
        }
        if contender.name in errors:
            row["error"] = errors[contender.name]
        else:
            row.update(summarize(samples[contender.name]).as_dict())
        rows.append(row)
    return rows


def _rates(rows: Sequence[dict[str, Any]]) -> str:
    return ", ".join(
        f"{row['contender']} " + ("ERROR" if "error" in row else f"{row['ops_per_s']:,.0f}/s") for row in rows
    )


async def _side_by_side(
    url: str, prefix: str, settings: Settings, progress: Progress
) -> list[dict[str, Any]]:
    contenders = standard_contenders()
    opened: list[Contender] = []
    scenarios: list[dict[str, Any]] = []
    admin = Redis.from_url(url)
    try:
        for contender in contenders:
            await contender.open(url, f"{prefix}:{contender.name}", settings.sessions)
            opened.append(contender)
        # What setup left behind is long-lived: keep the collector from re-scanning it during
        # every measurement (a full collection of it takes tens of ms).
        gc.collect()
        gc.freeze()
        for operation in OPERATIONS:
            for concurrency in settings.concurrency:
                rows = await _measure_group(contenders, operation, concurrency, settings, admin)
                scenarios += rows
                progress.step(f"{operation} c={concurrency}: {_rates(rows)}")
    finally:
        gc.unfreeze()
        for contender in opened:
            await contender.close()
        await admin.aclose()
    return scenarios


async def _pool_sweep(url: str, prefix: str, settings: Settings, progress: Progress) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for size in settings.pool_sizes:
        contenders: list[Contender] = [
            AgentMem("agentmem", auto_pipeline=True, max_connections=size),
            AgentMem("agentmem-nopipe", auto_pipeline=False, max_connections=size),
        ]
        opened: list[Contender] = []
        try:
            for contender in contenders:
                sweep_prefix = f"{prefix}:sweep-{size}-{contender.name}"
                await contender.open(url, sweep_prefix, settings.sweep_concurrency)
                opened.append(contender)
            group = await _measure_group(contenders, SWEEP_OPERATION, settings.sweep_concurrency, settings)
        finally:
            for contender in opened:
                await contender.close()
        rows += group
        progress.step(f"pool sweep max_connections={size}: {_rates(group)}")
    return {"operation": SWEEP_OPERATION, "concurrency": settings.sweep_concurrency, "rows": rows}


async def _run_on_server(url: str, settings: Settings, progress: Progress) -> dict[str, Any]:
    prefix = f"agentmem-bench-{secrets.token_hex(4)}"
    results: dict[str, Any] = {"key_prefix": prefix}
    try:
        results["scenarios"] = await _side_by_side(url, prefix, settings, progress)
        results["pool_sweep"] = await _pool_sweep(url, prefix, settings, progress)
        results["round_trips"] = await round_trips(url, f"{prefix}:trips", settings.round_trip_calls)
        progress.step("round trips per call counted")
        results["memory"] = await session_memory(url, prefix, settings.memory_sessions)
        progress.step("memory per session measured")
    finally:
        results["keys_deleted"] = await delete_keys(url, prefix)
    return results


@contextlib.contextmanager
def _server(url: str | None, progress: Progress) -> Iterator[tuple[str, bool]]:
    """The given URL, or an embedded server's for the duration of the block."""
    if url:
        yield url, False
        return
    with embedded_server() as server:
        progress.note(f"started embedded {server.binary.flavor} {server.binary.version} at {server.url}")
        yield server.url, True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agentmem bench",
        description="agentmem vs hand-written redis-py code, side by side on one server.",
    )
    parser.add_argument("--url", help="Redis URL to benchmark against (default: start an embedded server)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few seconds (concurrency 1 and 64 only, a small pool sweep): shows "
        "that everything runs; too short to judge, so no target is checked",
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help=f"measured seconds per scenario, split over the repetitions (default {FULL_SECONDS}, "
        f"--quick {QUICK_SECONDS})",
    )
    parser.add_argument(
        "--ops", type=int, metavar="N", help="measure N operations per scenario instead of a duration"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        metavar="N",
        help=f"repetitions per scenario; medians are reported (default {FULL_REPETITIONS}, "
        f"--quick {QUICK_REPETITIONS})",
    )
    parser.add_argument(
        "--out",
        default=str(DEFAULT_OUT),
        metavar="DIR",
        help=f"where {RESULTS_NAME} and {CHART_NAME} go (default: benchmarks/results)",
    )
    parser.add_argument(
        "--topology",
        choices=("single", "cluster"),
        default="single",
        help="cluster: agentmem's pair and turn scenarios on 1 node vs a 3-primary Redis Cluster "
        "(both embedded), with the pipelines per node (benchmarks/topology.py)",
    )
    parser.add_argument(
        "--memory",
        action="store_true",
        help="only measure server memory per session: agentmem, raw blob and raw hash layouts "
        f"(used_memory change over --sessions sessions, default {FULL_MEMORY_RUN_SESSIONS:,})",
    )
    parser.add_argument(
        "--sessions",
        type=int,
        metavar="N",
        help=f"sessions per layout for --memory (--quick: {QUICK_MEMORY_RUN_SESSIONS})",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run every async contender on uvloop's event loop (pip install 'agentmem-redis[uvloop]')",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--telemetry", action="store_true", help="only measure what telemetry=True costs (CPU per operation)"
    )
    recall_arguments(parser)
    return parser


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("duration", "ops", "repeat", "sessions"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be > 0")


T = TypeVar("T")


class MissingUvloopError(RuntimeError):
    """--uvloop without uvloop installed."""


def _run_loop(coroutine: Coroutine[Any, Any, T], use_uvloop: bool) -> T:
    """``asyncio.run``, or ``uvloop.run`` with ``--uvloop``."""
    if not use_uvloop:
        return asyncio.run(coroutine)
    try:
        import uvloop
    except ImportError as exc:
        coroutine.close()
        raise MissingUvloopError("--uvloop needs uvloop: pip install 'agentmem-redis[uvloop]'") from exc
    result: T = uvloop.run(coroutine)
    return result


def _memory_main(args: argparse.Namespace, settings: Settings) -> int:
    """``--memory``: bytes of server memory per session for each layout, printed and written."""
    sessions: int = args.sessions or (
        QUICK_MEMORY_RUN_SESSIONS if settings.quick else FULL_MEMORY_RUN_SESSIONS
    )
    progress = Progress(settings.progress, 1)
    prefix = f"agentmem-bench-{secrets.token_hex(4)}"
    try:
        with _server(args.url, progress) as (url, embedded):
            server = server_info(url)
            try:
                memory = asyncio.run(memory_per_session(url, prefix, sessions))
            finally:
                asyncio.run(delete_keys(url, prefix))
    except NoServerBinaryError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    except (redis.RedisError, OSError) as exc:
        print(f"benchmarks: the server failed: {_error_text(exc)}", file=sys.stderr)
        return 2
    progress.step(f"memory per session measured over {sessions:,} sessions per layout")
    argv_used = list(sys.argv[1:])
    results = {
        "schema": SCHEMA_VERSION,
        "machine": machine_info(server, embedded=embedded, argv=argv_used),
        "key_prefix": prefix,
        "memory": memory,
    }
    settings.out.mkdir(parents=True, exist_ok=True)
    path = settings.out / MEMORY_NAME
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"server: {server['flavor']} {server['version']}")
    print(format_memory(memory), end="")
    print(f"results: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmarks; 0 when every scenario ran, 1 when some failed, 2 when none could."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    if args.topology == "cluster":
        try:  # the repository's heavier script (a six-node cluster): not in the wheel
            from benchmarks.topology import run as run_topology
        except ImportError as exc:
            print(
                f"agentmem bench --topology cluster needs benchmarks/topology.py from a source "
                f"checkout ({exc}); run it from the repository root",
                file=sys.stderr,
            )
            return 2
        return run_topology(args)
    if args.recall:
        return run_recall(args)
    if args.telemetry:
        return run_telemetry(args.url, quick=args.quick, ops=args.ops, repeat=args.repeat, out=Path(args.out))
    settings = Settings.from_args(args)
    if args.memory:
        return _memory_main(args, settings)
    groups = len(OPERATIONS) * len(settings.concurrency) + len(settings.pool_sizes) + 3
    progress = Progress(settings.progress, groups)
    started = time.perf_counter()
    try:
        with _server(args.url, progress) as (url, embedded):
            server = server_info(url)
            on_server = _run_loop(_run_on_server(url, settings, progress), args.uvloop)
    except (NoServerBinaryError, MissingUvloopError) as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    except (redis.RedisError, OSError) as exc:
        print(f"benchmarks: the server failed: {_error_text(exc)}", file=sys.stderr)
        return 2
    encoding = encoding_benchmark(settings.encoding_seconds, settings.repetitions)
    progress.step("json vs orjson encoding measured")

    results: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "machine": machine_info(server, embedded=embedded, argv=list(sys.argv[1:] if argv is None else argv)),
        "settings": {**settings.as_dict(), "event_loop": "uvloop" if args.uvloop else "asyncio"},
        "operations": dict(OPERATIONS),
        "contenders": dict(CONTENDER_NOTES),
        **on_server,
        "encoding": encoding,
    }
    results["ratios"] = compute_ratios(results["scenarios"], list(OPERATIONS))
    results["total_seconds"] = round(time.perf_counter() - started, 1)

    settings.out.mkdir(parents=True, exist_ok=True)
    json_path = settings.out / RESULTS_NAME
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(format_report(results), end="")
    print(f"results: {json_path}")
    if settings.chart:
        if chart_available():
            print(f"chart:   {draw_chart(results, settings.out / CHART_NAME)}")
        else:
            print(f"chart:   {MISSING_MATPLOTLIB}")

    failed = [s for s in results["scenarios"] + results["pool_sweep"]["rows"] if "error" in s]
    for scenario in failed:
        print(
            f"FAILED: {scenario['operation']} {scenario['contender']} c={scenario['concurrency']}: "
            f"{scenario['error']}",
            file=sys.stderr,
        )
    return 1 if failed else 0
