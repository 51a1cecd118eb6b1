"""The plugin end to end, in inner pytest runs (pytester): provisioning, skips, sharing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import redis

from agentmem.testing import ServerInfo
from agentmem.testing.provision import ProvisionSettings, embedded_binary
from agentmem.testing.shared import STATE_NAME

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
filterwarnings = error
"""

#: Seconds an inner run may take before pytester kills it.
INNER_TIMEOUT = 60

MISSING_BINARY = "/nonexistent/agentmem/redis-server"

REDIS_TESTS = """
import pytest

def test_unit():
    pass

def test_needs_server(agentmem_server):
    pass

async def test_needs_redis(agentmem_redis):
    await agentmem_redis.ping()
"""


@pytest.fixture
def inner(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A pytester with a clean environment: no outer server settings, no CI, no xdist."""
    for name in (
        "AGENTMEM_REDIS_URL",
        "AGENTMEM_REDIS_SERVER",
        "AGENTMEM_REDIS_IMAGE",
        "CI",
        "PYTEST_ADDOPTS",
        "PYTEST_XDIST_WORKER",
        "PYTEST_XDIST_WORKER_COUNT",
        "PYTEST_XDIST_TESTRUNUID",
    ):
        monkeypatch.delenv(name, raising=False)
    pytester.makeini(INI)
    return pytester


def run_inner(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    """Run pytest with only the options given: in this process (fast), or in a subprocess
    as a user would (for xdist, and to see the server outlive nothing)."""
    options = ("-p", "no:valkey", "-p", "no:cacheprovider", "-rs", *args)
    if subprocess:
        return pytester.runpytest_subprocess(*options, timeout=INNER_TIMEOUT)
    return pytester.runpytest_inprocess(*options)


def binary_path() -> str:
    binary, reasons = embedded_binary(ProvisionSettings())
    if binary is None:
        pytest.skip(f"no server binary: {reasons}")
    return str(binary.path)


def assert_stopped(state_file: Path) -> None:
    """The shared server recorded in ``state_file`` has been stopped and its process is gone."""
    state = json.loads(state_file.read_text())
    assert state["status"] == "stopped", state
    assert state["users"] == []
    try:
        os.kill(state["pid"], 0)
    except ProcessLookupError:
        return
    stat = Path(f"/proc/{state['pid']}/stat")
    assert stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", "server process still running"


def test_provisions_from_url(inner: pytest.Pytester, agentmem_server: ServerInfo) -> None:
    """--redis-url uses that server (source "url") and names its version in the header."""
    inner.makepyfile(
        f"""
        def test_uses_url(agentmem_server):
            assert agentmem_server.source == "url"
            assert agentmem_server.url == {agentmem_server.url!r}
            assert agentmem_server.version == {agentmem_server.version!r}
        """
    )
    result = run_inner(inner, f"--redis-url={agentmem_server.url}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"agentmem: {agentmem_server.flavor} {agentmem_server.version} (url *)"])


def test_unreachable_url_does_not_fall_back(inner: pytest.Pytester) -> None:
    """A --redis-url that does not answer skips (no silent fallback), naming the URL."""
    inner.makepyfile(REDIS_TESTS)
    result = run_inner(inner, "--redis-url=redis://127.0.0.1:1")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*agentmem: 2 real-Redis tests SKIPPED*--redis-url=redis://127.0.0.1:1*"])


def test_provisions_from_binary(inner: pytest.Pytester) -> None:
    """--redis-server starts that binary (source "embedded"), with FLUSHALL refused, and
    stops it when the run ends."""
    path = binary_path()
    inner.makepyfile(
        f"""
        import pytest, redis.exceptions

        async def test_uses_binary(agentmem_server, agentmem_redis):
            assert agentmem_server.source == "embedded"
            assert agentmem_server.origin == {path!r}
            with pytest.raises(redis.exceptions.ResponseError):
                await agentmem_redis.flushall()
        """
    )
    result = run_inner(inner, f"--redis-server={path}", subprocess=True)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"agentmem: * (embedded {path})"])
    [state_file] = inner.path.rglob(STATE_NAME)
    assert_stopped(state_file)


def test_missing_server_skips_with_one_summary_line(inner: pytest.Pytester) -> None:
    """Without CI, tests that need a server are skipped and one loud line says why."""
    inner.makepyfile(REDIS_TESTS)
    result = run_inner(inner, f"--redis-server={MISSING_BINARY}")
    result.assert_outcomes(passed=1, skipped=2)
    lines = [line for line in result.outlines if "real-Redis test" in line]
    assert len(lines) == 1, result.outlines
    assert "2 real-Redis tests SKIPPED" in lines[0]
    assert f"{MISSING_BINARY}: not found" in lines[0]
    assert "docker: not tried (--redis-server given)" in lines[0]


@pytest.mark.parametrize(
    ("ci", "flag"),
    [("1", None), ("true", None), (None, "--require-real-redis")],
    ids=["CI=1", "CI=true", "require-flag"],
)
def test_missing_server_errors_under_ci(
    inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None, flag: str | None
) -> None:
    """With CI set or --require-real-redis, a missing server errors instead of skipping."""
    if ci is not None:
        monkeypatch.setenv("CI", ci)
    inner.makepyfile(REDIS_TESTS)
    result = run_inner(inner, f"--redis-server={MISSING_BINARY}", *([flag] if flag else []))
    result.assert_outcomes(passed=1, errors=2)
    assert result.ret != 0
    result.stdout.fnmatch_lines([f"*agentmem: no real Redis server and *{MISSING_BINARY}: not found*"])


def test_ci_false_still_skips(inner: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """CI=false (or 0) is not CI: a missing server still skips."""
    monkeypatch.setenv("CI", "false")
    inner.makepyfile(REDIS_TESTS)
    run_inner(inner, f"--redis-server={MISSING_BINARY}").assert_outcomes(passed=1, skipped=2)


def test_min_server_version_skip_names_versions(inner: pytest.Pytester, agentmem_server: ServerInfo) -> None:
    """min_server_version skips on an older server (shared, or the private servers' binary),
    naming both versions; newer ones run."""
    inner.makepyfile(
        """
        import pytest

        @pytest.mark.min_server_version("999.1")
        def test_future(agentmem_server):
            pass

        @pytest.mark.min_server_version("999.1")
        def test_future_without_fixture():
            pass

        @pytest.mark.min_server_version("999.1")
        def test_future_private(agentmem_private_server):
            pass

        @pytest.mark.min_server_version("6.0")
        def test_present(agentmem_server):
            pass
        """
    )
    result = run_inner(inner, f"--redis-url={agentmem_server.url}")
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.fnmatch_lines(
        [f"*needs server >= 999.1; this is {agentmem_server.flavor} {agentmem_server.version}*"]
    )


def test_prefix_isolation_and_cleanup(inner: pytest.Pytester, agentmem_server: ServerInfo) -> None:
    """Two tests get different prefixes, and after the run no key under either remains."""
    record = inner.path / "prefixes.txt"
    inner.makepyfile(
        f"""
        import pytest

        @pytest.mark.parametrize("n", [1, 2])
        async def test_writes(agentmem_redis, agentmem_prefix, n):
            with open({str(record)!r}, "a") as f:
                f.write(agentmem_prefix + "\\n")
            for i in range(5):
                await agentmem_redis.set(f"{{agentmem_prefix}}:k{{i}}", n)
            assert await agentmem_redis.keys(agentmem_prefix + "*") != []
        """
    )
    run_inner(inner, f"--redis-url={agentmem_server.url}").assert_outcomes(passed=2)
    prefixes = record.read_text().split()
    assert len(prefixes) == len(set(prefixes)) == 2
    with redis.Redis.from_url(agentmem_server.url) as client:
        for prefix in prefixes:
            assert client.keys(prefix + "*") == []


def test_store_factory_deletes_the_tests_keys(inner: pytest.Pytester, agentmem_server: ServerInfo) -> None:
    """Keys written through agentmem_store_factory's stores (and no other fixture) are gone after the test."""
    record = inner.path / "prefixes.txt"
    inner.makepyfile(
        f"""
        import redis

        async def test_writes(agentmem_store_factory):
            store = agentmem_store_factory()
            with open({str(record)!r}, "a") as f:
                f.write(store.config.prefix + "\\n")
            await store.save_context("s", {{"a": 1}})
            await store.append_messages("s", [{{"role": "user", "content": "hi"}}])
            await store.remember("u", {{"lang": "fr"}})
            await store.delete_session("gone")  # a tombstone key too
            with redis.Redis.from_url({agentmem_server.url!r}) as client:
                assert len(client.keys(store.config.prefix + ":*")) >= 4
        """
    )
    run_inner(inner, f"--redis-url={agentmem_server.url}").assert_outcomes(passed=1)
    (prefix,) = record.read_text().split()
    with redis.Redis.from_url(agentmem_server.url) as client:
        assert client.keys(prefix + ":*") == []


def test_real_redis_option_selects_server_tests(inner: pytest.Pytester) -> None:
    """--real-redis runs only the tests that need a server and deselects the rest."""
    inner.makepyfile(
        """
        import pytest

        def test_unit():
            pass

        @pytest.mark.real_redis
        def test_marked():
            pass

        def test_fixture(agentmem_server):
            pass
        """
    )
    result = run_inner(inner, f"--redis-server={MISSING_BINARY}", "--real-redis")
    result.assert_outcomes(skipped=2, deselected=1)


def test_xdist_workers_share_one_server(inner: pytest.Pytester) -> None:
    """Under pytest -n 2 every worker uses the same server, which is stopped at the end."""
    path = binary_path()
    out = inner.mkdir("out")
    inner.makepyfile(
        f"""
        import os, pathlib, time, uuid
        import pytest

        @pytest.mark.parametrize("n", range(6))
        async def test_record_server(agentmem_redis, n):
            run_id = (await agentmem_redis.info("server"))["run_id"]
            worker = os.environ["PYTEST_XDIST_WORKER"]
            pathlib.Path({str(out)!r}, uuid.uuid4().hex).write_text(f"{{worker}} {{run_id}}")
            time.sleep(0.05)
        """
    )
    result = run_inner(inner, "-n", "2", f"--redis-server={path}", subprocess=True)
    result.assert_outcomes(passed=6)
    records = [file.read_text().split() for file in out.iterdir()]
    assert len(records) == 6
    assert len({run_id for _, run_id in records}) == 1, records
    assert {worker for worker, _ in records} == {"gw0", "gw1"}
    [state_file] = inner.path.rglob(STATE_NAME)
    assert_stopped(state_file)


#: A conftest that makes the inner run look installed without the testing extra.
WITHOUT_FILELOCK = """
import sys

sys.modules["filelock"] = None  # `import filelock` now raises ImportError
"""
MISSING_EXTRA = "pip install 'agentmem[testing]'"


@pytest.mark.parametrize("workers", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_missing_extra_is_one_usage_error(inner: pytest.Pytester, workers: tuple[str, ...]) -> None:
    """Without filelock, a run whose tests need the shared server ends with one usage error
    naming the extra to install, in every mode: no INTERNALERROR, no traceback, exit code 4."""
    inner.makeconftest(WITHOUT_FILELOCK)
    inner.makepyfile(REDIS_TESTS)
    result = run_inner(inner, *workers, f"--redis-server={MISSING_BINARY}", subprocess=True)
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert output.count(MISSING_EXTRA) == 1, output
    assert "needs filelock" in output
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output


def test_missing_extra_is_no_error_when_no_test_needs_a_server(inner: pytest.Pytester) -> None:
    """A project with the plugin installed but no server tests runs as usual without the extra."""
    inner.makeconftest(WITHOUT_FILELOCK)
    inner.makepyfile("def test_unit():\n    pass\n")
    result = run_inner(inner, "-n", "2", subprocess=True)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.OK
