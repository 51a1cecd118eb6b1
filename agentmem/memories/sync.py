"""``SyncAgentMemoryStore(...).memories``: the same five methods, blocking."""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from agentmem.memories.types import Memory, MemoryHit

if TYPE_CHECKING:
    from agentmem.memories.api import Memories

__all__ = ["SyncMemories"]

T = TypeVar("T")
Runner = Callable[[str, Callable[[], Awaitable[Any]]], Any]


class SyncMemories:
    """Blocking ``add``/``search``/``get``/``delete``/``list``, run on the sync store's loop
    (same semantics and errors as :class:`~agentmem.memories.api.Memories`)."""

    def __init__(self, run: Runner, memories: Memories) -> None:
        self._run = run
        self._memories = memories

    def add(
        self,
        user_id: str,
        text: str,
        *,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Memory:
        """Store ``text`` for ``user_id`` (once per normalized text)."""
        result: Memory = self._run(
            "memories.add", lambda: self._memories.add(user_id, text, tags=tags, metadata=metadata)
        )
        return result

    def search(
        self,
        user_id: str | None,
        query: str,
        *,
        k: int = 5,
        tags: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        max_distance: float | None = None,
    ) -> builtins.list[MemoryHit]:
        """The ``k`` nearest memories matching the filters, nearest first."""
        hits: builtins.list[MemoryHit] = self._run(
            "memories.search",
            lambda: self._memories.search(
                user_id, query, k=k, tags=tags, since=since, until=until, max_distance=max_distance
            ),
        )
        return hits

    def get(self, user_id: str, memory_id: str) -> Memory | None:
        """One memory by id, or ``None``."""
        found: Memory | None = self._run("memories.get", lambda: self._memories.get(user_id, memory_id))
        return found

    def delete(self, user_id: str, memory_id: str) -> bool:
        """Delete one memory; ``True`` if it was there."""
        return bool(self._run("memories.delete", lambda: self._memories.delete(user_id, memory_id)))

    def list(self, user_id: str, *, limit: int = 100) -> builtins.list[Memory]:
        """The user's memories, newest first."""
        listed: builtins.list[Memory] = self._run(
            "memories.list", lambda: self._memories.list(user_id, limit=limit)
        )
        return listed
