"""The benchmark harness runs end to end (``--quick``) and writes what it promises.

Speed is never asserted here: the numbers depend on the machine and on what else runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

import agentmem
from agentmem.bench.chart import chart_available
from agentmem.bench.report import SMOKE_NOTE, compute_ratios
from agentmem.bench.run import _run_loop, main
from agentmem.bench.script_cost import SHAPES
from agentmem.bench.server_cost import AGENTS, UNITS
from agentmem.bench.server_cost import RESULTS_NAME as COST_NAME
from agentmem.bench.settings import CHART_NAME, MEMORY_NAME, QUICK_CONCURRENCY, RESULTS_NAME
from agentmem.bench.workload import CONTEXT, MESSAGES, OPERATIONS
from agentmem.cli import main as cli_main
from agentmem.keys import escape_glob
from agentmem.testing.provision import ServerInfo

# A few seconds of benchmarking: kept out of the fast core suite (-m "not slow"), run in CI.
pytestmark = pytest.mark.slow

ASYNC_CONTENDERS = ("agentmem", "agentmem-nopipe", "raw-blob", "raw-hash", "pipe-blob", "pipe-hash")
HEADLINE_RATIOS = (
    "agentmem@64 / raw-blob@64",
    "agentmem@64 / raw-hash@64",
    "agentmem@64 / pipe-blob@64",
    "agentmem@64 / pipe-hash@64",
    "agentmem@64 / agentmem-nopipe@64",
    "agentmem@1 / raw-blob@1",
    "agentmem@1 / raw-hash@1",
    "agentmem@1 / sync-json@1",
)


@dataclass(frozen=True)
class QuickRun:
    code: int
    out: Path
    stdout: str
    stderr: str
    results: dict[str, Any]
    url: str


@pytest.fixture(scope="module")
def quick_run(agentmem_server: ServerInfo, tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    out = tmp_path_factory.mktemp("bench")
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["--quick", "--url", agentmem_server.url, "--out", str(out)])
    path = out / RESULTS_NAME
    results = json.loads(path.read_text()) if path.exists() else {}
    return QuickRun(code, out, stdout.getvalue(), stderr.getvalue(), results, agentmem_server.url)


def test_quick_run_succeeds(quick_run: QuickRun) -> None:
    """A quick run against the test server exits 0 and writes its JSON."""
    assert quick_run.code == 0, quick_run.stderr
    assert quick_run.results["schema"] == 1
    assert quick_run.results["settings"]["quick"] is True


def test_every_scenario_is_measured(quick_run: QuickRun) -> None:
    """Each operation has a result for every contender at concurrency 1 and 64 (sync at 1 only)."""
    measured = {(s["operation"], s["contender"], s["concurrency"]): s for s in quick_run.results["scenarios"]}
    expected = {
        (op, name, level) for op in OPERATIONS for name in ASYNC_CONTENDERS for level in QUICK_CONCURRENCY
    }
    expected |= {(op, "sync-json", 1) for op in OPERATIONS}
    assert set(measured) == expected
    for scenario in measured.values():
        assert "error" not in scenario
        assert scenario["ops_per_s"] > 0
        assert 0 < scenario["p50_ms"] <= scenario["p99_ms"]
        assert len(scenario["repetitions"]) == quick_run.results["settings"]["repetitions"]
        assert scenario["client_cpu_us"] > 0
        assert scenario["server_cpu_us"] is not None
        assert scenario["server_cpu_us"] >= 0


def test_ratios_are_positive_finite_numbers(quick_run: QuickRun) -> None:
    """The headline ratios are present for every operation, each a positive finite number."""
    ratios = {r["name"]: r for r in quick_run.results["ratios"]}
    assert set(HEADLINE_RATIOS) <= set(ratios)
    for name in HEADLINE_RATIOS:
        by_operation = ratios[name]["by_operation"]
        assert set(by_operation) == set(OPERATIONS)
        for value in [*by_operation.values(), ratios[name]["geomean"]]:
            assert math.isfinite(value)
            assert value > 0


def test_extras_are_reported(quick_run: QuickRun) -> None:
    """Pool sweep, round trips, memory per session, encoding and machine info are all in the JSON."""
    results = quick_run.results
    assert {row["max_connections"] for row in results["pool_sweep"]["rows"]} >= {1, 8}
    assert all(row["ops_per_s"] > 0 for row in results["pool_sweep"]["rows"])
    assert results["round_trips"]["load_turn"]["pipelines_per_call"] == 1.0
    assert results["memory"]["context"]["agentmem"] > 0
    assert results["memory"]["context"]["orjson_blob"] > 0
    assert {row["codec"].split()[0] for row in results["encoding"]} >= {"json", "orjson"}
    machine = results["machine"]
    assert machine["cores"] >= 1
    assert machine["server"]["flavor"] in ("redis", "valkey")
    assert machine["redis_py"] == redis.__version__
    assert machine["agentmem"] == agentmem.__version__ != "0.0.0"  # from agentmem-redis's metadata


def test_table_and_progress_are_printed(quick_run: QuickRun) -> None:
    """The aligned table goes to stdout and one progress line per scenario group to stderr."""
    for heading in (
        "agentmem benchmarks",
        *(f"{op}: " for op in OPERATIONS),
        "ratios",
        "pool sweep",
        "round trips",
        "server memory per session",
        "encoding",
        "CPU per operation, µs: client/server",
    ):
        assert heading in quick_run.stdout
    assert "agentmem@64 / pipe-hash@64" in quick_run.stdout
    assert "pair c=64:" in quick_run.stderr


def test_chart_is_drawn_when_matplotlib_is_installed(quick_run: QuickRun) -> None:
    """With matplotlib a PNG is written; without it the run says how to get one."""
    chart = quick_run.out / CHART_NAME
    if chart_available():
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert not chart.exists()
        assert "agentmem-redis[bench]" in quick_run.stdout


def test_no_key_is_left_behind(quick_run: QuickRun) -> None:
    """Every key the run wrote under its prefix is deleted at the end."""
    client = redis.Redis.from_url(quick_run.url)
    try:
        prefix = quick_run.results["key_prefix"]
        assert list(client.scan_iter(match=escape_glob(prefix) + "*", count=1000)) == []
    finally:
        client.close()
    assert quick_run.results["keys_deleted"] > 0


def test_memory_run_compares_the_layouts(agentmem_server: ServerInfo, tmp_path: Path) -> None:
    """``--memory`` writes every layout's bytes per session (agentmem's over the raw blob's),
    prints the table and leaves no key behind."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["--memory", "--sessions", "50", "--url", agentmem_server.url, "--out", str(tmp_path)])
    assert code == 0, stderr.getvalue()
    written = json.loads((tmp_path / MEMORY_NAME).read_text())
    memory = written["memory"]
    assert set(memory["layouts"]) == {"agentmem", "agentmem-at-rest", "raw-blob", "raw-hash"}
    for row in memory["layouts"].values():
        assert row["bytes_per_session"] > 1500  # at least the context's bytes
    assert memory["layouts"]["raw-blob"]["over_raw_blob"] == 1.0
    # measured, not asserted: other workers share this server, so used_memory moves under it
    assert isinstance(memory["layouts"]["agentmem-at-rest"]["bytes_per_session"], float)
    assert memory["context_fields"] == 12
    assert memory["messages"] == 20
    assert set(memory["layouts"]["agentmem"]["per_key"]) == {"context", "history", "append_log", "facts"}
    assert "x raw-blob" in stdout.getvalue()
    client = redis.Redis.from_url(agentmem_server.url)
    try:
        assert list(client.scan_iter(match=escape_glob(written["key_prefix"]) + "*", count=1000)) == []
    finally:
        client.close()


def test_a_quick_run_says_it_is_a_smoke_run_and_judges_no_target(quick_run: QuickRun) -> None:
    """--quick is a smoke run: its header and ratio table say so, and no ratio is called
    met or NOT met (a few seconds cannot judge a target)."""
    assert SMOKE_NOTE in quick_run.stdout.splitlines()[0]
    assert "NOT met" not in quick_run.stdout
    assert ": met" not in quick_run.stdout
    assert ">= 3x" in quick_run.stdout  # the targets are still shown


def test_bench_help_is_the_installed_command(capsys: pytest.CaptureFixture[str]) -> None:
    """`agentmem bench --help` names itself `agentmem bench` and runs from the package
    (agentmem.bench, in the wheel), not from the repository's benchmarks/."""
    with pytest.raises(SystemExit) as raised:
        cli_main(["bench", "--help"])
    assert raised.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: agentmem bench ")
    assert "python -m benchmarks" not in out
    assert "no target is checked" in " ".join(out.split())


def test_invalid_options_are_rejected() -> None:
    """A non-positive --duration is a usage error, before any server is started."""
    with pytest.raises(SystemExit) as raised, contextlib.redirect_stderr(io.StringIO()):
        main(["--duration", "0"])
    assert raised.value.code == 2


def test_ratios_skip_missing_and_failed_scenarios() -> None:
    """A ratio is computed only from scenarios both of whose sides ran without error."""
    scenarios = [
        {"operation": "pair", "contender": "agentmem", "concurrency": 64, "ops_per_s": 900.0},
        {"operation": "pair", "contender": "raw-blob", "concurrency": 64, "ops_per_s": 300.0},
        {"operation": "update", "contender": "agentmem", "concurrency": 64, "ops_per_s": 900.0},
        {"operation": "update", "contender": "raw-blob", "concurrency": 64, "error": "boom"},
    ]
    ratios = {r["name"]: r for r in compute_ratios(scenarios, ["pair", "update"])}
    assert set(ratios) == {"agentmem@64 / raw-blob@64"}
    assert ratios["agentmem@64 / raw-blob@64"]["by_operation"] == {"pair": 3.0}
    assert ratios["agentmem@64 / raw-blob@64"]["meets_target"] is True


def test_workload_has_the_sizes_the_issue_asks_for() -> None:
    """The context is ~4 KB of JSON with ~10 top-level fields; messages are ~200 bytes."""
    assert 3500 <= len(orjson.dumps(CONTEXT)) <= 4500
    assert 8 <= len(CONTEXT) <= 12
    assert 2000 <= len(CONTEXT["summary"]) <= 3000
    assert all(150 <= len(orjson.dumps(message)) <= 250 for message in MESSAGES)


def test_uvloop_runs_the_coroutine_on_uvloop() -> None:
    """--uvloop runs the benchmark on uvloop's loop (skipped when uvloop is not installed)."""
    uvloop = pytest.importorskip("uvloop")

    async def loop_type() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert _run_loop(loop_type(), True).startswith(uvloop.__name__)
    assert _run_loop(loop_type(), False).startswith("asyncio")


def test_server_cost_run_prices_every_unit(agentmem_server: ServerInfo, tmp_path: Path) -> None:
    """``--server-cost`` measures every unit of work at 1 and 64 agents for its contenders from
    the server's counters, prices every save/load shape, prints the turns-per-core lines and
    leaves no key behind (figures not asserted: other workers share this server)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(
            ["--server-cost", "--quick", "--quiet", "--url", agentmem_server.url, "--out", str(tmp_path)]
        )
    assert code == 0, stderr.getvalue()
    written = json.loads((tmp_path / COST_NAME).read_text())
    measured = {(row["unit"], row["agents"], row["contender"]): row for row in written["rows"]}
    expected = {(unit, agents, name) for unit, names in UNITS for agents in AGENTS for name in names}
    assert set(measured) == expected
    for row in measured.values():
        assert row["commands"] >= 1
        assert row["server_cpu_us"] > 0
        assert row["ops_per_s"] > 0
    assert {(row["operation"], row["shape"]) for row in written["shapes"]} == set(SHAPES)
    assert len(written["targets"]) == 5
    assert written["cpus"]["placement"] == "any"  # a server the bench did not start is not pinned
    assert "one Redis core carries about" in stdout.getvalue()
    client = redis.Redis.from_url(agentmem_server.url)
    try:
        assert list(client.scan_iter(match="agentmem-bench-*:shapes*", count=1000)) == []
    finally:
        client.close()


def test_recall_benchmark_runs_and_is_exact(agentmem_search_server: Any, tmp_path: Path) -> None:
    """agentmem bench --recall on a search server: every sampled search equals brute force."""
    from agentmem.bench.recall import EXACT_QUERIES

    code = main(
        ["--recall", "--quick", "--recall-sizes", "300", "--quiet", "--url", agentmem_search_server.url,
         "--out", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    [result] = json.loads((tmp_path / "recall.json").read_text())["results"]
    assert result["memories"] == 300
    assert result["exact_queries"] == f"{EXACT_QUERIES}/{EXACT_QUERIES}"
    assert result["add_per_second"] > 0
