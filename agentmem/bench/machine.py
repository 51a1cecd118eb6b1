"""What the numbers were measured on: CPU, Python, libraries, server."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis

import agentmem

__all__ = ["cpu_model", "machine_info", "redact_url", "server_info"]


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def redact_url(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def server_info(url: str) -> dict[str, Any]:
    """Flavor (redis/valkey) and version as the server reports them in ``INFO server``."""
    client = redis.Redis.from_url(url)
    try:
        info: dict[str, Any] = client.info("server")
        memory: dict[str, Any] = client.info("memory")
    finally:
        client.close()
    flavor = str(info.get("server_name") or "redis")
    return {
        "flavor": flavor,
        "version": str(info.get(f"{flavor}_version") or info.get("redis_version")),
        "mode": info.get("redis_mode"),
        "arch_bits": info.get("arch_bits"),
        "io_threads": info.get("io_threads_active"),
        "maxmemory_policy": memory.get("maxmemory_policy"),
        "url": redact_url(url),
    }


def machine_info(server: dict[str, Any], *, embedded: bool, argv: list[str]) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "redis_py": redis.__version__,
        "hiredis": _version("hiredis"),
        "orjson": _version("orjson"),
        "agentmem": agentmem.__version__,  # the distribution is agentmem-redis; ask the package
        "server": {**server, "embedded": embedded},
        "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": argv,
    }
