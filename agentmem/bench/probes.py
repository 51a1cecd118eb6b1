"""Counting, not timing: round trips per store call, and server memory per session.

Round trips are counted by the store's own auto-pipeliner (``store.engine.transport.batches``: one
pipeline is one round trip) and cross-checked on the server with ``INFO commandstats``
(``EVALSHA`` calls: one per script run). Memory is ``MEMORY USAGE key SAMPLES 0`` (every
element counted) of each key a session holds in steady state: a full history and, for
agentmem, a full append log.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from redis.asyncio import Redis

from agentmem import AgentMemoryStore
from agentmem.bench.contenders import make_sessions
from agentmem.bench.workload import (
    CONTEXT,
    CONTEXT_UPDATE,
    HISTORY_LAST,
    MAX_HISTORY,
    MESSAGES,
    PROFILE,
    SESSION_TTL,
)
from agentmem.keys import KeySchema, escape_glob
from agentmem.scripts import APPEND_LOG_IDS

__all__ = ["delete_keys", "round_trips", "session_memory"]

#: agentmem's append log keeps this many recent operation ids.
APPEND_LOG_SIZE = APPEND_LOG_IDS
#: Concurrent tasks for the "calls per pipeline" line.
PIPELINED_TASKS = 64


async def _evalsha_calls(client: Redis) -> int:
    stats: dict[str, Any] = await client.info("commandstats")
    entry = stats.get("cmdstat_evalsha", {})
    return int(entry.get("calls", 0)) if isinstance(entry, dict) else 0


async def round_trips(url: str, prefix: str, calls: int) -> dict[str, Any]:
    """Pipelines and script runs per call of each store method, one call at a time.

    ``evalsha_per_call`` is server-wide: on a shared server, others' scripts inflate it.
    """
    store = AgentMemoryStore.from_url(url, prefix=prefix, ttl=SESSION_TTL, max_history=MAX_HISTORY)
    admin = Redis.from_url(url)
    pipeliner: Any = store.engine.transport
    if pipeliner is None:  # pragma: no cover - auto_pipeline is on by default
        raise RuntimeError("round trips are counted by the auto-pipeliner, which is off")
    methods: dict[str, Callable[[], Awaitable[object]]] = {
        "save_context": lambda: store.save_context("s", CONTEXT),
        "load_context": lambda: store.load_context("s"),
        "update_context": lambda: store.update_context("s", CONTEXT_UPDATE),
        "append_messages": lambda: store.append_messages("s", MESSAGES),
        "load_history": lambda: store.load_history("s", last=HISTORY_LAST),
        "load_turn": lambda: store.load_turn("s", user_id="u", last=HISTORY_LAST),
    }
    result: dict[str, Any] = {}
    try:
        await store.remember("u", PROFILE)
        for name, call in methods.items():
            await call()  # loads the script, so the count below is the steady state
            batches, evalsha = pipeliner.batches, await _evalsha_calls(admin)
            for _ in range(calls):
                await call()
            result[name] = {
                "pipelines_per_call": (pipeliner.batches - batches) / calls,
                "evalsha_per_call": (await _evalsha_calls(admin) - evalsha) / calls,
            }
        # Concurrent tasks share pipelines: how many load_turn calls one round trip carries.
        batches, sent = pipeliner.batches, pipeliner.calls
        for _ in range(max(1, calls // 10)):
            await asyncio.gather(
                *(store.load_turn(f"s{i}", user_id="u", last=HISTORY_LAST) for i in range(PIPELINED_TASKS))
            )
        result["load_turn_concurrent"] = {
            "tasks": PIPELINED_TASKS,
            "store_calls_per_pipeline": PIPELINED_TASKS * max(1, calls // 10) / (pipeliner.batches - batches),
            "scripts_per_pipeline": (pipeliner.calls - sent) / (pipeliner.batches - batches),
        }
    finally:
        await store.aclose()
        await admin.aclose()
    return result


async def _usage(client: Redis, keys: list[str]) -> tuple[float, str]:
    """Median ``MEMORY USAGE`` of ``keys`` (all elements sampled) and the first key's encoding."""
    sizes = [int(await client.memory_usage(key, samples=0) or 0) for key in keys]
    encoding = await client.object("ENCODING", keys[0]) if keys else b""
    text = encoding.decode() if isinstance(encoding, bytes) else str(encoding)
    return statistics.median(sizes) if sizes else 0.0, text


async def session_memory(url: str, prefix: str, sessions: int) -> dict[str, Any]:
    """Bytes per session on the server: agentmem's layout vs a JSON blob, in steady state.

    Steady state: the history is full (``MAX_HISTORY`` messages) and, for agentmem, the
    append log holds its ``APPEND_LOG_SIZE`` most recent operation ids.
    """
    am_prefix = f"{prefix}:mem-am"
    store = AgentMemoryStore.from_url(url, prefix=am_prefix, ttl=SESSION_TTL, max_history=MAX_HISTORY)
    client = Redis.from_url(url)
    schema = KeySchema(am_prefix)
    ids = [f"session-{i}" for i in range(sessions)]
    appends = max(APPEND_LOG_SIZE, MAX_HISTORY // len(MESSAGES)) + 2
    try:
        await asyncio.gather(*(store.save_context(sid, CONTEXT) for sid in ids))
        for _ in range(appends):
            await asyncio.gather(*(store.append_messages(sid, MESSAGES) for sid in ids))
        am = [schema.session(sid) for sid in ids]
        blob_sessions = make_sessions(f"{prefix}:mem-blob", sessions)
        json_sessions = make_sessions(f"{prefix}:mem-json", sessions)
        history = [orjson.dumps(m) for m in MESSAGES] * (MAX_HISTORY // len(MESSAGES))
        async with client.pipeline(transaction=False) as pipe:
            for blob, plain in zip(blob_sessions, json_sessions, strict=True):
                pipe.set(blob.context_key, orjson.dumps(CONTEXT), ex=SESSION_TTL)
                pipe.set(plain.context_key, json.dumps(CONTEXT).encode(), ex=SESSION_TTL)
                pipe.rpush(blob.history_key, *history)
            await pipe.execute()

        am_context, am_context_encoding = await _usage(client, [k.base for k in am])
        am_history, history_encoding = await _usage(client, [k.history for k in am])
        am_appends, appends_encoding = await _usage(client, [k.log for k in am])
        blob_context, blob_encoding = await _usage(client, [s.context_key for s in blob_sessions])
        json_context, _ = await _usage(client, [s.context_key for s in json_sessions])
        blob_history, _ = await _usage(client, [s.history_key for s in blob_sessions])
    finally:
        await store.aclose()
        await client.aclose()
    return {
        "sessions": sessions,
        "payload_bytes": len(orjson.dumps(CONTEXT)),
        "context": {
            "agentmem": am_context,
            "agentmem_encoding": am_context_encoding,
            "orjson_blob": blob_context,
            "json_blob": json_context,
            "blob_encoding": blob_encoding,
            "agentmem_over_blob": am_context / blob_context if blob_context else None,
        },
        "history": {
            "messages": MAX_HISTORY,
            "agentmem": am_history,
            "raw": blob_history,
            "encoding": history_encoding,
        },
        "append_log": {"ids": APPEND_LOG_SIZE, "agentmem": am_appends, "encoding": appends_encoding},
        "per_session_total": {
            "agentmem": am_context + am_history + am_appends,
            "orjson_blob": blob_context + blob_history,
        },
    }


async def delete_keys(url: str, prefix: str, *, batch: int = 500) -> int:
    """UNLINK every key under ``prefix:`` (SCAN, never FLUSHDB); return how many."""
    client = Redis.from_url(url)
    deleted = 0
    try:
        keys: list[bytes] = []
        async for key in client.scan_iter(match=escape_glob(prefix) + ":*", count=batch):
            keys.append(key)
            if len(keys) >= batch:
                deleted += int(await client.unlink(*keys))
                keys.clear()
        if keys:
            deleted += int(await client.unlink(*keys))
    finally:
        await client.aclose()
    return deleted
