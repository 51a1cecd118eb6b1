"""Everything measured side by side: agentmem, and the same work written by hand.

Each contender implements the four operations of :data:`benchmarks.workload.OPERATIONS`
on one session (or, hand-pipelined, on a batch of sessions), encoding and decoding the
same values. Hand-written code builds the same key names as agentmem (through
:class:`agentmem.keys.KeySchema`, once per session, outside the timed path).

* ``agentmem``: the store with auto-pipelining (the default).
* ``agentmem-nopipe``: the store with ``auto_pipeline=False``: one round trip per call.
* ``raw-blob``: redis.asyncio, one command at a time, the context as one orjson string
  (``SET key blob EX ttl`` / ``GET``), history as a list.
* ``raw-hash``: redis.asyncio, one command at a time, agentmem's hash layout (one orjson
  field per top-level key: ``DEL`` + ``HSET`` + ``EXPIRE`` / ``HGETALL`` + ``EXPIRE``).
* ``pipe-blob`` / ``pipe-hash``: the same commands, hand-pipelined: one worker sends the
  commands of up to :data:`PIPELINE_BATCH` sessions in one pipeline (``transaction=False``).
* ``sync-json``: redis-py's synchronous client with stdlib ``json``, one blob per session,
  ``SET`` with expiry / ``GET``: the shape most tutorials show. One thread, concurrency 1.

Every async contender gets the same bounded pool (``max_connections``, agentmem's default
unless a pool sweep says otherwise): redis-py's default pool raises "Too many connections"
past 100 concurrent commands instead of waiting.
"""

from __future__ import annotations

import abc
import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from agentmem import AgentMemoryStore, StoreConfig
from agentmem.bench.harness import Budget, Sample, measure_async
from agentmem.bench.workload import (
    CONTEXT,
    CONTEXT_UPDATE,
    HISTORY_LAST,
    HISTORY_SEED,
    MAX_HISTORY,
    MESSAGES,
    PROFILE,
    SESSION_TTL,
)
from agentmem.keys import KeySchema

__all__ = [
    "CONTENDER_NOTES",
    "DEFAULT_POOL_SIZE",
    "PIPELINE_BATCH",
    "AgentMem",
    "Batched",
    "Contender",
    "Measure",
    "OneAtATime",
    "Session",
    "make_sessions",
]

#: Sessions a hand-written pipeline carries (the issue's "batches of 64").
PIPELINE_BATCH = 64
#: Pool size of every async contender unless told otherwise: agentmem's own default.
DEFAULT_POOL_SIZE = StoreConfig().max_connections

Measure = Callable[[Budget], Awaitable[Sample]]

#: What each contender is, for the report.
CONTENDER_NOTES: dict[str, str] = {
    "agentmem": "AgentMemoryStore, auto_pipeline=True (default): concurrent calls share round trips",
    "agentmem-nopipe": "AgentMemoryStore, auto_pipeline=False: one round trip per call",
    "raw-blob": "redis.asyncio by hand, one command at a time; context = one orjson string (SET EX / GET)",
    "raw-hash": "redis.asyncio by hand, one command at a time; agentmem's hash layout "
    "(DEL+HSET+EXPIRE / HGETALL+EXPIRE)",
    "pipe-blob": f"raw-blob's commands hand-pipelined, {PIPELINE_BATCH} sessions per pipeline",
    "pipe-hash": f"raw-hash's commands hand-pipelined, {PIPELINE_BATCH} sessions per pipeline",
    "sync-json": "sync redis.Redis + stdlib json, one blob per session (SET EX / GET); "
    "one thread, concurrency 1 only",
}


@dataclass(frozen=True, slots=True)
class Session:
    """One session the benchmark works on, with its keys built once."""

    id: str
    user: str
    context_key: str
    history_key: str
    facts_key: str


def make_sessions(prefix: str, count: int) -> list[Session]:
    schema = KeySchema(prefix)
    sessions = []
    for index in range(count):
        keys = schema.session(f"session-{index}")
        user = f"user-{index}"
        sessions.append(
            Session(
                id=f"session-{index}",
                user=user,
                context_key=keys.context,
                history_key=keys.history,
                facts_key=schema.profile(user),
            )
        )
    return sessions


class Contender(abc.ABC):
    """Something that can do the four operations; ``batch`` sessions per awaited step."""

    kind: ClassVar[str]
    #: Sessions one step works on: 1 for one-command-at-a-time code.
    batch: ClassVar[int] = 1
    #: Highest concurrency it is run at (the synchronous store runs at 1 only).
    max_concurrency: ClassVar[int | None] = None

    def __init__(self, name: str, *, max_connections: int = DEFAULT_POOL_SIZE) -> None:
        self.name = name
        self.max_connections = max_connections
        self.sessions: list[Session] = []

    @abc.abstractmethod
    async def open(self, url: str, prefix: str, sessions: int) -> None:
        """Connect and write every session's starting data (context, history, facts)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    def runs_at(self, concurrency: int) -> bool:
        return self.max_concurrency is None or concurrency <= self.max_concurrency

    @abc.abstractmethod
    def plan(self, operation: str, concurrency: int) -> Measure:
        """A callable that measures ``operation`` at ``concurrency`` for one budget."""


class OneAtATime(Contender):
    """Async code that awaits each operation of each task by itself."""

    def _operation(self, name: str) -> Callable[[Session], Awaitable[object]]:
        method: Callable[[Session], Awaitable[object]] = getattr(self, f"do_{name}")
        return method

    def plan(self, operation: str, concurrency: int) -> Measure:
        run = self._operation(operation)
        sessions = self.sessions

        async def step(worker: int) -> int:
            await run(sessions[worker])
            return 1

        def measure(budget: Budget) -> Awaitable[Sample]:
            return measure_async(step, concurrency, 1, budget)

        return measure


class Batched(Contender):
    """Async code that sends ``batch`` sessions' commands per pipeline."""

    batch = PIPELINE_BATCH

    def _operation(self, name: str) -> Callable[[Sequence[Session]], Awaitable[object]]:
        method: Callable[[Sequence[Session]], Awaitable[object]] = getattr(self, f"do_{name}")
        return method

    def plan(self, operation: str, concurrency: int) -> Measure:
        run = self._operation(operation)
        size = min(self.batch, concurrency)
        workers = math.ceil(concurrency / size)
        batches = [self.sessions[w * size : min((w + 1) * size, concurrency)] for w in range(workers)]

        async def step(worker: int) -> int:
            await run(batches[worker])
            return len(batches[worker])

        def measure(budget: Budget) -> Awaitable[Sample]:
            return measure_async(step, workers, size, budget)

        return measure


# -- agentmem ----------------------------------------------------------------------------


class AgentMem(OneAtATime):
    kind = "agentmem"

    def __init__(self, name: str, *, auto_pipeline: bool, max_connections: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(name, max_connections=max_connections)
        self.auto_pipeline = auto_pipeline
        self._store: AgentMemoryStore | None = None

    @property
    def store(self) -> AgentMemoryStore:
        if self._store is None:
            raise RuntimeError(f"{self.name} is not open")
        return self._store

    async def open(self, url: str, prefix: str, sessions: int) -> None:
        self._store = AgentMemoryStore.from_url(
            url,
            prefix=prefix,
            auto_pipeline=self.auto_pipeline,
            max_connections=self.max_connections,
            ttl=SESSION_TTL,
            max_history=MAX_HISTORY,
            client_name=f"bench-{self.name}",
        )
        self.sessions = make_sessions(prefix, sessions)
        await asyncio.gather(*(self._seed(s) for s in self.sessions))

    async def _seed(self, session: Session) -> None:
        await self.store.save_context(session.id, CONTEXT)
        await self.store.append_messages(session.id, HISTORY_SEED)
        await self.store.remember(session.user, PROFILE)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.aclose()
            self._store = None

    async def do_pair(self, session: Session) -> None:
        await self.store.save_context(session.id, CONTEXT)
        await self.store.load_context(session.id)

    async def do_update(self, session: Session) -> None:
        await self.store.update_context(session.id, CONTEXT_UPDATE)

    async def do_append(self, session: Session) -> None:
        await self.store.append_messages(session.id, MESSAGES)

    async def do_load_turn(self, session: Session) -> None:
        await self.store.load_turn(session.id, user_id=session.user, last=HISTORY_LAST)
