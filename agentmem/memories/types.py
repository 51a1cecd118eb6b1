"""What ``store.memories`` hands back: a stored memory, and a memory found by a search."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Memory", "MemoryHit"]


@dataclass(frozen=True, slots=True)
class Memory:
    """One thing an agent learned about a user, stored with its vector."""

    id: str
    user_id: str
    text: str
    tags: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    #: When it was first added (UTC).
    created_at: datetime = field(default_factory=lambda: datetime.min)


@dataclass(frozen=True, slots=True)
class MemoryHit:
    """A memory found by ``search``: ``distance`` is the cosine distance to the query
    (0 = same direction, 2 = opposite); hits come nearest first."""

    memory: Memory
    distance: float
