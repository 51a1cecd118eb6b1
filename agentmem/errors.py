"""The exception family of agentmem.

Every failure a store call can meet is one of these; redis-py errors are translated
in one place (:func:`agentmem._translate.translate`) and chained with ``from``.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AgentMemoryError",
    "CircuitOpenError",
    "ContextTooLargeError",
    "EmbeddingError",
    "IndexMismatchError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "MemoryCorruptedError",
    "MemoryFullError",
    "MemoryPermissionError",
    "MemoryUnavailableError",
    "MissingDependencyError",
    "ReplicationTimeoutError",
    "SearchUnavailableError",
    "SerializationError",
    "StoreClosedError",
    "UnflushedJournalError",
]


class AgentMemoryError(Exception):
    """Root of every agentmem error. A server error with no better name (WRONGTYPE...) is this."""


class MemoryUnavailableError(AgentMemoryError):
    """The server could not be reached, timed out, or no pooled connection came free,
    after the store's retries ran out. The write may or may not have been applied
    (a timeout can hide a write the server did apply); every store write is safe to repeat."""


class CircuitOpenError(MemoryUnavailableError):
    """The circuit breaker is open after repeated failures: the call failed fast and sent nothing."""


class SerializationError(AgentMemoryError, TypeError):
    """A value could not be encoded as JSON by orjson. Raised before any I/O: nothing was written."""


class ContextTooLargeError(AgentMemoryError, ValueError):
    """What one call would write is larger than ``max_value_bytes``. Nothing was written."""


class MemoryCorruptedError(AgentMemoryError):
    """Stored data could not be decoded. Distinct from "no memory" (``None`` / ``{}``)."""


class MemoryFullError(AgentMemoryError):
    """The server refused the write for lack of memory (OOM under ``noeviction``). Nothing was written."""


class InvalidKeyError(AgentMemoryError, ValueError):
    """A session or user id is not a non-empty ``str`` of at most 512 UTF-8 bytes. Nothing was sent."""


class InvalidArgumentError(AgentMemoryError, ValueError):
    """An argument other than an id is out of range (``last=0``, a negative count). Nothing was sent."""


class MemoryPermissionError(AgentMemoryError):
    """The server refused the credentials or the command (``WRONGPASS``, ``NOPERM``, ``NOAUTH``).

    Not an outage: never retried and never counted by the circuit breaker, because
    repeating the same call with the same credentials cannot succeed. Nothing was written,
    except when the server refused ``WAIT`` (``wait_replicas`` under a rule without it):
    the write is then applied on the primary, unacknowledged, and the message says so
    (``applied`` is ``True``); or ``MULTI`` (a rule from before the store sent
    transactions): the server then ran a save's commands one by one, not atomically
    (``applied`` when they all ran).
    """

    #: The write was applied (a refused ``WAIT`` after it, or a refused ``MULTI`` before it).
    applied: bool = False


class ReplicationTimeoutError(AgentMemoryError):
    """With ``wait_replicas=N``: the write reached the primary (it is applied there) but
    fewer than N replicas acknowledged it within ``wait_timeout``.

    It may be lost if that primary fails before a replica receives it. Every store write
    is safe to repeat (same result, no duplicate append), so repeat it, or treat it as
    written-but-not-yet-durable. Not retried by the store (a replica that is down or
    lagging stays so for longer than a retry) and not counted by the circuit breaker.
    ``replicas`` is how many replicas did acknowledge; ``reply`` what the write answered
    on the primary (for ``pop_item``: the item it popped).
    """

    def __init__(self, message: str, *, replicas: int = 0, reply: Any = None) -> None:
        super().__init__(message)
        self.replicas = replicas
        self.reply = reply


class StoreClosedError(AgentMemoryError):
    """The store was closed by ``aclose()``; it sends and journals nothing any more."""


class UnflushedJournalError(MemoryUnavailableError):
    """``aclose()`` could not write the journal (``fallback="journal"``) back to Redis.

    ``pending`` lists ``(kind, id)`` of every write still journaled (Redis unreachable);
    ``dropped`` those Redis refused on replay (``store.journal_dropped``). Both are lost.
    """

    def __init__(
        self,
        message: str,
        pending: list[tuple[str, str]],
        dropped: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.pending = pending
        self.dropped = dropped if dropped is not None else []


class MissingDependencyError(AgentMemoryError, ImportError):
    """An option needs an optional extra that is not installed (``telemetry=True`` needs
    ``agentmem-redis[otel]``); the message names the ``pip install`` to run. Nothing was sent."""


class EmbeddingError(AgentMemoryError):
    """The store's ``embedder`` raised, or returned the wrong number of vectors, or vectors
    of another length than the memories index (or not finite numbers). Raised before any
    Redis call: nothing was written. Not retried (the same texts give the same failure)."""


class SearchUnavailableError(AgentMemoryError):
    """``store.memories`` needs a query engine (``FT.CREATE``/``FT.SEARCH``) and this server
    has none: use Redis 8, Redis Stack, a server with valkey-search, or a managed Redis
    that has search. Every other store call keeps working on this server. Nothing was written."""


class IndexMismatchError(AgentMemoryError):
    """The memories index that exists under this prefix was built differently (another
    vector dimension, another prefix or algorithm) from what this store would build. agentmem
    never drops an index by itself: drop it (``FT.DROPINDEX``) or use another prefix."""
