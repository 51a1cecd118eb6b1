"""Which CPUs the benchmark and the server it started run on, for ``agentmem bench --server-cost``.

With the bench and the server on one machine, a round trip at one agent costs the server
two wake-ups: its own, and the bench's, whose receive path and wake-up run inside the
server's ``write`` of the reply on loopback. When the two processes sit on different CPUs,
each wake-up is an inter-processor interrupt, which on a VM is a trip through the
hypervisor: a ``perf`` profile of the server at one agent showed half its CPU there, the
same for every contender, and varying two-fold from run to run. A client on another
machine costs the server neither. On one shared CPU a wake-up is a switch on the same run
queue, and what is left is the server's own work on the request.

* ``shared`` (the default): the bench and the server on the same one CPU;
* ``separate``: each on a CPU of its own (the server the last allowed, the bench the one
  before it); needs two allowed CPUs, else it is ``shared``;
* ``any``: wherever the OS puts them (also what is done when the server was not started by
  the bench, ``--url``, or the platform cannot pin).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = ["PLACEMENTS", "Placement", "choose", "describe", "placed"]

PLACEMENTS = ("shared", "separate", "any")


@dataclass(frozen=True, slots=True)
class Placement:
    """The CPUs to pin the bench and the server to (``None``: not pinned), and why."""

    name: str
    bench_cpus: frozenset[int] | None
    server_cpus: frozenset[int] | None
    note: str


def _available() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def choose(asked: str, *, server_started: bool, available: Sequence[int] | None = None) -> Placement:
    """The placement ``asked`` for, or the nearest this run can do, saying why."""
    if asked not in PLACEMENTS:
        raise ValueError(f"unknown CPU placement {asked!r}; one of {', '.join(PLACEMENTS)}")
    if asked == "any":
        return Placement("any", None, None, "the OS places the bench and the server")
    if not server_started:
        return Placement("any", None, None, "the server was not started by the bench (--url): not pinned")
    cpus = sorted(available) if available is not None else _available()
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return Placement("any", None, None, "this platform cannot pin processes to CPUs")
    if asked == "separate" and len(cpus) >= 2:
        return Placement(
            "separate", frozenset({cpus[-2]}), frozenset({cpus[-1]}), "the bench and the server on a CPU each"
        )
    note = "the bench and the server on one CPU"
    if asked == "separate":
        note += " (separate asked, but one CPU is allowed)"
    return Placement("shared", frozenset({cpus[-1]}), frozenset({cpus[-1]}), note)


def _tasks(pid: int) -> list[int]:
    """Every thread of ``pid`` (affinity is per thread on Linux)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def _pin(pid: int, cpus: frozenset[int]) -> None:
    for tid in _tasks(pid):
        try:
            os.sched_setaffinity(tid, cpus)
        except ProcessLookupError:  # a thread that ended meanwhile
            continue


def _affinity(pid: int) -> list[int]:
    return sorted(os.sched_getaffinity(pid))


@contextmanager
def placed(placement: Placement, server_pid: int | None) -> Iterator[dict[str, Any]]:
    """Pin this process and the server as ``placement`` says for the block; yield what the OS
    then reports (for the results file), and give every thread of this process its CPUs back
    afterwards, also when pinning or the block failed."""
    report: dict[str, Any] = {"placement": placement.name, "note": placement.note}
    if not hasattr(os, "sched_getaffinity"):
        yield report
        return
    own = os.getpid()
    before = os.sched_getaffinity(0)
    bench_cpus, server_cpus = placement.bench_cpus, placement.server_cpus
    pinning = False
    try:
        if bench_cpus is not None and server_cpus is not None and server_pid is not None:
            pinning = True
            _pin(server_pid, server_cpus)
            _pin(own, bench_cpus)
        report["bench_cpus"] = _affinity(own)
        if server_pid is not None:
            report["server_cpus"] = _affinity(server_pid)
        yield report
    finally:
        if pinning:
            _pin(own, frozenset(before))


def describe(report: dict[str, Any]) -> str:
    """One line for the printed report."""
    where = [f"bench on CPUs {report['bench_cpus']}"] if "bench_cpus" in report else []
    if "server_cpus" in report:
        where.append(f"server on CPUs {report['server_cpus']}")
    return f"CPU placement: {report['placement']}: {report['note']}" + (
        f" ({', '.join(where)})" if where else ""
    )
