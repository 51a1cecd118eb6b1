"""A real Redis server in a Docker container, through testcontainers, for the ``docker`` tests.

The main test suite runs against an embedded server; the tests marked ``docker`` check the
same code against a stock ``redis-server`` in a container, as a user's deployment would be.
They need a Docker engine, which most machines (and this project's sandbox by default) lack,
so this module has two parts:

* :func:`docker_unavailable_reason` answers, cheaply and within a few seconds at worst, why
  no container can be started here (``None`` when a Docker engine answers a ping). It looks
  for the engine's socket (``DOCKER_HOST`` or ``/var/run/docker.sock``) before importing the
  Docker SDK, so a machine without Docker pays only a ``stat``. Use it to skip.
* :func:`start_redis_container` starts an image with testcontainers, waits until Redis
  answers ``PING`` within a deadline, and returns a :class:`RedisContainerServer` with the
  ``redis://`` URL and a ``stop()`` that removes the container.

On a machine with no registry access (like this project's), ``bash .ci/docker-setup.sh``
installs and starts ``dockerd`` and builds the local image ``agentmem-redis:7.0`` from
Debian's ``redis-server``; ``AGENTMEM_REDIS_IMAGE`` names another image (``redis:7`` where
Docker Hub is reachable).

Two testcontainers settings are given defaults here, and only when the user has not set them:

* ``TESTCONTAINERS_RYUK_DISABLED=true``: testcontainers normally starts a "Ryuk" reaper
  container first (``testcontainers/ryuk``, pulled from Docker Hub) to remove containers
  left by a crashed run. It cannot be pulled where no registry is reachable, and then every
  start fails. Without Ryuk, :meth:`RedisContainerServer.stop` removes the container, and
  ``.ci/docker-setup.sh`` prunes stopped leftovers.
* ``TESTCONTAINERS_CONNECTION_MODE=docker_host`` for a local (unix-socket) engine: where a
  ``/.dockerenv`` file exists, as in this sandbox, testcontainers assumes it runs inside a
  container and connects to the bridge gateway's address instead; with ``docker_host`` it
  connects through the published port on loopback.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

__all__ = [
    "DEFAULT_DOCKER_SOCKET",
    "RedisContainerServer",
    "docker_unavailable_reason",
    "start_redis_container",
]

DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
_PING_TIMEOUT = 2.0  # seconds for each Docker API call of docker_unavailable_reason()
_REDIS_PORT = 6379
_POLL_INTERVAL = 0.1
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def _unix_socket_path(docker_host: str) -> str | None:
    """The socket path a DOCKER_HOST value names, or None for a non-unix (tcp, ssh) host."""
    if not docker_host:
        return DEFAULT_DOCKER_SOCKET
    if docker_host.startswith("unix://"):
        return docker_host[len("unix://") :]
    return None


def docker_unavailable_reason() -> str | None:
    """Why no Docker container can be started here, or None when a Docker engine answers.

    Bounded: a missing socket is reported without importing the Docker SDK, and the ping
    uses a 2-second timeout per request.
    """
    for module, what in (("testcontainers", "testcontainers"), ("docker", "docker (Python SDK)")):
        if importlib.util.find_spec(module) is None:
            return f"{what} not installed (pip install 'agentmem-redis[test]')"
    docker_host = os.environ.get("DOCKER_HOST", "").strip()
    socket_path = _unix_socket_path(docker_host)
    if socket_path is not None and not Path(socket_path).exists():
        origin = f"DOCKER_HOST={docker_host}" if docker_host else "the default"
        return (
            f"no Docker engine: socket {socket_path} ({origin}) does not exist;"
            " run `bash .ci/docker-setup.sh` to start one"
        )
    if socket_path is not None:
        # A socket file left by a dockerd that is gone: say so without the SDK, whose
        # failed version negotiation would leak an open socket.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(_PING_TIMEOUT)
            try:
                probe.connect(socket_path)
            except OSError as exc:
                return (
                    f"no Docker engine: nothing accepts on {socket_path} ({exc});"
                    " run `bash .ci/docker-setup.sh`"
                )

    import docker

    where = docker_host or f"unix://{DEFAULT_DOCKER_SOCKET}"
    try:
        client = docker.from_env(timeout=_PING_TIMEOUT)
    except Exception as exc:  # the SDK raises DockerException, or requests' errors
        return f"Docker engine at {where} did not answer: {type(exc).__name__}: {exc}"
    try:
        client.ping()
    except Exception as exc:
        return f"Docker engine at {where} did not answer a ping: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return None


def _set_testcontainers_defaults() -> None:
    """Default the two testcontainers settings the module docstring explains."""
    from testcontainers.core.config import ConnectionMode, testcontainers_config

    if "TESTCONTAINERS_RYUK_DISABLED" not in os.environ:
        os.environ["TESTCONTAINERS_RYUK_DISABLED"] = "true"
        # Its configuration caches the variable once read: set the parsed value as well.
        testcontainers_config.ryuk_disabled = True

    docker_host = os.environ.get("DOCKER_HOST", "").strip()
    user_chose = any(
        os.environ.get(name)
        for name in ("TESTCONTAINERS_CONNECTION_MODE", "TC_HOST", "TESTCONTAINERS_HOST_OVERRIDE")
    )
    if user_chose or _unix_socket_path(docker_host) is None:
        return
    os.environ["TESTCONTAINERS_CONNECTION_MODE"] = "docker_host"
    # testcontainers read the variable when it was first imported, which may have been
    # before this call: set its parsed configuration as well.
    if testcontainers_config.connection_mode_override is None:
        testcontainers_config.connection_mode_override = ConnectionMode.docker_host


class RedisContainerServer:
    """A Redis server in a running container: ``url`` to connect to, ``stop()`` to remove it."""

    def __init__(self, container: DockerContainer, host: str, port: int) -> None:
        self._container = container
        self.host = host
        self.port = port
        self.url = f"redis://{host}:{port}/0"
        self._stopped = False

    @property
    def container_id(self) -> str:
        """The Docker id of the container."""
        return self._container.get_container_id()

    def stop(self) -> None:
        """Remove the container (with its anonymous volumes); calling it again does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self._container.stop()

    def __enter__(self) -> RedisContainerServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running"
        return f"<RedisContainerServer {self.url} {state}>"


def _logs_tail(container: DockerContainer, lines: int = 5) -> str:
    """The last lines the container printed, for an error message; '' if unavailable."""
    try:
        out, err = container.get_logs()
    except Exception:
        return ""
    text = (out + err).decode("utf-8", "replace").strip().splitlines()
    return " | ".join(text[-lines:])


def _wait_for_ping(container: DockerContainer, deadline: float) -> tuple[str, int]:
    """Poll until Redis in ``container`` answers PING; return (host, port) or raise RuntimeError."""
    import redis

    client = container.get_docker_client()
    last_error = "no attempt made"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        container.reload()
        if container.status in ("exited", "dead"):
            raise RuntimeError(f"the container {container.status}: {_logs_tail(container)}")
        try:
            host = container.get_container_host_ip()
            port = int(client.port(container.get_container_id(), _REDIS_PORT))
        except Exception as exc:  # port not published yet: retry until the deadline
            last_error = f"no published port yet: {type(exc).__name__}: {exc}"
        else:
            if host in _LOCAL_HOSTS:
                host = "127.0.0.1"  # the published port answers on IPv4 loopback
            step = max(0.05, min(1.0, remaining))
            conn = redis.Redis(host=host, port=port, socket_connect_timeout=step, socket_timeout=step)
            try:
                if conn.ping():
                    return host, port
                last_error = "PING returned a falsy reply"
            except redis.RedisError as exc:
                last_error = f"PING to {host}:{port} failed: {type(exc).__name__}: {exc}"
            finally:
                conn.close()
        time.sleep(max(0.0, min(_POLL_INTERVAL, deadline - time.monotonic())))
    raise RuntimeError(f"Redis did not answer PING in time; last error: {last_error}")


def _require_local_image(container: DockerContainer) -> None:
    """Raise RuntimeError unless the container's image is already on the engine.

    testcontainers would pull a missing image; where no registry is reachable that only
    fails (slowly), so pulling is opt-in with AGENTMEM_DOCKER_PULL=1.
    """
    import docker.errors

    try:
        container.get_docker_client().client.images.get(container.image)
    except docker.errors.ImageNotFound:
        raise RuntimeError(
            f"image {container.image!r} is not on the Docker engine: build agentmem-redis:7.0"
            " with `bash .ci/docker-setup.sh`, or set AGENTMEM_DOCKER_PULL=1 to let"
            " testcontainers pull it"
        ) from None
    except Exception as exc:
        raise RuntimeError(f"cannot look up image {container.image!r}: {type(exc).__name__}: {exc}") from exc


def start_redis_container(image: str, timeout: float) -> RedisContainerServer:
    """Start ``image`` (a Redis server listening on 6379) and wait up to ``timeout`` s for PING.

    On failure (engine unreachable, image missing, container exited, no PING in time) the
    container is removed and RuntimeError says why. An image missing from the engine is
    reported rather than pulled, unless AGENTMEM_DOCKER_PULL=1.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    deadline = time.monotonic() + timeout
    try:
        from testcontainers.core.container import DockerContainer
    except ImportError as exc:
        raise RuntimeError(f"testcontainers not installed: {exc}") from exc
    _set_testcontainers_defaults()

    # Every Docker API call is bounded by the same timeout (the SDK's default is 60 s).
    try:
        container = DockerContainer(
            image, docker_client_kw={"timeout": max(1, round(timeout))}
        ).with_exposed_ports(_REDIS_PORT)
    except Exception as exc:
        raise RuntimeError(f"cannot reach the Docker engine: {type(exc).__name__}: {exc}") from exc
    try:
        if os.environ.get("AGENTMEM_DOCKER_PULL", "") in ("", "0"):
            _require_local_image(container)
        container.start()
        host, port = _wait_for_ping(container, deadline)
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RuntimeError) else str(exc)
        try:
            container.stop()
        except Exception as stop_exc:
            reason += f" (and removing the container failed: {stop_exc})"
        if not isinstance(exc, Exception):  # KeyboardInterrupt and the like go on as they are
            raise
        raise RuntimeError(f"Redis container from image {image!r} could not be used: {reason}") from exc
    return RedisContainerServer(container, host, port)
