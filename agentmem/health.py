"""A snapshot of how a store and its server are doing, for dashboards and probes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from agentmem.breaker import CircuitBreaker
from agentmem.calls import PoolStats
from agentmem.retry import RetryStats

__all__ = ["Health", "collect_health", "parse_version", "pool_usage", "server_identity"]


def parse_version(text: str) -> tuple[int, ...]:
    """``"7.0.15"`` -> ``(7, 0, 15)``; anything after the leading digits of a part is ignored."""
    parts: list[int] = []
    for piece in text.split("."):
        digits = re.match(r"\d+", piece)
        if digits is None:
            break
        parts.append(int(digits.group()))
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    return tuple(parts)


def server_identity(info: Mapping[str, Any]) -> tuple[str, str]:
    """``(flavor, version)`` from INFO: Valkey reports ``valkey_version`` beside ``redis_version``."""
    if info.get("server_name") == "valkey" or "valkey_version" in info:
        return "valkey", str(info.get("valkey_version") or info.get("redis_version") or "unknown")
    return "redis", str(info.get("redis_version") or "unknown")


@dataclass(frozen=True, slots=True)
class Health:
    """What ``store.health()`` could see. A field the server would not show to this user
    (``INFO`` refused by its ACL) is ``None``, and ``skipped`` says what was left out and why."""

    server: str | None  # "redis" or "valkey"
    server_version: str | None
    latency_ms: float | None
    pool_in_use: int
    pool_size: int
    breaker_state: str
    consecutive_failures: int
    retries: int
    failed_calls: int
    journal_backlog: int
    evicted_keys: int | None
    expired_keys: int | None
    maxmemory_policy: str | None
    skipped: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def pool_usage(pools: Iterable[PoolStats]) -> tuple[int, int]:
    """Connections in use by calls and the most the pools open, summed over the pools
    (a connection kept idle for the next inline send is not in use)."""
    figures = list(pools)
    return sum(max(0, p.in_use - p.held) for p in figures), sum(p.size for p in figures)


def collect_health(
    *,
    info: dict[str, Any] | None,
    latency: float | None,
    pools: Iterable[PoolStats],
    breaker: CircuitBreaker,
    stats: RetryStats,
    journal_backlog: int = 0,
    skipped: tuple[str, ...] = (),
) -> Health:
    """A :class:`Health`; ``info=None`` when the server refused INFO (fields it feeds are None)."""
    in_use, size = pool_usage(pools)
    server, version = server_identity(info) if info is not None else (None, None)
    known = info if info is not None else {}
    return Health(
        server=server,
        server_version=version,
        latency_ms=round(latency * 1000, 3) if latency is not None else None,
        pool_in_use=in_use,
        pool_size=size,
        breaker_state=breaker.state.value,
        consecutive_failures=breaker.consecutive_failures,
        retries=stats.retries,
        failed_calls=stats.failures,
        journal_backlog=journal_backlog,
        evicted_keys=int(info.get("evicted_keys", 0)) if info is not None else None,
        expired_keys=int(info.get("expired_keys", 0)) if info is not None else None,
        maxmemory_policy=known.get("maxmemory_policy"),
        skipped=skipped,
    )
