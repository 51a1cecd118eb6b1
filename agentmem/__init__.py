"""agentmem: asyncio memory for AI agents on Redis that fails loudly, never silently."""

from agentmem._version import __version__
from agentmem.config import StoreConfig
from agentmem.errors import (
    AgentMemoryError,
    CircuitOpenError,
    ContextTooLargeError,
    InvalidArgumentError,
    InvalidKeyError,
    MemoryCorruptedError,
    MemoryFullError,
    MemoryPermissionError,
    MemoryUnavailableError,
    MissingDependencyError,
    ReplicationTimeoutError,
    SerializationError,
    StoreClosedError,
    UnflushedJournalError,
)
from agentmem.health import Health
from agentmem.journaled import JournaledStore
from agentmem.store import AgentMemoryStore, Turn
from agentmem.sync import SyncAgentMemoryStore, SyncJournaledStore

__all__ = (
    "AgentMemoryError",
    "AgentMemoryStore",
    "CircuitOpenError",
    "ContextTooLargeError",
    "Health",
    "InvalidArgumentError",
    "InvalidKeyError",
    "JournaledStore",
    "MemoryCorruptedError",
    "MemoryFullError",
    "MemoryPermissionError",
    "MemoryUnavailableError",
    "MissingDependencyError",
    "ReplicationTimeoutError",
    "SerializationError",
    "StoreClosedError",
    "StoreConfig",
    "SyncAgentMemoryStore",
    "SyncJournaledStore",
    "Turn",
    "UnflushedJournalError",
    "__version__",
)
