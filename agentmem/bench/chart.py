"""A PNG of a run's results, drawn with matplotlib when it is installed (extra ``bench``)."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentmem.bench.report import scenario_index

__all__ = ["MISSING_MATPLOTLIB", "chart_available", "draw_chart"]

MISSING_MATPLOTLIB = (
    "matplotlib is not installed, so no chart was drawn; "
    "install it with `pip install 'agentmem-redis[bench]'` (the JSON and the table are complete without it)"
)


def chart_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def draw_chart(results: Mapping[str, Any], path: Path) -> Path:
    """Throughput at c=64, throughput by concurrency, and the pool sweep, in one PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never open a window
    import matplotlib.pyplot as plt

    operations = list(results["operations"])
    contenders = list(results["contenders"])
    levels: list[int] = results["settings"]["concurrency"]
    index = scenario_index(results["scenarios"])
    focus = 64 if 64 in levels else levels[-1]

    def rate(operation: str, contender: str, level: int) -> float:
        scenario = index.get((operation, contender, level))
        return 0.0 if scenario is None or "error" in scenario else float(scenario["ops_per_s"])

    figure, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    bars, lines, sweep_axis = axes

    width = 0.8 / len(contenders)
    for i, contender in enumerate(contenders):
        values = [rate(op, contender, focus) for op in operations]
        if any(values):
            bars.bar([x + i * width for x in range(len(operations))], values, width, label=contender)
    bars.set_xticks([x + width * (len(contenders) - 1) / 2 for x in range(len(operations))], operations)
    bars.set_ylabel("ops/s")
    bars.set_title(f"throughput at concurrency {focus}")
    bars.legend(fontsize=8)

    for contender in contenders:
        points = [(level, rate("pair", contender, level)) for level in levels]
        points = [(x, y) for x, y in points if y > 0]
        if len(points) > 1:
            lines.plot([x for x, _ in points], [y for _, y in points], marker="o", label=contender)
    lines.set_xscale("log", base=2)
    lines.set_xticks(levels, [str(level) for level in levels])
    lines.set_xlabel("concurrent tasks")
    lines.set_ylabel("pairs/s (save_context + load_context)")
    lines.set_title("pair throughput by concurrency")
    lines.legend(fontsize=8)

    sweep = results.get("pool_sweep")
    if sweep:
        latency_axis = sweep_axis.twinx()
        for contender in dict.fromkeys(str(r["contender"]) for r in sweep["rows"]):
            rows = sorted(
                (r for r in sweep["rows"] if r["contender"] == contender and "error" not in r),
                key=lambda r: int(r["max_connections"]),
            )
            sizes = [int(r["max_connections"]) for r in rows]
            sweep_axis.plot(sizes, [r["ops_per_s"] for r in rows], marker="o", label=f"{contender} ops/s")
            latency_axis.plot(
                sizes, [r["p99_ms"] for r in rows], linestyle="--", marker="x", label=f"{contender} p99 ms"
            )
        sweep_axis.set_xscale("log", base=2)
        sizes = sorted({int(r["max_connections"]) for r in sweep["rows"]})
        sweep_axis.set_xticks(sizes, [str(size) for size in sizes])
        sweep_axis.set_xlabel("max_connections")
        sweep_axis.set_ylabel("ops/s")
        latency_axis.set_ylabel("p99 latency (ms)")
        sweep_axis.set_title(f"pool sweep: {sweep['operation']} at concurrency {sweep['concurrency']}")
        handles, labels = sweep_axis.get_legend_handles_labels()
        more_handles, more_labels = latency_axis.get_legend_handles_labels()
        sweep_axis.legend(handles + more_handles, labels + more_labels, fontsize=7, loc="best")

    machine = results["machine"]
    server = machine["server"]
    figure.suptitle(
        f"agentmem benchmarks: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{server['flavor']} {server['version']}"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
