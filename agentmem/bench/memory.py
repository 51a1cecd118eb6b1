"""``agentmem bench --memory``: server memory per session, agentmem against the raw layouts.

Each layout writes the same sessions (a 12-field ~1.5 KB context, 20 messages of ~200 B
written as 10 exchanges of 2, 5 user facts) to one server, one layout after the other;
the figure is the server's ``used_memory`` change divided by the sessions, which counts
what ``MEMORY USAGE`` leaves out (the keyspace and expiry entries of every key) and
leaves out the clients' buffers (``mem_clients_normal``). Each
layout's keys are deleted before the next one is written.

* ``agentmem``: the store's own calls (``save_context``, ``append_messages`` per
  exchange, ``remember``), so its append log holds one operation id per exchange.
* ``agentmem-at-rest``: the same sessions once their append logs are gone, as their TTL
  removes them one de-duplication window (at least a minute) after a session's last
  append: what a stored session that is not in a conversation right now costs.
* ``raw-blob``: the context and the facts as orjson strings (``SET ... EX``), the history
  as a list.
* ``raw-hash``: the context and the facts as hashes of orjson fields, the history as a list.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable
from typing import Any, Final

import orjson
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.bench.probes import delete_keys
from agentmem.bench.workload import CONTEXT, MAX_HISTORY, MESSAGES, PROFILE, SESSION_TTL
from agentmem.keys import KeySchema

__all__ = ["MEMORY_CONTEXT", "MEMORY_EXCHANGES", "memory_per_session"]

#: The context of the memory run: 12 top-level fields, ~1.5 KB of orjson.
MEMORY_CONTEXT: Final[dict[str, Any]] = {
    **{key: value for key, value in CONTEXT.items() if key != "summary"},
    "summary": "Parcel 2 (ear cushions) shows delivered, never arrived.",
    "locale": "en-US",
}
#: Exchanges (appends of the two ~200 B messages) per session: 20 messages.
MEMORY_EXCHANGES: Final = 10
#: Sessions written per gather (agentmem) or pipeline (raw layouts).
CHUNK: Final = 250
#: Sessions whose keys ``MEMORY USAGE`` is asked about, for the per-key breakdown.
SAMPLED: Final = 20

Fill = Callable[[Redis, str, list[str]], Awaitable[None]]


def _ids(count: int) -> list[str]:
    return [f"session-{i}" for i in range(count)]


async def _fill_agentmem(store: AgentMemoryStore, ids: list[str]) -> None:
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        await asyncio.gather(*(store.save_context(sid, MEMORY_CONTEXT) for sid in chunk))
        await asyncio.gather(*(store.remember(f"user-{sid}", PROFILE) for sid in chunk))
        for _ in range(MEMORY_EXCHANGES):
            await asyncio.gather(*(store.append_messages(sid, MESSAGES) for sid in chunk))


async def _fill_raw(client: Redis, prefix: str, ids: list[str], *, shape: str) -> None:
    schema = KeySchema(prefix)
    history = [orjson.dumps(m) for m in MESSAGES] * MEMORY_EXCHANGES
    context_fields = {key: orjson.dumps(value) for key, value in MEMORY_CONTEXT.items()}
    fact_fields = {key: orjson.dumps(value) for key, value in PROFILE.items()}
    for start in range(0, len(ids), CHUNK):
        async with client.pipeline(transaction=False) as pipe:
            for sid in ids[start : start + CHUNK]:
                keys = schema.session(sid)
                facts = schema.profile(f"user-{sid}")
                if shape == "blob":
                    pipe.set(keys.context, orjson.dumps(MEMORY_CONTEXT), ex=SESSION_TTL)
                    pipe.set(facts, orjson.dumps(PROFILE))
                else:
                    pipe.hset(keys.context, mapping=context_fields)  # type: ignore[arg-type]
                    pipe.expire(keys.context, SESSION_TTL)
                    pipe.hset(facts, mapping=fact_fields)  # type: ignore[arg-type]
                pipe.rpush(keys.history, *history)
                pipe.expire(keys.history, SESSION_TTL)
            await pipe.execute()


async def _used_memory(client: Redis) -> int:
    """``used_memory`` without the clients' buffers: a store's pipelines of 1.5 KB writes
    grow its connections' query buffers, which would count as memory per session."""
    info: dict[str, Any] = await client.info("memory")
    return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))


async def _per_key(client: Redis, prefix: str, ids: list[str]) -> dict[str, float]:
    """Median ``MEMORY USAGE`` (every element sampled) of each part of a session: its
    context (agentmem: the base and the merged-fields hash), history, append log, facts."""
    schema = KeySchema(prefix)
    sample = ids[:SAMPLED]
    parts: dict[str, list[tuple[str, ...]]] = {
        "context": [(schema.session(sid).context, schema.session(sid).base) for sid in sample],
        "history": [(schema.session(sid).history,) for sid in sample],
        "append_log": [(schema.session(sid).log,) for sid in sample],
        "facts": [(schema.profile(f"user-{sid}"),) for sid in sample],
    }
    sizes: dict[str, float] = {}
    for part, per_session in parts.items():
        values = []
        for keys in per_session:  # loops, not nested comprehensions: Python 3.10 refuses await there
            total = 0
            for key in keys:
                total += int(await client.memory_usage(key, samples=0) or 0)
            values.append(total)
        if any(values):
            sizes[part] = statistics.median(values)
    return sizes


async def _log_keys_expired(client: Redis, prefix: str, ids: list[str]) -> None:
    """Remove every session's append log, as its TTL does one de-duplication window
    (at least a minute) after the session's last append."""
    schema = KeySchema(prefix)
    for start in range(0, len(ids), CHUNK):
        await client.unlink(*(schema.session(sid).log for sid in ids[start : start + CHUNK]))


async def memory_per_session(url: str, prefix: str, sessions: int) -> dict[str, Any]:
    """Bytes of server memory per session for each layout, and agentmem's over the raw blob's."""
    client = Redis.from_url(url)
    store = AgentMemoryStore.from_url(
        url, prefix=f"{prefix}:agentmem", ttl=SESSION_TTL, max_history=MAX_HISTORY
    )
    ids = _ids(sessions)
    layouts: dict[str, Callable[[str], Awaitable[None]]] = {
        "agentmem": lambda p: _fill_agentmem(store, ids),
        "raw-blob": lambda p: _fill_raw(client, p, ids, shape="blob"),
        "raw-hash": lambda p: _fill_raw(client, p, ids, shape="hash"),
    }
    rows: dict[str, dict[str, Any]] = {}
    try:
        # Connections (and their buffers) exist before the first measurement starts.
        await asyncio.gather(*(store.load_context(sid) for sid in ids[:CHUNK]))
        await client.ping()
        for name, fill in layouts.items():
            layout_prefix = f"{prefix}:{name}"
            before = await _used_memory(client)
            await fill(layout_prefix)
            after = await _used_memory(client)
            rows[name] = {
                "bytes_per_session": round((after - before) / sessions, 1),
                "per_key": await _per_key(client, layout_prefix, ids),
            }
            if name == "agentmem":
                await _log_keys_expired(client, layout_prefix, ids)
                rest = round((await _used_memory(client) - before) / sessions, 1)
                rows["agentmem-at-rest"] = {"bytes_per_session": rest, "per_key": {}}
            await delete_keys(url, layout_prefix)
    finally:
        await store.aclose()
        await client.aclose()
    blob = rows["raw-blob"]["bytes_per_session"]
    for row in rows.values():
        row["over_raw_blob"] = round(row["bytes_per_session"] / blob, 3) if blob > 0 else None
    return {
        "sessions": sessions,
        "context_bytes": len(orjson.dumps(MEMORY_CONTEXT)),
        "context_fields": len(MEMORY_CONTEXT),
        "messages": MEMORY_EXCHANGES * len(MESSAGES),
        "message_bytes": [len(orjson.dumps(m)) for m in MESSAGES],
        "facts": len(PROFILE),
        "layouts": rows,
        "million_sessions_gib": {
            name: round(row["bytes_per_session"] * 1_000_000 / 2**30, 2) for name, row in rows.items()
        },
    }


def format_memory(result: dict[str, Any]) -> str:
    """The memory run as aligned plain text."""
    lines = [
        f"server memory per session: used_memory change / {result['sessions']:,} sessions; "
        f"context {result['context_fields']} fields, {result['context_bytes']:,} B of orjson; "
        f"{result['messages']} messages of ~{max(result['message_bytes'])} B in "
        f"{result['messages'] // 2} appends; {result['facts']} user facts",
        "layout".ljust(18)
        + "per session".rjust(13)
        + "x raw-blob".rjust(12)
        + "1M sessions".rjust(13)
        + "   MEMORY USAGE per key (median)",
    ]
    for name, row in result["layouts"].items():
        ratio = row["over_raw_blob"]
        keys = ", ".join(f"{part} {size:,.0f} B" for part, size in row["per_key"].items()) or "-"
        lines.append(
            name.ljust(18)
            + f"{row['bytes_per_session']:,.0f} B".rjust(13)
            + ("-" if ratio is None else f"{ratio:.2f}x").rjust(12)
            + f"{result['million_sessions_gib'][name]:.2f} GiB".rjust(13)
            + f"   {keys}"
        )
    return "\n".join(lines) + "\n"
