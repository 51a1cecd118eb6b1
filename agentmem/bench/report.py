"""Turning a run's results (one JSON-ready dict) into ratios and a plain-text table."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RATIOS", "STARVED_NOTE", "RatioSpec", "compute_ratios", "format_report", "scenario_index"]


@dataclass(frozen=True, slots=True)
class RatioSpec:
    """Throughput of one contender at one concurrency over another's, per operation."""

    numerator: str
    numerator_concurrency: int
    denominator: str
    denominator_concurrency: int
    #: What the issue asks for (on every operation), if anything.
    target: float | None = None

    @property
    def name(self) -> str:
        return (
            f"{self.numerator}@{self.numerator_concurrency} / "
            f"{self.denominator}@{self.denominator_concurrency}"
        )


#: The comparisons the report makes; a ratio whose scenarios were not run is left out.
RATIOS: tuple[RatioSpec, ...] = (
    RatioSpec("agentmem", 64, "raw-blob", 64, target=3.0),
    RatioSpec("agentmem", 64, "raw-hash", 64, target=3.0),
    RatioSpec("agentmem", 64, "pipe-blob", 64, target=0.85),
    RatioSpec("agentmem", 64, "pipe-hash", 64, target=0.85),
    RatioSpec("agentmem", 64, "agentmem-nopipe", 64),
    RatioSpec("agentmem", 256, "agentmem-nopipe", 256),
    RatioSpec("agentmem", 1, "raw-blob", 1),
    RatioSpec("agentmem", 1, "raw-hash", 1),
    RatioSpec("agentmem", 1, "agentmem-nopipe", 1),
    RatioSpec("agentmem", 1, "sync-json", 1),
)

ScenarioKey = tuple[str, str, int]  # operation, contender, concurrency


def scenario_index(scenarios: Iterable[Mapping[str, Any]]) -> dict[ScenarioKey, Mapping[str, Any]]:
    return {(s["operation"], s["contender"], int(s["concurrency"])): s for s in scenarios}


def _rate(scenario: Mapping[str, Any] | None) -> float | None:
    if scenario is None or "error" in scenario:
        return None
    value = float(scenario["ops_per_s"])
    return value if value > 0 and math.isfinite(value) else None


def compute_ratios(scenarios: Sequence[Mapping[str, Any]], operations: Sequence[str]) -> list[dict[str, Any]]:
    """Every ratio of :data:`RATIOS` both of whose sides were measured, per operation."""
    index = scenario_index(scenarios)
    ratios: list[dict[str, Any]] = []
    for spec in RATIOS:
        by_operation: dict[str, float] = {}
        for operation in operations:
            top = _rate(index.get((operation, spec.numerator, spec.numerator_concurrency)))
            bottom = _rate(index.get((operation, spec.denominator, spec.denominator_concurrency)))
            if top is not None and bottom is not None:
                by_operation[operation] = round(top / bottom, 3)
        if not by_operation:
            continue
        values = list(by_operation.values())
        geomean = math.exp(sum(math.log(v) for v in values) / len(values))
        ratios.append(
            {
                "name": spec.name,
                "by_operation": by_operation,
                "geomean": round(geomean, 3),
                "min": min(values),
                "target": spec.target,
                "meets_target": None if spec.target is None else min(values) >= spec.target,
            }
        )
    return ratios


# -- formatting --------------------------------------------------------------------------------


def _rate_text(value: float) -> str:
    return f"{value:,.0f}"


def _ms(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def _bytes(value: float) -> str:
    return f"{value:,.0f} B"


_NAME = 16
_RATE = 9
_P50 = 7
_P99 = 7
_BLOCK = _RATE + _P50 + _P99 + 2


#: A p99 this close to the repetition's length means some task waited (almost) all of it.
STARVED_FRACTION = 0.8
STARVED_NOTE = (
    "! p99 is about the whole repetition: some tasks waited for a pool connection nearly all of it.\n"
    "  More tasks than connections, and redis-py's BlockingConnectionPool lets a task that just released\n"
    "  a connection take it again before the waiters it woke: starvation, not a slow server."
)


def _operation_table(
    operation: str,
    title: str,
    contenders: Sequence[str],
    levels: Sequence[int],
    index: Mapping[ScenarioKey, Mapping[str, Any]],
    starved_ms: float | None,
) -> list[str]:
    lines = [f"{operation}: {title}    (ops/s; p50 and p99 latency in ms)"]
    lines.append((" " * _NAME + "".join(f"c={level}".center(_BLOCK) for level in levels)).rstrip())
    lines.append(
        (
            "contender".ljust(_NAME)
            + "".join("ops/s".rjust(_RATE) + "p50".rjust(_P50) + "p99".rjust(_P99) + "  " for _ in levels)
        ).rstrip()
    )
    for name in contenders:
        cells = []
        measured = False
        for level in levels:
            scenario = index.get((operation, name, level))
            if scenario is None:
                cells.append("-".rjust(_RATE) + "".rjust(_P50 + _P99) + "  ")
            elif "error" in scenario:
                measured = True
                cells.append("error".rjust(_RATE) + "".rjust(_P50 + _P99) + "  ")
            else:
                measured = True
                starved = starved_ms is not None and scenario["p99_ms"] >= starved_ms
                cells.append(
                    _rate_text(scenario["ops_per_s"]).rjust(_RATE)
                    + _ms(scenario["p50_ms"]).rjust(_P50)
                    + _ms(scenario["p99_ms"]).rjust(_P99)
                    + ("! " if starved else "  ")
                )
        if measured:
            lines.append(name.ljust(_NAME) + "".join(cells).rstrip())
    return lines


def _cpu_text(scenario: Mapping[str, Any] | None) -> str:
    if scenario is None or "error" in scenario:
        return "-"
    client, server = scenario.get("client_cpu_us"), scenario.get("server_cpu_us")
    if client is None:
        return "-"
    return f"{client:,.0f}/" + ("?" if server is None else f"{server:,.0f}")


def _cpu_table(
    operations: Sequence[str],
    contenders: Sequence[str],
    levels: Sequence[int],
    index: Mapping[ScenarioKey, Mapping[str, Any]],
) -> list[str]:
    lines = [
        "CPU per operation, µs: client/server (this process's time.process_time and the server's "
        "INFO cpu over each repetition, medians; the steady figure on a shared machine)"
    ]
    width = 12
    lines.append(
        "operation".ljust(11)
        + "contender".ljust(_NAME)
        + "".join(f"c={level}".rjust(width) for level in levels)
    )
    for operation in operations:
        for name in contenders:
            cells = [_cpu_text(index.get((operation, name, level))) for level in levels]
            if all(cell == "-" for cell in cells):
                continue
            lines.append(operation.ljust(11) + name.ljust(_NAME) + "".join(c.rjust(width) for c in cells))
    return lines


#: What a ``--quick`` run says instead of judging targets: a few seconds prove nothing.
SMOKE_NOTE = "a smoke run (--quick), too short to judge: targets not checked"


def _ratio_table(
    ratios: Sequence[Mapping[str, Any]], operations: Sequence[str], *, smoke: bool = False
) -> list[str]:
    width = max([len(r["name"]) for r in ratios] + [10]) + 2
    heading = SMOKE_NOTE if smoke else "target checked on every operation"
    lines = [f"ratios, this run (ops/s of the first over the second; {heading})"]
    lines.append(
        "".ljust(width) + "".join(op.rjust(10) for op in operations) + "geomean".rjust(9) + "   target"
    )
    for ratio in ratios:
        cells = "".join(
            (f"{ratio['by_operation'][op]:.2f}x" if op in ratio["by_operation"] else "-").rjust(10)
            for op in operations
        )
        target = ratio["target"]
        met = "met" if ratio["meets_target"] else "NOT met"
        verdict = "" if target is None else f"   >= {target:g}x" + ("" if smoke else f": {met}")
        lines.append(ratio["name"].ljust(width) + cells + f"{ratio['geomean']:.2f}x".rjust(9) + verdict)
    return lines


def _sweep_table(sweep: Mapping[str, Any]) -> list[str]:
    rows: list[Mapping[str, Any]] = sweep["rows"]
    sizes = sorted({int(r["max_connections"]) for r in rows})
    contenders = list(dict.fromkeys(str(r["contender"]) for r in rows))
    index = {(str(r["contender"]), int(r["max_connections"])): r for r in rows}
    width = max(len(c) for c in contenders) + 10
    lines = [
        f"pool sweep: {sweep['operation']} at concurrency {sweep['concurrency']}, "
        "by max_connections    (ops/s; p99 in ms)"
    ]
    lines.append("max_connections".ljust(width) + "".join(str(size).rjust(9) for size in sizes))
    for contender in contenders:
        for label, field, fmt in (("ops/s", "ops_per_s", _rate_text), ("p99 ms", "p99_ms", _ms)):
            cells = []
            for size in sizes:
                row = index.get((contender, size))
                cells.append("-" if row is None or "error" in row else fmt(float(row[field])))
            lines.append(f"{contender} {label}".ljust(width) + "".join(c.rjust(9) for c in cells))
    return lines


def _round_trip_lines(trips: Mapping[str, Any]) -> list[str]:
    lines = ["round trips per agentmem call (one call at a time; pipelines counted by the store)"]
    lines.append("method".ljust(18) + "pipelines/call".rjust(16) + "EVALSHA/call".rjust(14))
    for method, counts in trips.items():
        if method == "load_turn_concurrent":
            continue
        lines.append(
            method.ljust(18)
            + f"{counts['pipelines_per_call']:.2f}".rjust(16)
            + f"{counts['evalsha_per_call']:.2f}".rjust(14)
        )
    concurrent = trips.get("load_turn_concurrent")
    if concurrent:
        lines.append(
            f"load_turn from {concurrent['tasks']} concurrent tasks: "
            f"{concurrent['store_calls_per_pipeline']:.1f} calls "
            f"({concurrent['scripts_per_pipeline']:.1f} commands) per pipeline"
        )
    return lines


def _memory_lines(memory: Mapping[str, Any]) -> list[str]:
    context = memory["context"]
    history = memory["history"]
    log = memory["append_log"]
    total = memory["per_session_total"]
    ratio = context["agentmem_over_blob"]
    return [
        f"server memory per session (MEMORY USAGE ... SAMPLES 0, median of {memory['sessions']} sessions; "
        f"context payload {memory['payload_bytes']:,} B of orjson)",
        f"  context, agentmem base ({context['agentmem_encoding']})".ljust(46)
        + _bytes(context["agentmem"]).rjust(12)
        + ("" if ratio is None else f"   {ratio:.2f}x the orjson blob"),
        f"  context, orjson blob ({context['blob_encoding']})".ljust(46)
        + _bytes(context["orjson_blob"]).rjust(12),
        f"  context, stdlib json blob ({context['blob_encoding']})".ljust(46)
        + _bytes(context["json_blob"]).rjust(12),
        f"  history, {history['messages']} messages ({history['encoding']}), both".ljust(46)
        + _bytes(history["agentmem"]).rjust(12),
        f"  agentmem append log, {log['ids']} ids ({log['encoding']})".ljust(46)
        + _bytes(log["agentmem"]).rjust(12),
        "  total: agentmem".ljust(46) + _bytes(total["agentmem"]).rjust(12),
        "  total: orjson blob + history list".ljust(46) + _bytes(total["orjson_blob"]).rjust(12),
    ]


def _encoding_lines(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = ["encoding the context in-process (no server; per second, median)"]
    lines.append("codec".ljust(36) + "encodes/s".rjust(12) + "decodes/s".rjust(12) + "bytes".rjust(8))
    for row in rows:
        lines.append(
            str(row["codec"]).ljust(36)
            + _rate_text(row["encode_per_s"]).rjust(12)
            + _rate_text(row["decode_per_s"]).rjust(12)
            + f"{row['encoded_bytes']:,}".rjust(8)
        )
    return lines


def _header(results: Mapping[str, Any]) -> list[str]:
    machine = results["machine"]
    server = machine["server"]
    settings = results["settings"]
    load = machine.get("load_average_at_start")
    budget = (
        f"{settings['ops_per_repetition']} ops"
        if settings.get("ops_per_repetition")
        else f"{settings['seconds_per_repetition']:.2f} s"
    )
    return [
        f"agentmem benchmarks, {machine['started_at']}, {results.get('total_seconds', 0):.0f} s"
        + (f" ({SMOKE_NOTE})" if settings["quick"] else ""),
        f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['platform']}",
        f"python:  {machine['python']} ({machine['python_implementation']}); redis-py {machine['redis_py']}, "
        f"hiredis {machine['hiredis']}, orjson {machine['orjson']}, agentmem {machine['agentmem']}",
        f"server:  {server['flavor']} {server['version']}"
        + (" (embedded, same machine)" if server["embedded"] else f" at {server['url']}"),
        f"run:     {settings['repetitions']} repetitions x {budget} per scenario after a warm-up; "
        f"medians of ops/s, p50 and p99; event loop {settings.get('event_loop', 'asyncio')}",
        f"         pool: {settings['pool_size']} connections per async contender; hand pipelines carry "
        f"{settings['pipeline_batch']} sessions"
        + (f"; load average at start {' '.join(f'{x:.2f}' for x in load)}" if load else ""),
    ]


def format_report(results: Mapping[str, Any]) -> str:
    """The whole run as aligned plain text."""
    operations: Mapping[str, str] = results["operations"]
    contenders: Mapping[str, str] = results["contenders"]
    levels: list[int] = results["settings"]["concurrency"]
    index = scenario_index(results["scenarios"])
    sections: list[list[str]] = [_header(results)]
    settings = results["settings"]
    starved_ms = (
        None
        if settings.get("ops_per_repetition")
        else STARVED_FRACTION * settings["seconds_per_repetition"] * 1000
    )
    for operation, title in operations.items():
        sections.append(_operation_table(operation, title, list(contenders), levels, index, starved_ms))
    if starved_ms is not None and any(
        "error" not in s and s["p99_ms"] >= starved_ms for s in results["scenarios"]
    ):
        sections.append([STARVED_NOTE])
    if any("client_cpu_us" in s for s in results["scenarios"]):
        sections.append(_cpu_table(list(operations), list(contenders), levels, index))
    if results.get("ratios"):
        sections.append(_ratio_table(results["ratios"], list(operations), smoke=bool(settings["quick"])))
    if results.get("pool_sweep"):
        sections.append(_sweep_table(results["pool_sweep"]))
    if results.get("round_trips"):
        sections.append(_round_trip_lines(results["round_trips"]))
    if results.get("memory"):
        sections.append(_memory_lines(results["memory"]))
    if results.get("encoding"):
        sections.append(_encoding_lines(results["encoding"]))
    sections.append(["contenders"] + [f"  {name.ljust(_NAME)}{text}" for name, text in contenders.items()])
    return "\n\n".join("\n".join(lines) for lines in sections) + "\n"
