"""A Sentinel-managed primary with one replica and three sentinels, from one server binary.

Everything listens on loopback ports and lives in one directory; :meth:`SentinelGroup.stop`
ends every process. Sentinels detect a dead primary after ``down_after`` (1 s here, so
a test sees a failover in a few seconds; production uses 5-30 s) and promote the replica.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

from agentmem.testing.server import EmbeddedServer, ServerBinary, ServerStartError, free_port, stop_process

__all__ = ["SentinelGroup"]

_LOOPBACK = "127.0.0.1"
SENTINELS = 3
QUORUM = 2


class SentinelGroup:
    """``service`` is the name the sentinels monitor the primary under."""

    def __init__(
        self,
        binary: ServerBinary,
        directory: str | Path,
        *,
        service: str = "agentmem",
        down_after: float = 1.0,
        failover_timeout: float = 5.0,
        persistence: bool = True,
    ) -> None:
        self.binary = binary
        self.directory = Path(directory)
        self.service = service
        self.down_after = down_after
        self.failover_timeout = failover_timeout
        self.servers = [
            EmbeddedServer(binary, self.directory / name, persistence=persistence, appendfsync="always")
            for name in ("node-a", "node-b")
        ]
        self._sentinels: list[tuple[int, subprocess.Popen[bytes]]] = []

    # -- addresses -----------------------------------------------------------------------

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        return [(_LOOPBACK, port) for port, _ in self._sentinels]

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL naming every sentinel and the service."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinel_addresses)
        return f"redis+sentinel://{hosts}/{self.service}"

    def primary_address(self) -> tuple[str, int]:
        """What the sentinels currently say the primary is."""
        for port, _ in self._sentinels:
            with contextlib.suppress(redis.RedisError), _client(port) as client:
                reply: Any = client.sentinel_get_master_addr_by_name(self.service)
                if reply:
                    return str(reply[0]), int(reply[1])
        raise RuntimeError("no sentinel answered for the primary")

    def primary(self) -> EmbeddedServer:
        """The server process the sentinels currently name as primary."""
        _, port = self.primary_address()
        return next(server for server in self.servers if server.running and server.port == port)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> SentinelGroup:
        primary, replica = self.servers
        primary.start()
        replica.start()
        with _client(replica.port) as client:
            client.replicaof(_LOOPBACK, primary.port)
        _wait(lambda: _role(replica.port) == "slave" and _link_up(replica.port), 10.0, "replica link up")
        for index in range(SENTINELS):
            self._start_sentinel(index, primary.port)
        _wait(self._sentinels_agree, 10.0, "sentinels see the primary and its replica")
        return self

    def _start_sentinel(self, index: int, primary_port: int) -> None:
        directory = self.directory / f"sentinel-{index}"
        directory.mkdir(parents=True, exist_ok=True)
        port = free_port()
        conf = directory / "sentinel.conf"
        ms_down, ms_failover = int(self.down_after * 1000), int(self.failover_timeout * 1000)
        conf.write_text(
            f"port {port}\nbind {_LOOPBACK}\ndir {directory}\n"
            f"sentinel monitor {self.service} {_LOOPBACK} {primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {self.service} {ms_down}\n"
            f"sentinel failover-timeout {self.service} {ms_failover}\n"
        )
        log = (directory / "sentinel.log").open("ab")
        with log:
            process = subprocess.Popen(
                [str(self.binary.path), str(conf), "--sentinel"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=directory,
            )
        self._sentinels.append((port, process))
        _wait(lambda: _answers(port), 10.0, f"sentinel on port {port}")

    def _sentinels_agree(self) -> bool:
        """Every sentinel sees the replica and the other sentinels (they find each other by
        hello messages, every 2 s)."""
        for port, _ in self._sentinels:
            try:
                with _client(port) as client:
                    state: Any = client.sentinel_master(self.service)
            except redis.RedisError:
                return False
            if (
                int(state.get("num-slaves", 0)) < 1
                or int(state.get("num-other-sentinels", 0)) < SENTINELS - 1
            ):
                return False
        return True

    def kill_primary(self) -> EmbeddedServer:
        """``kill -9`` the current primary (no shutdown, like a power cut); return it."""
        server = self.primary()
        server.kill()
        return server

    def wait_for_promotion(self, old: tuple[str, int], timeout: float = 15.0) -> tuple[str, int]:
        """Wait until the sentinels name another primary and it accepts writes; return it."""

        def promoted() -> bool:
            try:
                address = self.primary_address()
            except RuntimeError:
                return False
            return address != old and _role(address[1]) == "master"

        _wait(promoted, timeout, "the replica's promotion")
        return self.primary_address()

    def stop(self) -> None:
        for _, process in self._sentinels:
            stop_process(process.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        self._sentinels.clear()
        for server in self.servers:
            server.stop()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextlib.contextmanager
def _client(port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host=_LOOPBACK, port=port, socket_timeout=2.0, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _answers(port: int) -> bool:
    try:
        with _client(port) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def _role(port: int) -> str:
    try:
        with _client(port) as client:
            return str(client.role()[0])
    except redis.RedisError:
        return "unreachable"


def _link_up(port: int) -> bool:
    try:
        with _client(port) as client:
            return bool(client.info("replication").get("master_link_status") == "up")
    except redis.RedisError:
        return False


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise ServerStartError(f"timed out after {timeout:g}s waiting for {what}")
