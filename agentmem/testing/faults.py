"""Server-side faults driven through an admin connection: killed clients, memory pressure.

Both restore the server when they are done, even when the test fails. Memory
pressure changes server-wide settings, so use it on a private server
(``agentmem_server_factory``), not on the server other workers share.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import ResponseError

__all__ = ["kill_connections", "memory_pressure"]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def kill_connections(admin: Redis, client_name: str) -> int:
    """Kill every connection named ``client_name`` (CLIENT SETNAME); return how many.

    Connections are killed by id, so other clients, including ``admin`` itself unless
    it carries the same name, are untouched.
    """
    if not client_name:
        raise ValueError("client_name must be non-empty: an empty name matches unnamed clients")
    killed = 0
    for client in await admin.client_list():
        if client.get("name") == client_name:
            # A connection may close between CLIENT LIST and CLIENT KILL; count what died.
            try:
                killed += int(await admin.client_kill_filter(_id=client["id"]))
            except ResponseError as exc:
                if "no such client" not in str(exc).lower():
                    raise
    return killed


@asynccontextmanager
async def memory_pressure(
    admin: Redis, maxmemory: str | int, policy: str = "noeviction"
) -> AsyncIterator[None]:
    """Set ``maxmemory`` and ``maxmemory-policy`` inside the block; restore both after.

    ``memory_pressure(admin, 1, "noeviction")`` makes every write fail with OOM while
    reads still work.
    """
    saved: dict[str, str] = {}
    for name in ("maxmemory", "maxmemory-policy"):
        reply = await admin.config_get(name)
        saved[name] = next(_text(v) for k, v in reply.items() if _text(k) == name)
    try:
        await admin.config_set("maxmemory-policy", policy)
        await admin.config_set("maxmemory", str(maxmemory))
        yield
    finally:
        # maxmemory first: CONFIG SET is allowed over the limit, and lifting it ends the OOM.
        await admin.config_set("maxmemory", saved["maxmemory"])
        await admin.config_set("maxmemory-policy", saved["maxmemory-policy"])
