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
import secrets
import sys
import time
from collections.abc import Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import redis
from redis.asyncio import Redis

from agentmem.bench.chart import MISSING_MATPLOTLIB, chart_available, draw_chart
from agentmem.bench.contenders import (
    CONTENDER_NOTES,
    AgentMem,
    Contender,
    Measure,
)
from agentmem.bench.encoding import encoding_benchmark
from agentmem.bench.harness import Budget, Progress, Sample, summarize
from agentmem.bench.lineup import standard_contenders
from agentmem.bench.machine import machine_info, server_info
from agentmem.bench.memory import format_memory, memory_per_session
from agentmem.bench.probes import delete_keys, round_trips, session_memory
from agentmem.bench.recall import run_recall
from agentmem.bench.report import compute_ratios, format_report
from agentmem.bench.settings import (
    CHART_NAME,
    FULL_MEMORY_RUN_SESSIONS,
    MEMORY_NAME,
    QUICK_MEMORY_RUN_SESSIONS,
    RESULTS_NAME,
    SCHEMA_VERSION,
    SWEEP_OPERATION,
    Settings,
    build_parser,
    check_args,
)
from agentmem.bench.telemetry import run_telemetry
from agentmem.bench.workload import OPERATIONS
from agentmem.testing.embedded import NoServerBinaryError, embedded_server

__all__ = ["Settings", "main"]


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
    check_args(parser, args)
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
    if args.server_cost:
        from agentmem.bench.server_cost import run as run_server_cost

        return run_server_cost(args)
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
