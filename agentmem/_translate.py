"""The one boundary where redis-py errors become agentmem errors."""

from __future__ import annotations

import asyncio

from redis import exceptions as rexc

from agentmem.errors import AgentMemoryError, MemoryFullError, MemoryUnavailableError

__all__ = ["is_transient", "translate"]

# Errors after which the same call can succeed if it is sent again: the network
# dropped, the server is restarting (LOADING), a failover made it a replica
# (READONLY), the cluster is moving slots (TRYAGAIN), or the pool had no free
# connection in time. NOSCRIPT is handled where scripts are run, not here.
_TRANSIENT: tuple[type[BaseException], ...] = (
    rexc.ConnectionError,  # includes BusyLoadingError and MaxConnectionsError
    rexc.TimeoutError,
    rexc.ReadOnlyError,
    rexc.TryAgainError,
    rexc.ClusterDownError,  # includes MasterDownError
    asyncio.TimeoutError,
    ConnectionResetError,
    BrokenPipeError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a retry of the same call may succeed."""
    return isinstance(exc, _TRANSIENT)


def _is_oom(exc: BaseException) -> bool:
    # Redis >= 7 replies -OOM (redis-py: OutOfMemoryError); Redis 6.2 wraps a script's
    # OOM as "ERR Error running script ... -OOM command not allowed ...".
    return isinstance(exc, rexc.OutOfMemoryError) or (
        isinstance(exc, rexc.ResponseError) and "OOM command not allowed" in str(exc)
    )


def translate(exc: BaseException, *, operation: str, attempts: int = 1) -> AgentMemoryError:
    """Map a redis-py (or socket) error to the agentmem error a caller should see."""
    if isinstance(exc, AgentMemoryError):
        return exc
    if _is_oom(exc):
        return MemoryFullError(
            f"{operation}: the server refused the write for lack of memory "
            f"(maxmemory reached under noeviction); nothing was written: {exc}"
        )
    if is_transient(exc):
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return MemoryUnavailableError(
            f"{operation}: Redis unavailable after {tries}: {type(exc).__name__}: {exc}"
        )
    return AgentMemoryError(f"{operation}: Redis error: {type(exc).__name__}: {exc}")
