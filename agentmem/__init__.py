"""agentmem: asyncio memory for AI agents on Redis that fails loudly, never silently."""

from importlib.metadata import PackageNotFoundError, version

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
from agentmem.health import Health
from agentmem.journaled import JournaledStore
from agentmem.memories import Memory, MemoryHit
from agentmem.store import AgentMemoryStore, Turn
from agentmem.sync import SyncAgentMemoryStore, SyncJournaledStore

try:
    __version__ = version("agentmem")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

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
)
