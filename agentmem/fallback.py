"""How a store with ``fallback="journal"`` writes and reads while Redis is unreachable.

The store stays the one place that knows the scripts; this module decides *when* a
call goes to Redis, to the :class:`~agentmem.journal.Journal`, or to both, and keeps
the per-process snapshots that journaled reads are merged over.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agentmem.errors import AgentMemoryError, MemoryUnavailableError
from agentmem.journal import Journal, JournalEntry

__all__ = ["JournalFallback"]

T = TypeVar("T")
log = logging.getLogger("agentmem")

Replayer = Callable[[JournalEntry], Awaitable[object]]


class JournalFallback:
    def __init__(self, journal: Journal, replay_one: Replayer) -> None:
        self.journal = journal
        self._replay_one = replay_one
        self._lock = asyncio.Lock()
        self.replayed = 0

    async def replay(self) -> bool:
        """Write journaled entries back in order; ``True`` when the journal is empty."""
        if not len(self.journal):
            return True
        async with self._lock:
            while (entry := self.journal.first()) is not None:
                try:
                    await self._replay_one(entry)
                except MemoryUnavailableError as exc:
                    log.warning(
                        "agentmem journal: replay of %s %r failed, kept: %s", entry.kind, entry.target, exc
                    )
                    return False
                except AgentMemoryError as exc:  # e.g. MemoryFullError: keep it, try later
                    log.error(
                        "agentmem journal: replay of %s %r failed, kept: %s", entry.kind, entry.target, exc
                    )
                    return False
                self.journal.pop_first()
                self.replayed += 1
            log.warning("agentmem journal: replayed to Redis, backlog empty (%d replayed)", self.replayed)
            return True

    async def write(
        self, operation: str, send: Callable[[], Awaitable[T]], entry: Callable[[], JournalEntry]
    ) -> T | None:
        """Send, or journal the write when Redis is unavailable; ``None`` means journaled.

        While older entries cannot be replayed, new writes are journaled behind them
        without being sent, so a session's writes reach Redis in the order they were made.
        """
        if not await self.replay():
            self._keep(operation, entry(), None)
            return None
        try:
            return await send()
        except MemoryUnavailableError as exc:
            self._keep(operation, entry(), exc)
            return None

    def _keep(self, operation: str, entry: JournalEntry, cause: BaseException | None) -> None:
        self.journal.add(entry, cause=cause)  # raises when a bound would be passed
        log.warning(
            "agentmem %s: Redis unavailable, journaled locally (backlog %d entries, %d bytes)",
            operation,
            len(self.journal),
            self.journal.bytes,
        )

    async def read(
        self,
        scopes: list[tuple[str, str]],
        seen_keys: list[tuple[str, str]],
        fetch: Callable[[], Awaitable[T]],
        local: Callable[[], T],
    ) -> tuple[T, bool]:
        """Fetch from Redis, or the local view when Redis is down and this process knows the data.

        Returns ``(value, from_redis)``. A fetched value still has to be merged with
        journal entries that could not be replayed yet (the caller does that).
        """
        await self.replay()
        try:
            return await fetch(), True
        except MemoryUnavailableError:
            known = any(self.journal.has(s) for s in scopes) or any(
                self.journal.seen.get(k) is not None for k in seen_keys
            )
            if known:
                log.warning("agentmem: Redis unavailable, read served from the local journal view")
                return local(), False
            raise

    async def read_one(
        self,
        scope: tuple[str, str],
        seen_key: tuple[str, str],
        fetch: Callable[[], Awaitable[T]],
        merge: Callable[[Any], T],
    ) -> T:
        """One value: from Redis (remembered as seen) or the snapshot, with the journal merged over."""
        value, from_redis = await self.read([scope], [seen_key], fetch, lambda: merge(self.seen(seen_key)))
        if from_redis:
            self.see(seen_key, value)
            value = merge(value)
        return value

    async def flush(self) -> list[tuple[str, str]]:
        """Try to replay everything; return what is still pending."""
        await self.replay()
        return self.journal.pending()

    def seen(self, key: tuple[str, str]) -> Any:
        return self.journal.seen.get(key)

    def see(self, key: tuple[str, str], value: Any) -> None:
        self.journal.seen.put(key, value)
