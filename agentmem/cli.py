"""The ``agentmem`` command: ``demo``, ``doctor``, ``acl``, ``inspect`` and ``bench``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from redis.exceptions import RedisError

from agentmem._version import __version__
from agentmem.config import StoreConfig
from agentmem.demo import DemoFailed, run_conversation
from agentmem.errors import AgentMemoryError
from agentmem.store import AgentMemoryStore
from agentmem.testing.embedded import NoServerBinaryError, embedded_server

if TYPE_CHECKING:
    from redis import Redis
    from redis.cluster import RedisCluster

    from agentmem.doctor import Finding, Report
    from agentmem.inspector import Inspector

__all__ = ["main"]

#: The store's default prefix, which ``inspect`` reads unless told another.
DEFAULT_PREFIX = StoreConfig().prefix


def _say(line: str) -> None:
    print(line, flush=True)


@contextlib.contextmanager
def _server_url(url: str | None) -> Iterator[str]:
    """The given URL, or an embedded server's for the duration of the block."""
    if url:
        yield url
        return
    with embedded_server() as server:
        _say(f"started embedded {server.binary.flavor} {server.binary.version} at {server.url}")
        try:
            yield server.url
        finally:
            _say("stopping the embedded server")


async def _demo(url: str, blip: bool) -> None:
    if not blip:
        async with AgentMemoryStore.from_url(url, prefix="agentmem-demo") as store:
            await run_conversation(store, _say)
        return
    from agentmem.testing.proxy import TcpProxy

    with TcpProxy(url) as proxy:
        # Default options: surviving a 1 s blip is what a user gets without tuning.
        async with AgentMemoryStore.from_url(proxy.url, prefix="agentmem-demo") as store:

            async def blackhole_for_one_second() -> None:
                _say(">>> network blackhole for 1 s: the proxy forwards nothing")
                proxy.blackhole()
                asyncio.get_running_loop().call_later(1.0, proxy.restore)

            await run_conversation(store, _say, between_turns=blackhole_for_one_second)
            stats = store.retry_stats
            _say(
                f">>> the store survived the blackhole: {stats.retries} retries over "
                f"{stats.attempts} attempts, {stats.failures} failed calls, "
                f"breaker {store.breaker.state.value}"
            )


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.blip:
        # Show the store's retry log lines: that is the point of --blip.
        logging.basicConfig(level=logging.WARNING, format="    [%(name)s] %(message)s")
    try:
        with _server_url(args.url) as url:
            asyncio.run(_demo(url, args.blip))
    except (DemoFailed, AgentMemoryError, NoServerBinaryError) as exc:
        print(f"agentmem demo failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


#: What a throwaway embedded server is started without on purpose (it is deleted afterwards).
_THROWAWAY_SETTINGS = ("persistence",)


def _throwaway_findings(findings: tuple[Finding, ...]) -> tuple[Finding, ...]:
    """The findings about agentmem's own throwaway server: its deliberate test settings are
    no danger there (the server and its data are deleted when the check ends)."""
    return tuple(
        replace(f, severity="ok", seen=f"{f.seen} (on purpose: a throwaway server)", why="", fix="")
        if f.check in _THROWAWAY_SETTINGS and f.severity != "ok"
        else f
        for f in findings
    )


def _diagnose(args: argparse.Namespace) -> tuple[Report, str | None]:
    """The report on ``--url``; without one, on a throwaway embedded server, with a note saying so."""
    from agentmem.doctor import diagnose

    options = {
        "pool_size": args.pool_size,
        "processes": args.processes,
        "health_check_interval": args.health_check_interval,
        "prefix": args.prefix,
    }
    if args.url:
        return asyncio.run(diagnose(args.url, **options)), None
    with embedded_server() as server:
        report = asyncio.run(diagnose(server.url, **options))
        what = f"{server.binary.flavor} {server.binary.version}"
    note = (
        f"no --url given: this checked a throwaway embedded {what} server that agentmem started "
        "for this check and has deleted, not your server; its test settings are on purpose. "
        "Check yours with: agentmem doctor --url redis://HOST:PORT"
    )
    return replace(report, findings=_throwaway_findings(report.findings)), note


def _cmd_doctor(args: argparse.Namespace) -> int:
    try:
        report, note = _diagnose(args)
    except (RedisError, OSError, NoServerBinaryError) as exc:
        print(f"agentmem doctor: could not check the server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**report.as_dict(), "throwaway_server": note is not None}, indent=2))
        if note:
            print(f"agentmem doctor: {note}", file=sys.stderr)
    else:
        if note:
            print(note)
        print(f"{report.server} {report.version} at {report.url}")
        for finding in report.findings:
            print(f"  [{finding.severity.upper():6}] {finding.check}: {finding.seen}")
            if finding.severity != "ok":
                print(f"           why: {finding.why}")
                print(f"           fix: {finding.fix}")
        for skipped in report.skipped:
            print(f"  [SKIP  ] {skipped.check}: {skipped.why}")
        if report.dangerous:
            print("dangerous settings found")
        elif report.skipped:
            print(f"no dangerous settings found, but {len(report.skipped)} checks could not run (see SKIP)")
        else:
            print("no dangerous settings found")
    # 1: something is dangerous; 2: nothing dangerous seen, but not everything could be checked.
    return 1 if report.dangerous else 2 if report.skipped else 0


def _cmd_acl(args: argparse.Namespace) -> int:
    from agentmem.acl import acl_rule

    password: str | None = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(f"agentmem acl: ${args.password_env} is not set or empty", file=sys.stderr)
            return 2
    try:
        rule = acl_rule(
            args.prefix,
            args.user,
            password=password,
            client_name=args.client_name,
            health=args.health,
            large_values=args.large_values,
            cluster=args.cluster,
            wait_replicas=args.wait_replicas,
            integrations=args.integration,
            memories=args.memories,
        )
    except ValueError as exc:
        print(f"agentmem acl: {exc}", file=sys.stderr)
        return 2
    print(rule)  # alone on stdout, so `agentmem acl ... | redis-cli` applies it
    if password is None:
        print(
            "agentmem acl: no --password-env: the user has no password and cannot log in until you "
            "add one (>password, or #<sha256> as --password-env prints)",
            file=sys.stderr,
        )
    return 0


def _inspect_client(url: str) -> Redis | RedisCluster:
    """A sync client for ``url``: a ``RedisCluster`` when the server is a cluster node (its
    keys are on several nodes, and SCAN must visit every primary), else a plain client. A
    user not allowed INFO is taken to be on a single server."""
    from redis import Redis
    from redis.cluster import RedisCluster
    from redis.exceptions import ResponseError

    from agentmem.topology import cluster_enabled

    client = Redis.from_url(url, decode_responses=False)
    try:
        info: Any = client.info("cluster")
    except ResponseError:  # NOPERM: INFO not allowed
        return client
    except BaseException:
        client.close()
        raise
    if not cluster_enabled(info):
        return client
    client.close()
    return RedisCluster.from_url(url, decode_responses=False)


def _say_where_memory_is(inspector: Inspector, *, file: TextIO) -> None:
    """When nothing was found: whether the prefix holds any key at all, and which prefixes
    with store-shaped keys the server does hold (the usual cause: a store with another prefix)."""
    prefix = inspector.keys.prefix
    if inspector.holds_keys():
        return
    others = inspector.prefixes_seen()
    print(f"prefix {prefix!r} holds no keys at all on this server", file=file)
    if others:
        listed = ", ".join(repr(other) for other in others)
        print(f"prefixes with agentmem keys here: {listed} (pass one with --prefix)", file=file)
    else:
        print("no agentmem keys under any prefix here (SCAN)", file=file)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from agentmem.inspector import Inspector, render_session, render_sessions, render_user

    if not args.url:
        print("agentmem inspect: --url is required (the server the store writes to)", file=sys.stderr)
        return 2
    if (args.target == "sessions" and args.count < 1) or (args.target == "session" and args.last < 1):
        print("agentmem inspect: --count and --last must be at least 1", file=sys.stderr)
        return 2
    try:
        client = _inspect_client(args.url)
    except (RedisError, OSError) as exc:
        print(f"agentmem inspect: could not read the server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        inspector = Inspector(client, args.prefix)
        if args.target == "sessions":
            listing, truncated = inspector.sessions(match=args.match, count=args.count)
            corrupt = any(entry["corrupt"] for entry in listing)
            found = bool(listing)
            if args.json:
                print(json.dumps({"sessions": listing, "truncated": truncated}, indent=2, ensure_ascii=False))
            else:
                print(render_sessions(listing, truncated, args.count))
        else:
            report = (
                inspector.session(args.id, last=args.last)
                if args.target == "session"
                else (inspector.user(args.id))
            )
            corrupt = bool(report.corrupt)
            found = bool(report.keys)
            if args.json:
                print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
            else:
                print(render_session(report) if args.target == "session" else render_user(report))
        if not found:
            _say_where_memory_is(inspector, file=sys.stderr if args.json else sys.stdout)
    except (RedisError, OSError) as exc:
        print(f"agentmem inspect: could not read the server: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except AgentMemoryError as exc:  # an id the store would refuse
        print(f"agentmem inspect: {exc}", file=sys.stderr)
        return 2
    finally:
        client.close()
    return 1 if corrupt else 0


def _cmd_bench(bench_args: list[str]) -> int:
    from agentmem.bench.run import main as bench_main  # the comparison ships in the package

    code: int = bench_main(bench_args)
    return code


def _inspect_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--url``, ``--prefix`` and ``--json``: on ``inspect`` with their defaults, and again on
    each target without defaults (``SUPPRESS``), so they may come before or after the target
    and one given after it is not overwritten by the default before it."""
    unset = argparse.SUPPRESS
    parser.add_argument("--url", default=None if defaults else unset, help="Redis URL (required)")
    parser.add_argument(
        "--prefix",
        default=DEFAULT_PREFIX if defaults else unset,
        help=f"the store's prefix option (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--json", action="store_true", default=False if defaults else unset, help="print JSON"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentmem", description="Memory for AI agents on Redis.")
    parser.add_argument("--version", action="version", version=f"agentmem {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="a two-turn customer-service conversation through the store")
    demo.add_argument("--url", help="Redis URL (default: start an embedded server)")
    demo.add_argument("--blip", action="store_true", help="blackhole the network for 1 s between turns")
    demo.set_defaults(run=_cmd_demo)

    doctor = commands.add_parser(
        "doctor",
        help="check a server for settings that lose agent memory",
        description="Check a server for settings that lose agent memory. Exit codes: 0 nothing "
        "dangerous, 1 dangerous settings, 2 not everything could be checked. The URL's password "
        "is never printed.",
    )
    doctor.add_argument(
        "--url", help="your server's URL (without it: a throwaway embedded server, to show the checks)"
    )
    doctor.add_argument("--json", action="store_true", help="print the report as JSON")
    doctor.add_argument("--pool-size", type=int, default=32, help="max_connections per process")
    doctor.add_argument("--processes", type=int, default=4, help="processes that share the server")
    doctor.add_argument("--health-check-interval", type=float, default=30.0)
    doctor.add_argument("--prefix", help="also report this store's memories index (store.memories)")
    doctor.set_defaults(run=_cmd_doctor)

    acl = commands.add_parser(
        "acl",
        help="print the least-privilege ACL SETUSER rule for a store's prefix",
        description="Print the ACL SETUSER rule a store with this prefix needs: its keys only, "
        "and only the commands the store sends (see agentmem.acl).",
    )
    acl.add_argument("--prefix", required=True, help="the store's prefix option")
    acl.add_argument("--user", required=True, help="ACL user name")
    acl.add_argument(
        "--password-env", metavar="VAR", help="environment variable holding the password (printed as SHA-256)"
    )
    acl.add_argument("--client-name", action="store_true", help="allow CLIENT SETNAME (client_name option)")
    acl.add_argument("--health", action="store_true", help="allow INFO, for health()'s server fields")
    acl.add_argument(
        "--large-values", action="store_true", help="allow CONFIG GET (max_value_bytes over 1 MiB)"
    )
    acl.add_argument(
        "--memories", action="store_true", help="allow what store.memories sends (FT.* on its index)"
    )
    acl.add_argument(
        "--cluster",
        action="store_true",
        help="allow CLUSTER SLOTS, ASKING and INFO (a store on a Redis Cluster; apply on every node)",
    )
    acl.add_argument("--wait-replicas", action="store_true", help="allow WAIT (wait_replicas option)")
    acl.add_argument(
        "--integration",
        action="append",
        default=[],
        choices=("openai-agents", "adk", "langgraph", "langgraph-index"),
        help="also allow what this framework adapter sends (repeatable)",
    )
    acl.set_defaults(run=_cmd_acl)

    inspect = commands.add_parser(
        "inspect",
        help="show what the agent remembers (read-only: never refreshes a TTL)",
        description="Read a store's memory with plain read commands (never the store's scripts, "
        "which slide TTLs). Targets: session ID [--last N], user ID, sessions [--match GLOB] "
        "[--count N]. --url, --prefix and --json go before or after the target. Exit codes: "
        "0 read, 1 corrupt data found, 2 server not readable.",
        usage="agentmem inspect --url URL [--prefix PREFIX] [--json] {session ID,user ID,sessions} ...",
    )
    _inspect_options(inspect, defaults=True)
    targets = inspect.add_subparsers(
        dest="target", required=True, metavar="{session,user,sessions}", prog="agentmem inspect"
    )
    session = targets.add_parser("session", help="a session: context, last messages, TTL, size")
    session.add_argument("id", help="session id")
    session.add_argument("--last", type=int, default=20, help="messages to show (default 20)")
    user = targets.add_parser("user", help="a user's long-term facts")
    user.add_argument("id", help="user id")
    sessions = targets.add_parser("sessions", help="list sessions (SCAN, never KEYS)")
    sessions.add_argument("--match", default="*", help="glob on the session id (default *)")
    sessions.add_argument("--count", type=int, default=50, help="most sessions to list (default 50)")
    for target in (session, user, sessions):
        _inspect_options(target, defaults=False)
    inspect.set_defaults(run=_cmd_inspect)

    # Listed for --help only: main() hands everything after "bench" to the benchmarks.
    commands.add_parser(
        "bench",
        help="agentmem vs hand-written redis-py code on your server (--url) or an embedded one "
        "(options: agentmem bench --help)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["bench"]:
        return _cmd_bench(arguments[1:])
    args = build_parser().parse_args(arguments)
    code: int = args.run(args)
    return code
