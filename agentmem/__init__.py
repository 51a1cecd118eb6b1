"""agentmem: asyncio memory for AI agents on Redis that fails loudly, never silently."""

from agentmem._version import __version__
from agentmem.config import StoreConfig
from agentmem.errors import (
    AgentMemoryError,
    CircuitOpenError,
    ContextTooLargeError,
    EmbeddingError,
    IndexMismatchError,
    InvalidArgumentError,
    InvalidKeyError,
    MemoryCorruptedError,
    MemoryFullError,
    MemoryPermissionError,
    MemoryUnavailableError,
    MissingDependencyError,
    ReplicationTimeoutError,
    SearchUnavailableError,
    SerializationError,
    StoreClosedError,
    UnflushedJournalError,
)
from agentmem.factory import open_store
from agentmem.health import Health
from agentmem.journaled import JournaledStore
from agentmem.memories import Memory, MemoryHit
from agentmem.store import AgentMemoryStore, Turn
from agentmem.sync import SyncAgentMemoryStore, SyncJournaledStore

__all__ = (
    "AgentMemoryError",
    "AgentMemoryStore",
    "CircuitOpenError",
    "ContextTooLargeError",
    "EmbeddingError",
    "Health",
    "IndexMismatchError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "JournaledStore",
    "Memory",
    "MemoryCorruptedError",
    "MemoryFullError",
    "MemoryHit",
    "MemoryPermissionError",
    "MemoryUnavailableError",
    "MissingDependencyError",
    "ReplicationTimeoutError",
    "SearchUnavailableError",
    "SerializationError",
    "StoreClosedError",
    "StoreConfig",
    "SyncAgentMemoryStore",
    "SyncJournaledStore",
    "Turn",
    "UnflushedJournalError",
    "__version__",
    "open_store",
)
