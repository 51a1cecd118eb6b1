"""Adapters that make agentmem the memory of agent frameworks, one module per framework.

Each module imports its framework when it is imported, and fails with the extra to
install when the framework is missing; this package itself imports none of them.

* ``agentmem.integrations.openai_agents``: ``AgentMemorySession`` (``agentmem-redis[openai-agents]``)
* ``agentmem.integrations.adk``: ``AgentMemorySessionService`` (``agentmem-redis[adk]``)
* ``agentmem.integrations.langgraph``: ``AgentMemorySaver``, ``LangGraphStore``
  (``agentmem-redis[langgraph]``)
"""

from __future__ import annotations

__all__: tuple[str, ...] = ()
