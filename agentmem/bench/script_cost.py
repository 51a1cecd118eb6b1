"""What one save or load costs the server in each shape it could be sent in: agentmem's script
(``EVALSHA``), the same commands in ``MULTI``/``EXEC``, or plain commands (not atomic: a
reference only), with and without the TTL refreshes. Part of ``agentmem bench --server-cost``.

Every shape runs hand-pipelined, :data:`BATCH` operations per round trip on one connection,
on the sessions agentmem's own keys would use (the context as the base string, no merged
fields), so the figures differ by the shape alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis
from redis.asyncio import Redis

from agentmem.bench.workload import CONTEXT, SESSION_TTL
from agentmem.codec import packed_version
from agentmem.keys import KeySchema, SessionKeys
from agentmem.scripts import READ_SESSION, WRITE_CONTEXT

__all__ = ["BATCH", "SHAPES", "format_shapes", "script_shapes"]

BATCH = 64
TTL_MS = SESSION_TTL * 1000
_VERSION = packed_version(1)
_BASE = _VERSION + orjson.dumps(CONTEXT)

Command = tuple[Any, ...]
Shape = Callable[[SessionKeys, dict[str, str]], list[Command]]


def _multi(*commands: Command) -> list[Command]:
    return [("MULTI",), *commands, ("EXEC",)]


#: (operation, shape name) -> the commands of one operation on one session.
SHAPES: dict[tuple[str, str], Shape] = {
    ("save", "evalsha, refresh"): lambda k, sha: [
        ("EVALSHA", sha["write"], 4, *k.core(), TTL_MS, _VERSION, "replace", _BASE[8:])
    ],
    ("save", "evalsha, coalesced (2 keys)"): lambda k, sha: [
        ("EVALSHA", sha["write"], 2, k.context, k.base, TTL_MS, _VERSION, "replace", _BASE[8:])
    ],
    ("save", "multi, refresh"): lambda k, sha: _multi(
        ("SET", k.base, _BASE, "PX", TTL_MS),
        ("DEL", k.context),
        ("PEXPIRE", k.history, TTL_MS),
        ("PEXPIRE", k.deleted, TTL_MS),
    ),
    ("save", "multi, no refresh"): lambda k, sha: _multi(
        ("SET", k.base, _BASE, "PX", TTL_MS), ("DEL", k.context)
    ),
    ("save", "plain SET+DEL (not atomic)"): lambda k, sha: [
        ("SET", k.base, _BASE, "PX", TTL_MS),
        ("DEL", k.context),
    ],
    ("save", "SET EX (raw blob)"): lambda k, sha: [("SET", k.base, _BASE, "EX", SESSION_TTL)],
    ("save", "evalsha 'return 1', same args"): lambda k, sha: [
        ("EVALSHA", sha["nothing"], 4, *k.core(), TTL_MS, _VERSION, "replace", _BASE[8:])
    ],
    ("load", "evalsha, refresh"): lambda k, sha: [("EVALSHA", sha["read"], 4, *k.core(), TTL_MS, 1, 0)],
    ("load", "evalsha, no refresh (coalesced)"): lambda k, sha: [
        ("EVALSHA", sha["read"], 4, *k.core(), 0, 1, 0)
    ],
    ("load", "multi, refresh"): lambda k, sha: _multi(
        ("HGETALL", k.context),
        ("GETEX", k.base, "PX", TTL_MS),
        ("PEXPIRE", k.history, TTL_MS),
        ("PEXPIRE", k.deleted, TTL_MS),
    ),
    ("load", "multi, no refresh"): lambda k, sha: _multi(("HGETALL", k.context), ("GET", k.base)),
    ("load", "plain HGETALL+GET (not atomic)"): lambda k, sha: [("HGETALL", k.context), ("GET", k.base)],
    ("load", "GET (raw blob)"): lambda k, sha: [("GET", k.base)],
}


async def _load(client: Redis, flagged: str, plain: str) -> str:
    """A script's SHA as this server takes it: with its flags line (7.0+), or plain on 6.2,
    which cannot compile a ``#!lua`` line."""
    try:
        return str(await client.script_load(flagged))
    except redis.ResponseError:
        return str(await client.script_load(plain))


async def _cpu(admin: Redis) -> tuple[float, int]:
    cpu: dict[str, Any] = await admin.info("cpu")
    stats: dict[str, Any] = await admin.info("commandstats")
    calls = sum(int(v["calls"]) for n, v in stats.items() if isinstance(v, dict) and n != "cmdstat_info")
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls


async def script_shapes(url: str, prefix: str, rounds: int, repetitions: int) -> list[dict[str, Any]]:
    """Server CPU and commands per operation of every shape: medians of ``repetitions`` runs of
    ``rounds`` pipelines of :data:`BATCH` operations."""
    client = Redis.from_url(url)
    admin = Redis.from_url(url)
    schema = KeySchema(f"{prefix}:shapes")
    sessions = [schema.session(f"s{i}") for i in range(BATCH)]
    rows: list[dict[str, Any]] = []
    try:
        sha = {
            "write": await _load(client, WRITE_CONTEXT.flagged, WRITE_CONTEXT.plain),
            "read": await _load(client, READ_SESSION.flagged, READ_SESSION.plain),
            # the floor: a script's fixed cost with the same keys and arguments, doing nothing
            "nothing": await _load(client, "#!lua flags=allow-oom\nreturn 1", "return 1"),
        }
        for keys in sessions:
            await client.set(keys.base, _BASE, px=TTL_MS)
            await client.rpush(keys.history, b"{}")
        for (operation, name), shape in SHAPES.items():
            commands = [c for keys in sessions for c in shape(keys, sha)]
            cpu_runs: list[float] = []
            calls_per_op = 0.0
            for _ in range(repetitions + 1):  # the first run warms up
                before, calls_before = await _cpu(admin)
                for _ in range(rounds):
                    async with client.pipeline(transaction=False) as pipe:
                        for command in commands:
                            pipe.execute_command(*command)
                        await pipe.execute()
                after, calls_after = await _cpu(admin)
                cpu_runs.append((after - before) * 1e6 / (rounds * BATCH))
                calls_per_op = (calls_after - calls_before) / (rounds * BATCH)
            rows.append(
                {
                    "operation": operation,
                    "shape": name,
                    "commands": round(calls_per_op, 2),
                    "server_cpu_us": round(statistics.median(cpu_runs[1:]), 2),
                    "server_cpu_us_runs": [round(x, 2) for x in cpu_runs[1:]],
                }
            )
    finally:
        await client.aclose()
        await admin.aclose()
    return rows


def format_shapes(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"one operation in each shape, {BATCH} per pipeline:",
        f"{'op':<5} {'shape':<34}{'cmds':>6}{'server CPU us':>15}",
    ]
    for row in rows:
        lines.append(
            f"{row['operation']:<5} {row['shape']:<34}{row['commands']:>6.1f}{row['server_cpu_us']:>15.2f}"
        )
    return "\n".join(lines) + "\n"
