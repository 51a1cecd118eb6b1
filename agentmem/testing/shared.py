"""One server per test run, shared by every pytest-xdist worker.

A JSON state file and a :mod:`filelock` lock live in the run's shared base temp
directory. Each worker that will need the server registers as a *user* once its
collection is done (before any worker runs a test, so an early finisher cannot stop
the server under a late starter); the first worker that needs it starts it under
the lock and records its URL and pid; a worker leaving removes itself, and the last
one out stops it. The server is started in its own session so it outlives the
worker that started it. A failure to provide a server is recorded too, so the other
workers report the same reason instead of each trying again.

A Docker container can only be stopped by the process holding its handle, and a server
process can only be reaped by the process that started it: that worker waits, when it
leaves, until the other users are gone, then stops and reaps it. The xdist controller
runs :meth:`SharedServer.stop_leftover` after every worker has ended, which stops an
embedded server a crashed worker left behind.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from agentmem.testing.provision import Provisioned, ServerInfo, ServerUnavailableError
from agentmem.testing.server import stop_process

__all__ = ["LOCK_NAME", "STATE_NAME", "SharedServer"]

STATE_NAME = "agentmem-server.json"
LOCK_NAME = "agentmem-server.lock"
#: Seconds a worker waits for the lock; provisioning (a Docker pull) happens under it.
LOCK_TIMEOUT = 300.0
#: Seconds the worker owning a container waits for the other users to leave.
DRAIN_TIMEOUT = 600.0


class SharedServer:
    """This worker's view of the run's shared server (see the module docstring)."""

    def __init__(self, directory: Path, worker: str, *, name: str = "agentmem-server") -> None:
        self.directory = directory
        self.worker = worker
        #: Names the state and lock files, so several shared servers (the plain one, the
        #: search-capable one) live side by side in one directory.
        self.name = name
        self._registered = False
        self._owned: Provisioned | None = None

    @property
    def state_path(self) -> Path:
        return self.directory / f"{self.name}.json"

    @contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        try:  # the testing extra; imported only when a server is needed
            from filelock import FileLock
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                "sharing a test server needs filelock: pip install 'agentmem-redis[testing]'"
            ) from exc

        self.directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.directory / f"{self.name}.lock"), timeout=LOCK_TIMEOUT):
            state = self.read_state() or {"status": "idle", "users": []}
            yield state
            tmp = self.state_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
            tmp.replace(self.state_path)

    def read_state(self) -> dict[str, Any] | None:
        """The recorded state, or None before any worker wrote one."""
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return None
        return data if isinstance(data, dict) else None

    def _join(self, state: dict[str, Any]) -> None:
        if self.worker not in state["users"]:
            state["users"].append(self.worker)
        self._registered = True

    def register(self) -> None:
        """Count this worker as a user, so the server outlives its tests; starts nothing."""
        with self._locked() as state:
            self._join(state)

    def acquire(self, start: Callable[[Path], Provisioned]) -> ServerInfo:
        """The running server, started by ``start(directory)`` if nobody has started it.

        Raises :class:`ServerUnavailableError` (also when another worker already failed).
        """
        with self._locked() as state:
            self._join(state)
            if state["status"] == "running":
                return ServerInfo.from_json(state["info"])
            if state["status"] == "failed":
                raise ServerUnavailableError(state["error"])
            try:
                provisioned = start(self.directory)
            except ServerUnavailableError as exc:
                state.update(status="failed", error=str(exc))
                raise
            self._owned = provisioned
            server = provisioned.server
            state.update(
                status="running",
                info=provisioned.info.to_json(),
                owner=self.worker,
                pid=server.pid if server is not None else None,
                port=server.port if server is not None else None,
                notes=provisioned.notes,
            )
            return provisioned.info

    def release(self) -> None:
        """Leave; the last user out stops the server."""
        if not self._registered:
            return
        self._registered = False
        with self._locked() as state:
            if self.worker in state["users"]:
                state["users"].remove(self.worker)
            if state["users"] or state["status"] != "running":
                # The owner waits for the others: a container can only be stopped by the
                # process holding its handle, and a server process this worker started can
                # only be reaped (waited for) by it, else its Popen warns at exit.
                must_drain = self._owned is not None
            else:
                self._stop(state)
                must_drain = False
        if must_drain:
            self._drain_then_stop()

    def _stop(self, state: dict[str, Any]) -> None:
        if self._owned is not None:
            self._owned.stop()
            self._owned = None
        elif state.get("pid") and state["info"]["source"] == "embedded":
            stop_process(int(state["pid"]), port=state.get("port"))
        else:
            return  # a container owned by another worker: that worker stops it
        state["status"] = "stopped"

    def _drain_then_stop(self) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while True:
            with self._locked() as state:
                if state["status"] != "running" or not state["users"]:
                    if state["status"] == "running":
                        self._stop(state)
                    elif self._owned is not None:  # stopped by pid elsewhere: reap it here
                        self._owned.stop()
                        self._owned = None
                    return
                if time.monotonic() > deadline:
                    if self._owned is not None and self._owned.container is not None:
                        self._stop(state)
                    # an embedded server stays up for the users left; the last one stops it
                    return
            time.sleep(0.25)

    def stop_leftover(self) -> None:
        """Stop an embedded server still recorded as running (its last user crashed)."""
        if self.read_state() is None:
            return
        with self._locked() as state:
            if state["status"] == "running" and state["info"]["source"] == "embedded":
                state["users"] = []
                self._stop(state)
