"""``agentmem bench --server-cost``: what the server pays per agent operation, from its own counters.

Around each measured repetition the server is asked for ``INFO commandstats`` (calls and
microseconds inside commands, summed over every command but ``INFO``) and ``INFO cpu``
(``used_cpu_sys + used_cpu_user`` of the server process), and the differences are divided by
the operations done. Server process CPU is the figure that decides how many agents one core
carries (Redis runs commands on one thread); the time inside commands leaves out reading and
parsing requests and writing replies, which pipelining makes cheaper.

Units of work, each at 1 and 64 agents (concurrent tasks, one session each):

* ``pair``: save_context + load_context of the ~4 KB context. agentmem against ``raw-blob``
  (``SET EX`` + ``GET``, one command at a time) and ``pipe-blob`` (the same, hand-pipelined
  64 sessions at a time);
* ``turn``: load_turn (context, last 20 messages, the user's facts) + update_context of 2
  fields + append_messages of 2. agentmem against ``raw-turn``: 7 plain commands one at a
  time (HGETALL context, LRANGE, HGETALL facts, HSET, RPUSH, LTRIM, EXPIRE; not atomic);
* agentmem's own operations one by one (save, load, load_turn, update, append), so a change
  to one script shows in its line.

Each line is the median of ``--repeat`` repetitions. Run on a server nothing else uses (the
default: an embedded one), or the counters include others' commands.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis
from redis.asyncio import Redis

from agentmem.bench.contenders import AgentMem, Contender, Session
from agentmem.bench.handwritten import PipelinedBlob, RawBlob, RawHash
from agentmem.bench.harness import Budget
from agentmem.bench.machine import machine_info, server_info
from agentmem.bench.placement import choose, describe, placed
from agentmem.bench.probes import delete_keys
from agentmem.bench.script_cost import format_shapes, script_shapes
from agentmem.bench.workload import CONTEXT, CONTEXT_UPDATE, HISTORY_LAST, MAX_HISTORY, MESSAGES, SESSION_TTL
from agentmem.testing.embedded import NoServerBinaryError, embedded_server

__all__ = ["AGENTS", "AgentMemOps", "RawTurn", "ServerCounters", "run", "server_cost"]

#: Agents (concurrent tasks) every unit of work runs at.
AGENTS = (1, 64)
RESULTS_NAME = "server_cost.json"
FULL_SECONDS = 1.5
QUICK_SECONDS = 0.3
FULL_REPETITIONS = 5
QUICK_REPETITIONS = 3
#: Pipelines of benchmarks.script_cost.BATCH operations per repetition of each shape.
FULL_SHAPE_ROUNDS = 200
QUICK_SHAPE_ROUNDS = 30
#: Commands that are the measurement, not the workload.
_NOT_COUNTED = frozenset({"info"})


class AgentMemOps(AgentMem):
    """agentmem with the issue's units of work: a whole turn, and a save or a load alone."""

    async def do_turn(self, session: Session) -> None:
        await self.store.load_turn(session.id, user_id=session.user, last=HISTORY_LAST)
        await self.store.update_context(session.id, CONTEXT_UPDATE)
        await self.store.append_messages(session.id, MESSAGES)

    async def do_save(self, session: Session) -> None:
        await self.store.save_context(session.id, CONTEXT)

    async def do_load(self, session: Session) -> None:
        await self.store.load_context(session.id)


class RawTurn(RawHash):
    """The turn written by hand in 7 plain commands, one at a time (not atomic; only the
    history's TTL is refreshed)."""

    async def do_turn(self, session: Session) -> None:
        client = self.client
        await client.hgetall(session.context_key)
        await client.lrange(session.history_key, -HISTORY_LAST, -1)
        await client.hgetall(session.facts_key)
        await client.hset(
            session.context_key, mapping={k: orjson.dumps(v) for k, v in CONTEXT_UPDATE.items()}
        )
        await client.rpush(session.history_key, *[orjson.dumps(m) for m in MESSAGES])
        await client.ltrim(session.history_key, -MAX_HISTORY, -1)
        await client.expire(session.history_key, SESSION_TTL)


@dataclass(frozen=True, slots=True)
class ServerCounters:
    """The server's counters at one moment: commands run, µs inside them, process CPU seconds."""

    calls: int
    usec: int
    cpu: float
    by_command: dict[str, int]

    @classmethod
    async def read(cls, admin: Redis) -> ServerCounters:
        stats: dict[str, Any] = await admin.info("commandstats")
        cpu: dict[str, Any] = await admin.info("cpu")
        by_command = {
            name.removeprefix("cmdstat_"): int(entry["calls"])
            for name, entry in stats.items()
            if isinstance(entry, dict) and name.removeprefix("cmdstat_") not in _NOT_COUNTED
        }
        usec = sum(
            int(entry["usec"])
            for name, entry in stats.items()
            if isinstance(entry, dict) and name.removeprefix("cmdstat_") not in _NOT_COUNTED
        )
        return cls(
            calls=sum(by_command.values()),
            usec=usec,
            cpu=float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
            by_command=by_command,
        )


#: (unit of work, contender names) measured at each of AGENTS.
UNITS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("pair", ("agentmem", "raw-blob", "pipe-blob")),
    ("turn", ("agentmem", "raw-turn")),
    ("save", ("agentmem",)),
    ("load", ("agentmem",)),
    ("load_turn", ("agentmem",)),
    ("update", ("agentmem",)),
    ("append", ("agentmem",)),
)


async def _repetition(
    contender: Contender, unit: str, agents: int, budget: Budget, admin: Redis
) -> dict[str, Any]:
    measure = contender.plan(unit, agents)
    before = await ServerCounters.read(admin)
    client = time.process_time()
    sample = await measure(budget)
    client_cpu = time.process_time() - client
    after = await ServerCounters.read(admin)
    ops = max(1, sample.ops)
    commands = {
        name: round((calls - before.by_command.get(name, 0)) / ops, 2)
        for name, calls in after.by_command.items()
        if calls != before.by_command.get(name, 0)
    }
    return {
        "ops": sample.ops,
        "ops_per_s": sample.ops_per_s,
        "commands": (after.calls - before.calls) / ops,
        "command_usec": (after.usec - before.usec) / ops,
        "server_cpu_us": (after.cpu - before.cpu) * 1e6 / ops,
        "client_cpu_us": client_cpu * 1e6 / ops,
        "by_command": commands,
    }


def _median_row(reps: Sequence[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {
        key: round(statistics.median(r[key] for r in reps), 2)
        for key in ("ops_per_s", "commands", "command_usec", "server_cpu_us", "client_cpu_us")
    }
    row["by_command"] = reps[len(reps) // 2]["by_command"]
    row["server_cpu_us_runs"] = [round(r["server_cpu_us"], 2) for r in reps]
    return row


def _contenders() -> dict[str, Contender]:
    return {
        "agentmem": AgentMemOps("agentmem", auto_pipeline=True),
        "raw-blob": RawBlob("raw-blob"),
        "pipe-blob": PipelinedBlob("pipe-blob"),
        "raw-turn": RawTurn("raw-turn"),
    }


async def server_cost(
    url: str, prefix: str, budget: Budget, repetitions: int, *, progress: bool
) -> list[dict[str, Any]]:
    """Every unit of work at every agent count: a row per contender, medians of ``repetitions``."""
    contenders = _contenders()
    admin = Redis.from_url(url)
    rows: list[dict[str, Any]] = []
    opened: list[Contender] = []
    try:
        for name, contender in contenders.items():
            await contender.open(url, f"{prefix}:{name}", max(AGENTS))
            opened.append(contender)
        for unit, names in UNITS:
            for agents in AGENTS:
                reps: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
                for name in names:  # warm-up: connections, script loads
                    await contenders[name].plan(unit, agents)(budget.scaled(0.25))
                for repetition in range(repetitions):
                    shift = repetition % len(names)
                    for name in names[shift:] + names[:shift]:  # interleaved: a disturbance hits all
                        reps[name].append(await _repetition(contenders[name], unit, agents, budget, admin))
                for name in names:
                    row = {"unit": unit, "agents": agents, "contender": name, **_median_row(reps[name])}
                    rows.append(row)
                    if progress:
                        print(
                            f"  {unit:<9} {agents:>3} {name:<9} {row['server_cpu_us']:>7.1f} us server CPU",
                            file=sys.stderr,
                            flush=True,
                        )
    finally:
        for contender in opened:
            await contender.close()
        await admin.aclose()
    return rows


def _row(rows: Sequence[dict[str, Any]], unit: str, agents: int, contender: str) -> dict[str, Any] | None:
    for row in rows:
        if (row["unit"], row["agents"], row["contender"]) == (unit, agents, contender):
            return row
    return None


def _ratio(rows: Sequence[dict[str, Any]], unit: str, agents: int, a: str, b: str, key: str) -> float | None:
    left, right = _row(rows, unit, agents, a), _row(rows, unit, agents, b)
    if left is None or right is None or not right[key]:
        return None
    return round(float(left[key]) / float(right[key]), 2)


def targets(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 21's targets, each with the figure reached."""
    checks = [
        (
            "server CPU per pair, 64 agents, vs pipe-blob",
            _ratio(rows, "pair", 64, "agentmem", "pipe-blob", "server_cpu_us"),
            "<=",
            2.0,
        ),
        (
            "server CPU per pair, 1 agent, vs raw-blob",
            _ratio(rows, "pair", 1, "agentmem", "raw-blob", "server_cpu_us"),
            "<=",
            1.3,
        ),
        (
            "server CPU per turn, 1 agent, vs raw-turn",
            _ratio(rows, "turn", 1, "agentmem", "raw-turn", "server_cpu_us"),
            "<=",
            1.0,
        ),
        (
            "pairs/s, 64 agents, vs raw-blob",
            _ratio(rows, "pair", 64, "agentmem", "raw-blob", "ops_per_s"),
            ">=",
            3.0,
        ),
        (
            "pairs/s, 1 agent, vs raw-blob",
            _ratio(rows, "pair", 1, "agentmem", "raw-blob", "ops_per_s"),
            ">=",
            0.9,
        ),
    ]
    out = []
    for name, value, op, bound in checks:
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        out.append({"target": f"{name} {op} {bound}", "ratio": value, "met": met})
    return out


def format_server_cost(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'unit':<10}{'agents':>6}  {'contender':<10}{'cmds/op':>8}{'cmd us/op':>10}"
        f"{'server CPU us/op':>17}{'client ops/s':>13}  commands per op"
    ]
    for row in rows:
        detail = " ".join(f"{k}={v:g}" for k, v in sorted(row["by_command"].items()))
        lines.append(
            f"{row['unit']:<10}{row['agents']:>6}  {row['contender']:<10}{row['commands']:>8.1f}"
            f"{row['command_usec']:>10.1f}{row['server_cpu_us']:>17.1f}{row['ops_per_s']:>13,.0f}  {detail}"
        )
    lines.append("")
    for agents in AGENTS:
        for name in ("agentmem", "raw-turn"):
            turn = _row(rows, "turn", agents, name)
            if turn is not None and turn["server_cpu_us"] > 0:
                lines.append(
                    f"one Redis core carries about {1e6 / turn['server_cpu_us']:,.0f} agent turns per second "
                    f"({name}, {agents} agent{'s' if agents > 1 else ''})"
                )
    lines.append("")
    for check in targets(rows):
        verdict = "n/a" if check["met"] is None else ("met" if check["met"] else "NOT met")
        lines.append(f"target {check['target']}: {check['ratio']} ({verdict})")
    return "\n".join(lines) + "\n"


def _binary() -> str | None:
    wanted = os.environ.get("AGENTMEM_REDIS_SERVER")
    if not wanted:
        return None
    from agentmem.testing.server import resolve_binary

    return str(resolve_binary(wanted))


def run(args: argparse.Namespace) -> int:
    """Measure, print the table, write ``server_cost.json`` under ``--out``."""
    repetitions: int = args.repeat or (QUICK_REPETITIONS if args.quick else FULL_REPETITIONS)
    seconds: float = args.duration or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    budget = Budget(
        seconds=seconds / repetitions, ops=None if args.ops is None else max(1, args.ops // repetitions)
    )
    prefix = f"agentmem-bench-{secrets.token_hex(4)}"
    started = time.perf_counter()
    try:
        with embedded_server(_binary()) if not args.url else contextlib.nullcontext(args.url) as server:
            url = server if isinstance(server, str) else server.url
            info = server_info(url)
            server_pid = None if isinstance(server, str) else server.pid
            placement = choose(args.cpus, server_started=server_pid is not None)
            with placed(placement, server_pid) as cpus:
                if not args.quiet:
                    print(describe(cpus), file=sys.stderr, flush=True)
                try:
                    rows = asyncio.run(server_cost(url, prefix, budget, repetitions, progress=not args.quiet))
                    rounds = QUICK_SHAPE_ROUNDS if args.quick else FULL_SHAPE_ROUNDS
                    shapes = asyncio.run(script_shapes(url, prefix, rounds, repetitions))
                finally:
                    asyncio.run(delete_keys(url, prefix))
    except NoServerBinaryError as exc:
        print(f"benchmarks: {exc}", file=sys.stderr)
        return 2
    except (redis.RedisError, OSError) as exc:
        print(f"benchmarks: the server failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    results = {
        "machine": machine_info(info, embedded=not args.url, argv=list(sys.argv[1:])),
        "cpus": cpus,
        "repetitions": repetitions,
        "seconds_per_scenario": seconds,
        "rows": rows,
        "targets": targets(rows),
        "shapes": shapes,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS_NAME).write_text(json.dumps(results, indent=2) + "\n")
    print(f"server: {info['flavor']} {info['version']}; medians of {repetitions} repetitions")
    print(describe(cpus))
    print(format_server_cost(rows), end="")
    print(format_shapes(shapes), end="")
    print(f"results: {out / RESULTS_NAME}")
    return 0
