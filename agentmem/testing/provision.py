"""Where the test server comes from: an existing URL, a Docker container, or a local binary.

:func:`provision` tries the sources in that order and returns the first server that
answers; when none does, :class:`ServerUnavailableError` names every source and why
it failed. :func:`describe` says which source a run would use without starting one.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import redis

from agentmem.health import server_identity
from agentmem.testing.server import (
    EmbeddedServer,
    ServerBinary,
    ServerStartError,
    find_server_binaries,
    parse_version,
    probe_binary,
    resolve_binary,
    start_first,
)

__all__ = [
    "DEFAULT_IMAGE",
    "ProvisionSettings",
    "Provisioned",
    "ServerInfo",
    "ServerUnavailableError",
    "describe",
    "disable_flush_commands",
    "probe_url",
    "provision",
]

DEFAULT_IMAGE = "redis:7-alpine"
#: Seconds a Docker container gets to start (an image pull included).
DOCKER_TIMEOUT = 120.0
# A malformed URL raises ValueError in redis-py, not a RedisError.
_URL_ERRORS = (redis.RedisError, ValueError, OSError)


class ServerUnavailableError(RuntimeError):
    """No source could provide a server; the message names each source and its failure."""


class ContainerHandle(Protocol):
    """What ``agentmem.testing.docker.start_redis_container`` returns."""

    url: str

    def stop(self) -> None: ...


@dataclass(frozen=True)
class ServerInfo:
    """The server a test run uses: ``source`` is ``"url"``, ``"docker"`` or ``"embedded"``."""

    url: str
    version: str
    flavor: str
    source: str
    #: The binary path, image name or URL option the server came from.
    origin: str = ""

    @property
    def version_info(self) -> tuple[int, ...]:
        return parse_version(self.version)

    def to_json(self) -> dict[str, str]:
        return {
            "url": self.url,
            "version": self.version,
            "flavor": self.flavor,
            "source": self.source,
            "origin": self.origin,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ServerInfo:
        return cls(
            url=str(data["url"]),
            version=str(data["version"]),
            flavor=str(data["flavor"]),
            source=str(data["source"]),
            origin=str(data.get("origin", "")),
        )


@dataclass(frozen=True)
class ProvisionSettings:
    """The user's choices; ``*_origin`` names the option or variable a value came from."""

    url: str | None = None
    url_origin: str = "AGENTMEM_REDIS_URL"
    image: str = DEFAULT_IMAGE
    binary: str | None = None
    binary_origin: str = "--redis-server"


@dataclass
class Provisioned:
    """A server this process provided, with what it takes to stop it."""

    info: ServerInfo
    server: EmbeddedServer | None = None
    container: ContainerHandle | None = None
    notes: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.container is not None:
            self.container.stop()


def probe_url(url: str, *, timeout: float = 2.0) -> tuple[str, str]:
    """``(flavor, version)`` from INFO server; raise the redis-py error if it does not answer."""
    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        info = client.info("server")
    finally:
        client.close()
    return server_identity(info)


def disable_flush_commands(url: str) -> None:
    """Deny FLUSHDB/FLUSHALL to the default user of a server we started but cannot configure."""
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.acl_setuser("default", enabled=True, commands=["-flushdb", "-flushall"])
    finally:
        client.close()


def _docker_module() -> Any:
    """``agentmem.testing.docker``, imported lazily: it needs the optional testcontainers."""
    return importlib.import_module("agentmem.testing.docker")


def _docker_reason(settings: ProvisionSettings) -> str | None:
    """Why Docker cannot be used, or None when an engine answers."""
    if settings.binary:
        return f"not tried ({settings.binary_origin} given)"
    try:
        docker = _docker_module()
    except ImportError as exc:
        return f"unavailable ({exc})"
    try:
        reason = docker.docker_unavailable_reason()
    except Exception as exc:  # a broken engine must not abort provisioning
        return f"unavailable ({type(exc).__name__}: {exc})"
    return None if reason is None else str(reason)


def _binaries(settings: ProvisionSettings) -> tuple[list[Path], list[str]]:
    if settings.binary:
        try:
            return [resolve_binary(settings.binary)], []
        except ServerStartError as exc:
            return [], [f"{settings.binary_origin}={settings.binary}: {exc}"]
    return find_server_binaries()


def embedded_binary(settings: ProvisionSettings) -> tuple[ServerBinary | None, list[str]]:
    """The first usable binary, and the reasons the ones before it were not."""
    candidates, reasons = _binaries(settings)
    for path in candidates:
        try:
            return probe_binary(path), reasons
        except ServerStartError as exc:
            reasons.append(str(exc))
    return None, reasons


def provision(
    settings: ProvisionSettings,
    directory: Path,
    *,
    detach: bool = True,
) -> Provisioned:
    """Return a running server from the first source that works, else raise.

    An explicit URL is authoritative: when it does not answer there is no fallback,
    because a run that silently tested some other server would hide the mistake. A
    Docker container that fails to start falls back to a binary; ``notes`` says why.
    """
    tried: list[str] = []
    notes: list[str] = []
    if settings.url:
        try:
            flavor, version = probe_url(settings.url)
        except _URL_ERRORS as exc:
            raise ServerUnavailableError(f"{settings.url_origin}={settings.url}: no answer ({exc})") from exc
        info = ServerInfo(settings.url, version, flavor, "url", settings.url_origin)
        return Provisioned(info)
    tried.append(f"{settings.url_origin}: not set")

    reason = _docker_reason(settings)
    if reason is None:
        container = None
        try:
            container = _docker_module().start_redis_container(settings.image, timeout=DOCKER_TIMEOUT)
            flavor, version = probe_url(container.url)
            disable_flush_commands(container.url)
            info = ServerInfo(container.url, version, flavor, "docker", settings.image)
            return Provisioned(info, container=container)
        except Exception as exc:  # fall back to a local binary, but say why
            if container is not None:
                with contextlib.suppress(Exception):
                    container.stop()
            reason = f"{settings.image} failed ({type(exc).__name__}: {exc})"
            notes.append(f"docker: {reason}")
    tried.append(f"docker: {reason}")

    candidates, missing = _binaries(settings)
    failures = list(missing)
    if candidates:
        try:
            server = start_first(candidates, directory / "server", detach=detach)
        except ServerStartError as exc:
            failures.append(str(exc))
        else:
            binary = server.binary
            info = ServerInfo(server.url, binary.version, binary.flavor, "embedded", str(binary.path))
            return Provisioned(info, server=server, notes=notes)
    tried.append("embedded: " + ("; ".join(failures) or "no candidates"))
    raise ServerUnavailableError("; ".join(tried))


def describe(settings: ProvisionSettings) -> str:
    """One line naming the server a run would use, without starting anything."""
    if settings.url:
        try:
            flavor, version = probe_url(settings.url, timeout=0.5)
        except _URL_ERRORS as exc:
            return f"{settings.url_origin}={settings.url} does not answer ({exc})"
        return f"{flavor} {version} (url {settings.url})"
    binary, reasons = embedded_binary(settings)
    embedded = (
        f"{binary.flavor} {binary.version} (embedded {binary.path})"
        if binary is not None
        else "no server available (" + "; ".join(reasons or ["no candidates"]) + ")"
    )
    if _docker_reason(settings) is None:
        return f"docker image {settings.image}; if it cannot start: {embedded}"
    return embedded
