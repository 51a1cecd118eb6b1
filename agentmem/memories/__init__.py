"""Recall by meaning: ``store.memories`` (add, search, get, delete, list) on a query engine."""

from agentmem.memories.types import Memory, MemoryHit

__all__ = ("Memory", "MemoryHit")
