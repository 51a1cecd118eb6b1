"""Test helpers for code that uses agentmem: real servers, fault injection, a pytest plugin.

The pytest plugin (:mod:`agentmem.testing.plugin`) is registered through an entry
point and needs the ``agentmem-redis[testing]`` extra. The helpers here work without pytest.
"""

from agentmem.testing.embedders import HashEmbedder
from agentmem.testing.faults import kill_connections, memory_pressure
from agentmem.testing.provision import (
    ProvisionSettings,
    ServerInfo,
    ServerUnavailableError,
    describe,
    provision,
)
from agentmem.testing.proxy import TcpProxy
from agentmem.testing.search import provision_search, search_module_path
from agentmem.testing.server import (
    EmbeddedServer,
    ServerBinary,
    ServerStartError,
    find_server_binaries,
    probe_binary,
)
from agentmem.testing.shared import SharedServer
from agentmem.testing.tls import TlsFiles, TlsServer, make_tls_files, start_tls_server

__all__ = (
    "EmbeddedServer",
    "HashEmbedder",
    "ProvisionSettings",
    "ServerBinary",
    "ServerInfo",
    "ServerStartError",
    "ServerUnavailableError",
    "SharedServer",
    "TcpProxy",
    "TlsFiles",
    "TlsServer",
    "describe",
    "find_server_binaries",
    "kill_connections",
    "make_tls_files",
    "memory_pressure",
    "probe_binary",
    "provision",
    "provision_search",
    "search_module_path",
    "start_tls_server",
)
