"""agentmem: asyncio memory for AI agents on Redis that fails loudly, never silently."""

from importlib.metadata import PackageNotFoundError, version

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
from agentmem.factory import open_store
from agentmem.health import Health
from agentmem.journaled import JournaledStore
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
    "open_store",
)
