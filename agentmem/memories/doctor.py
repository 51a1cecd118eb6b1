"""``agentmem doctor --prefix P``: the memories index of a store, as the server has it."""

from __future__ import annotations

from typing import Any

from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem.doctor import Finding
from agentmem.memories.index import info_fields, is_unknown_command

__all__ = ["check_memories_index"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def check_memories_index(client: Redis, prefix: str) -> list[Finding]:
    """One finding per memories index of ``prefix`` on this node: present, documents,
    indexing failures; or why there is none (no query engine: a warning, since
    ``store.memories`` would raise SearchUnavailableError)."""
    check = "memories index"
    try:
        names: Any = await client.execute_command("FT._LIST")  # type: ignore[no-untyped-call]
    except rexc.ResponseError as exc:
        if is_unknown_command(exc):
            return [
                Finding(
                    check,
                    "warn",
                    "no query engine (FT.* unknown)",
                    why="store.memories raises SearchUnavailableError on this server",
                    fix="use Redis 8, Redis Stack, valkey-search or a managed Redis with search",
                )
            ]
        return [Finding(check, "warn", f"FT._LIST refused: {exc}", why="the index could not be read")]
    ours = sorted(
        _text(n)
        for n in names
        if (_text(n).startswith(f"{prefix}:{{") and _text(n).endswith("}:memidx"))
        or _text(n) == f"{prefix}:{{memidx}}"
    )
    if not ours:
        return [Finding(check, "ok", "not created yet (store.memories creates it on first use)")]
    findings: list[Finding] = []
    for name in ours:
        info = info_fields(await client.execute_command("FT.INFO", name))  # type: ignore[no-untyped-call]
        documents = int(_text(info.get("num_docs", 0)))
        failures = int(_text(info.get("hash_indexing_failures", 0)))
        seen = f"{name}: {documents} documents, {failures} indexing failures"
        if failures:
            findings.append(
                Finding(
                    check,
                    "warn",
                    seen,
                    why="memories that failed indexing are never found by a search",
                    fix=f"FT.INFO {name} names the last failing key and why",
                )
            )
        else:
            findings.append(Finding(check, "ok", seen))
    return findings
