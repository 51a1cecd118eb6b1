"""``agentmem bench --topology cluster``: agentmem on one node vs a 3-primary Redis Cluster.

Both run from the same server binary on this machine: one embedded server, and a cluster
of 3 primaries and 3 replicas (:class:`agentmem.testing.cluster.ClusterGroup`). The pair
(save_context + load_context) and turn (load_turn with the user's facts) scenarios run on
each at C=64 and C=256, interleaved; the report shows the pipelines each primary got and
their mean size, since on the cluster one batch becomes one pipeline per node.

On one machine the cluster's primaries share the same cores as the client, so this shows
the routing overhead and the per-node batching, not the capacity a cluster of separate
hosts would add.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentmem.bench.contenders import AgentMem
from agentmem.bench.harness import Budget, Sample, summarize
from agentmem.store import AgentMemoryStore
from agentmem.testing.cluster import ClusterGroup
from agentmem.testing.server import EmbeddedServer, find_server_binaries, probe_binary, resolve_binary

__all__ = ["run"]

SCENARIOS = ("pair", "load_turn")
CONCURRENCY = (64, 256)
RESULTS_NAME = "topology.json"


async def _measure(url: str, topology: str, budget: Budget, repetitions: int) -> list[dict[str, Any]]:
    rows = []
    contender = AgentMem("agentmem", auto_pipeline=True)
    await contender.open(url, f"bench-topo:{secrets.token_hex(3)}", max(CONCURRENCY))
    try:
        store: AgentMemoryStore = contender.store
        for operation in SCENARIOS:
            for concurrency in CONCURRENCY:
                plan = contender.plan(operation, concurrency)
                await plan(budget.scaled(0.25))
                transport: Any = (
                    store.engine.transport if await store.engine.topology() == "cluster" else None
                )
                before = dict(transport.node_batches) if transport is not None else {}
                calls_before = transport.calls if transport is not None else 0
                samples: list[Sample] = [await plan(budget) for _ in range(repetitions)]
                row: dict[str, Any] = {
                    "topology": topology,
                    "operation": operation,
                    "concurrency": concurrency,
                    **summarize(samples).as_dict(),
                }
                if transport is not None:
                    per_node = {
                        f"{host}:{port}": n - before.get((host, port), 0)
                        for (host, port), n in transport.node_batches.items()
                    }
                    pipelines = sum(per_node.values())
                    row["pipelines_per_node"] = per_node
                    row["calls_per_pipeline"] = round((transport.calls - calls_before) / max(1, pipelines), 1)
                rows.append(row)
    finally:
        await contender.close()
    return rows


def _format(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'topology':<9} {'scenario':<10} {'C':>4} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        "  per-node pipelines"
    ]
    for row in rows:
        nodes = row.get("pipelines_per_node")
        detail = (
            " ".join(f"{k.split(':')[1]}={v}" for k, v in sorted(nodes.items()))
            + f" ({row['calls_per_pipeline']} calls each)"
            if nodes
            else "-"
        )
        lines.append(
            f"{row['topology']:<9} {row['operation']:<10} {row['concurrency']:>4} "
            f"{row.get('ops_per_s', 0):>9.0f} {row.get('p50_ms', 0):>8.2f} "
            f"{row.get('p99_ms', 0):>8.2f}  {detail}"
        )
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    """Start both topologies, measure, print, write ``topology.json`` under ``--out``."""
    wanted = os.environ.get("AGENTMEM_REDIS_SERVER")
    paths, reasons = ([resolve_binary(wanted)], []) if wanted else find_server_binaries()
    if not paths:
        print(f"benchmarks: no server binary ({'; '.join(reasons)})", file=sys.stderr)
        return 2
    binary = probe_binary(paths[0])
    repetitions = args.repeat or (2 if args.quick else 3)
    seconds = args.duration or (0.3 if args.quick else 2.0)
    budget = Budget(seconds=seconds / repetitions, ops=None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentmem-bench-topology-") as directory:
        single = EmbeddedServer(binary, Path(directory) / "single").start()
        cluster = ClusterGroup(binary, Path(directory) / "cluster")
        try:
            cluster.start()
            rows = asyncio.run(_measure(single.url, "single", budget, repetitions))
            rows += asyncio.run(_measure(cluster.url, "cluster", budget, repetitions))
        finally:
            cluster.stop()
            single.stop()
    results = {
        "server": f"{binary.flavor} {binary.version}",
        "repetitions": repetitions,
        "seconds_per_scenario": seconds,
        "rows": rows,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_NAME).write_text(json.dumps(results, indent=2) + "\n")
    print(f"{binary.flavor} {binary.version}: 1 node vs a cluster of 3 primaries (+3 replicas), same machine")
    print(_format(rows), end="")
    print(f"results: {out / RESULTS_NAME}")
    return 0
