"""Is the server there? One PING on a fresh connection, for the circuit breaker's prober.

A fresh connection, not a pooled one: after a restart or a connection kill every
pooled connection is dead, and a probe through one would only learn that. The
connection is made with the pool's own settings (address, TLS, credentials,
timeouts), so a probe that passes means the store's next call can connect too.
"""

from __future__ import annotations

from redis.asyncio import Redis

from agentmem._translate import is_transient

__all__ = ["ping_fresh_connection"]


async def ping_fresh_connection(client: Redis) -> None:
    """Return once the server answered; raise while it is unreachable.

    Any answer counts, an error reply included: a server that says ``NOPERM`` or
    ``WRONGPASS`` is up, and the callers it releases get that error, typed, instead of
    waiting for an outage that is not one. ``LOADING`` (a restart still reading its
    data) and a timeout count as unreachable.
    """
    pool = client.connection_pool
    connection = pool.connection_class(**pool.connection_kwargs)
    try:
        await connection.connect()  # type: ignore[no-untyped-call]
        await connection.send_command("PING")
        await connection.read_response()
    except Exception as exc:
        if is_transient(exc):
            raise
    finally:
        await connection.disconnect()
