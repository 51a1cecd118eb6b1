"""``agentmem bench --server-cost`` pins the bench and the server it starts to CPUs
(agentmem/bench/placement.py): which placement each request gets, that every thread of a
real process is pinned, that the bench gets its own CPUs back, and that a whole run
records the CPUs the OS reports."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentmem.bench.placement import choose, describe, placed
from agentmem.bench.run import main
from agentmem.bench.server_cost import RESULTS_NAME

_THREADS = """
import threading, time
for _ in range(3):
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def threaded_process() -> Iterator[subprocess.Popen[str]]:
    """A real process with four threads, standing in for a server's main and I/O threads."""
    process = subprocess.Popen([sys.executable, "-c", _THREADS], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        yield process
    finally:
        process.kill()
        process.communicate()


def _threads(pid: int) -> list[int]:
    return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]


def test_each_request_gets_the_placement_this_run_can_do() -> None:
    shared = choose("shared", server_started=True, available=[0, 1, 2, 3])
    assert (shared.name, shared.bench_cpus, shared.server_cpus) == ("shared", frozenset({3}), frozenset({3}))
    separate = choose("separate", server_started=True, available=[0, 1, 2, 3])
    assert (separate.name, separate.bench_cpus, separate.server_cpus) == (
        "separate",
        frozenset({2}),
        frozenset({3}),
    )
    alone = choose("separate", server_started=True, available=[5])
    assert (alone.name, alone.bench_cpus, alone.server_cpus) == ("shared", frozenset({5}), frozenset({5}))
    assert "one CPU is allowed" in alone.note
    for asked in ("shared", "separate"):
        external = choose(asked, server_started=False, available=[0, 1])
        assert (external.name, external.bench_cpus, external.server_cpus) == ("any", None, None)
        assert "--url" in external.note
    assert choose("any", server_started=True, available=[0, 1]).bench_cpus is None
    with pytest.raises(ValueError, match="unknown CPU placement"):
        choose("everywhere", server_started=True)


@pytest.mark.parametrize("asked", ["shared", "separate"])
def test_every_thread_of_the_server_is_pinned_and_the_bench_gets_its_cpus_back(
    threaded_process: subprocess.Popen[str], asked: str
) -> None:
    before = os.sched_getaffinity(0)
    placement = choose(asked, server_started=True)
    assert placement.bench_cpus is not None
    assert placement.server_cpus is not None
    with placed(placement, threaded_process.pid) as report:
        threads = _threads(threaded_process.pid)
        assert len(threads) == 4
        assert {tid: os.sched_getaffinity(tid) for tid in threads} == dict.fromkeys(
            threads, placement.server_cpus
        )
        assert os.sched_getaffinity(0) == placement.bench_cpus
        assert report["server_cpus"] == sorted(placement.server_cpus)
        assert report["bench_cpus"] == sorted(placement.bench_cpus)
        assert f"server on CPUs {sorted(placement.server_cpus)}" in describe(report)
    assert os.sched_getaffinity(0) == before


def test_the_bench_gets_its_cpus_back_when_the_run_fails(threaded_process: subprocess.Popen[str]) -> None:
    own = os.getpid()
    before = {tid: os.sched_getaffinity(tid) for tid in _threads(own)}
    pinned: list[set[int]] = []

    def run() -> None:
        with placed(choose("shared", server_started=True), threaded_process.pid):
            pinned.append(os.sched_getaffinity(0))
            raise RuntimeError("the server failed")

    with pytest.raises(RuntimeError, match="the server failed"):
        run()
    assert [len(cpus) for cpus in pinned] == [1]
    assert {tid: os.sched_getaffinity(tid) for tid in _threads(own) if tid in before} == before


def test_a_server_gone_before_pinning_leaves_the_bench_unpinned(
    threaded_process: subprocess.Popen[str],
) -> None:
    before = os.sched_getaffinity(0)
    threaded_process.kill()
    threaded_process.wait()
    with (
        pytest.raises(ProcessLookupError),
        placed(choose("shared", server_started=True), threaded_process.pid),
    ):
        pass
    assert os.sched_getaffinity(0) == before


def test_nothing_is_pinned_when_the_server_is_not_the_benchs(
    threaded_process: subprocess.Popen[str],
) -> None:
    before = os.sched_getaffinity(0)
    server_before = os.sched_getaffinity(threaded_process.pid)
    with placed(choose("shared", server_started=False), None) as report:
        assert os.sched_getaffinity(0) == before
        assert os.sched_getaffinity(threaded_process.pid) == server_before
    assert report == {
        "placement": "any",
        "note": choose("shared", server_started=False).note,
        "bench_cpus": sorted(before),
    }


def test_left_to_the_os_the_server_is_not_pinned_but_its_cpus_are_reported(
    threaded_process: subprocess.Popen[str],
) -> None:
    server_before = os.sched_getaffinity(threaded_process.pid)
    with placed(choose("any", server_started=True), threaded_process.pid) as report:
        assert os.sched_getaffinity(threaded_process.pid) == server_before
    assert report["server_cpus"] == sorted(server_before)


def test_a_server_cost_run_on_its_own_server_records_the_cpus_it_ran_on(tmp_path: Path) -> None:
    """The default run starts its server and shares one CPU with it; the results file holds
    the affinities the OS reported during the run (not the placement asked for)."""
    before = os.sched_getaffinity(0)
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["--server-cost", "--quick", "--quiet", "--duration", "0.2", "--repeat", "1",
                     "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    cpus = json.loads((tmp_path / RESULTS_NAME).read_text())["cpus"]
    assert cpus["placement"] == "shared"
    assert len(cpus["server_cpus"]) == 1
    assert cpus["server_cpus"] == cpus["bench_cpus"]
    assert "CPU placement: shared" in stdout.getvalue()
    assert os.sched_getaffinity(0) == before
