"""What one ``agentmem bench`` run measures and for how long: its sizes, its command line and
the :class:`Settings` built from it (the run itself is :mod:`agentmem.bench.run`)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmem.bench.contenders import DEFAULT_POOL_SIZE, PIPELINE_BATCH
from agentmem.bench.harness import Budget
from agentmem.bench.placement import PLACEMENTS
from agentmem.bench.recall import add_arguments as recall_arguments

__all__ = [
    "CHART_NAME",
    "DEFAULT_OUT",
    "FULL_CONCURRENCY",
    "FULL_ENCODING_SECONDS",
    "FULL_MEMORY_RUN_SESSIONS",
    "FULL_MEMORY_SESSIONS",
    "FULL_POOL_SIZES",
    "FULL_REPETITIONS",
    "FULL_ROUND_TRIP_CALLS",
    "FULL_SECONDS",
    "FULL_SWEEP_CONCURRENCY",
    "MEMORY_NAME",
    "QUICK_CONCURRENCY",
    "QUICK_ENCODING_SECONDS",
    "QUICK_MEMORY_RUN_SESSIONS",
    "QUICK_MEMORY_SESSIONS",
    "QUICK_POOL_SIZES",
    "QUICK_REPETITIONS",
    "QUICK_ROUND_TRIP_CALLS",
    "QUICK_SECONDS",
    "QUICK_SWEEP_CONCURRENCY",
    "RESULTS_NAME",
    "SCHEMA_VERSION",
    "SWEEP_OPERATION",
    "WARMUP_FRACTION",
    "Settings",
    "build_parser",
    "check_args",
]

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
    parser.add_argument(
        "--server-cost",
        action="store_true",
        help="only measure what the server pays per operation, from INFO (agentmem/bench/server_cost.py)",
    )
    parser.add_argument(
        "--cpus",
        choices=PLACEMENTS,
        default="shared",
        help="--server-cost: the bench and the server it starts on one CPU (shared, the default), "
        "on a CPU each (separate), or where the OS puts them (any); see agentmem/bench/placement.py",
    )
    parser.add_argument("--no-chart", action="store_true", help="do not draw the PNG chart")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    parser.add_argument(
        "--telemetry", action="store_true", help="only measure what telemetry=True costs (CPU per operation)"
    )
    recall_arguments(parser)
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("duration", "ops", "repeat", "sessions"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name} must be > 0")
