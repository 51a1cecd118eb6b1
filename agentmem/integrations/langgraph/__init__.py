"""agentmem as the memory of LangGraph agents: a checkpointer and a long-term store.

``AgentMemorySaver(store)`` is an async ``BaseCheckpointSaver``; ``LangGraphStore(store)``
a ``BaseStore``. Both borrow an :class:`~agentmem.AgentMemoryStore` and share its pool,
retries, circuit breaker and typed errors. Needs ``pip install 'agentmem-redis[langgraph]'``.
"""

from __future__ import annotations

try:
    import langgraph.checkpoint.base
    import langgraph.store.base  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        "agentmem.integrations.langgraph needs LangGraph: pip install 'agentmem-redis[langgraph]'"
    ) from exc

from agentmem.integrations.langgraph.saver import AgentMemorySaver
from agentmem.integrations.langgraph.store import LangGraphStore

__all__ = ("AgentMemorySaver", "LangGraphStore")
