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
import json
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import redis
from redis.asyncio import BlockingConnectionPool, Redis

from agentmem import AgentMemoryStore, StoreConfig
from agentmem.bench.harness import Budget, Sample, measure_async, measure_sync
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
    "Contender",
    "PipelinedBlob",
    "PipelinedHash",
    "RawBlob",
    "RawHash",
    "Session",
    "SyncJson",
    "make_sessions",
    "standard_contenders",
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


class _OneAtATime(Contender):
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


class _Batched(Contender):
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


class AgentMem(_OneAtATime):
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


# -- hand-written redis.asyncio ------------------------------------------------------------


# redis-py types replies as ``bytes | str`` (it cannot know decode_responses); these are bytes.


def _encode_fields(values: Mapping[str, Any]) -> Mapping[Any, Any]:
    return {key: orjson.dumps(value) for key, value in values.items()}


def _decode_fields(raw: Mapping[Any, Any]) -> dict[str, Any]:
    return {key.decode(): orjson.loads(value) for key, value in raw.items()}


def _decode_messages(raw: Iterable[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(item) for item in raw]


def _decode_blob(raw: bytes | str | None) -> Any:
    if raw is None:
        raise LookupError("a seeded key is missing: was it deleted while the benchmark ran?")
    return orjson.loads(raw)


class _RedisContender(Contender):
    """Hand-written code on a ``redis.asyncio.Redis`` with a bounded, waiting pool."""

    #: "blob" or "hash": how the context and the facts are laid out.
    shape: ClassVar[str]

    def __init__(self, name: str, *, max_connections: int = DEFAULT_POOL_SIZE) -> None:
        super().__init__(name, max_connections=max_connections)
        self._client: Redis | None = None

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise RuntimeError(f"{self.name} is not open")
        return self._client

    async def open(self, url: str, prefix: str, sessions: int) -> None:
        pool = BlockingConnectionPool.from_url(
            url, max_connections=self.max_connections, client_name=f"bench-{self.name}"
        )
        self._client = Redis(connection_pool=pool)
        self.sessions = make_sessions(prefix, sessions)
        async with self.client.pipeline(transaction=False) as pipe:
            for session in self.sessions:
                if self.shape == "blob":
                    pipe.set(session.context_key, orjson.dumps(CONTEXT), ex=SESSION_TTL)
                    pipe.set(session.facts_key, orjson.dumps(PROFILE))
                else:
                    pipe.hset(session.context_key, mapping=_encode_fields(CONTEXT))
                    pipe.expire(session.context_key, SESSION_TTL)
                    pipe.hset(session.facts_key, mapping=_encode_fields(PROFILE))
                pipe.rpush(session.history_key, *[orjson.dumps(m) for m in HISTORY_SEED])
                pipe.expire(session.history_key, SESSION_TTL)
            await pipe.execute()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose(close_connection_pool=True)
            self._client = None


class RawBlob(_RedisContender, _OneAtATime):
    kind = "raw"
    shape = "blob"

    async def do_pair(self, session: Session) -> None:
        await self.client.set(session.context_key, orjson.dumps(CONTEXT), ex=SESSION_TTL)
        _decode_blob(await self.client.get(session.context_key))

    async def do_update(self, session: Session) -> None:
        # A blob can only be updated whole: read, merge, write back (and lose a concurrent update).
        context = _decode_blob(await self.client.get(session.context_key))
        context.update(CONTEXT_UPDATE)
        await self.client.set(session.context_key, orjson.dumps(context), ex=SESSION_TTL)

    async def do_append(self, session: Session) -> None:
        await self.client.rpush(session.history_key, *[orjson.dumps(m) for m in MESSAGES])
        await self.client.ltrim(session.history_key, -MAX_HISTORY, -1)
        await self.client.expire(session.history_key, SESSION_TTL)

    async def do_load_turn(self, session: Session) -> None:
        _decode_blob(await self.client.get(session.context_key))
        _decode_messages(await self.client.lrange(session.history_key, -HISTORY_LAST, -1))
        _decode_blob(await self.client.get(session.facts_key))


class RawHash(_RedisContender, _OneAtATime):
    kind = "raw"
    shape = "hash"

    async def do_pair(self, session: Session) -> None:
        await self.client.delete(session.context_key)
        await self.client.hset(session.context_key, mapping=_encode_fields(CONTEXT))
        await self.client.expire(session.context_key, SESSION_TTL)
        _decode_fields(await self.client.hgetall(session.context_key))
        await self.client.expire(session.context_key, SESSION_TTL)

    async def do_update(self, session: Session) -> None:
        await self.client.hset(session.context_key, mapping=_encode_fields(CONTEXT_UPDATE))
        await self.client.expire(session.context_key, SESSION_TTL)

    async def do_append(self, session: Session) -> None:
        await self.client.rpush(session.history_key, *[orjson.dumps(m) for m in MESSAGES])
        await self.client.ltrim(session.history_key, -MAX_HISTORY, -1)
        await self.client.expire(session.history_key, SESSION_TTL)

    async def do_load_turn(self, session: Session) -> None:
        _decode_fields(await self.client.hgetall(session.context_key))
        await self.client.expire(session.context_key, SESSION_TTL)
        _decode_messages(await self.client.lrange(session.history_key, -HISTORY_LAST, -1))
        await self.client.expire(session.history_key, SESSION_TTL)
        _decode_fields(await self.client.hgetall(session.facts_key))


class PipelinedBlob(_RedisContender, _Batched):
    kind = "pipelined"
    shape = "blob"

    async def do_pair(self, batch: Sequence[Session]) -> None:
        # Two pipelines, like agentmem's two awaited calls: all saves, then all loads.
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.set(session.context_key, orjson.dumps(CONTEXT), ex=SESSION_TTL)
            await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.get(session.context_key)
            for raw in await pipe.execute():
                _decode_blob(raw)

    async def do_update(self, batch: Sequence[Session]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.get(session.context_key)
            contexts = [_decode_blob(raw) for raw in await pipe.execute()]
        async with self.client.pipeline(transaction=False) as pipe:
            for session, context in zip(batch, contexts, strict=True):
                context.update(CONTEXT_UPDATE)
                pipe.set(session.context_key, orjson.dumps(context), ex=SESSION_TTL)
            await pipe.execute()

    async def do_append(self, batch: Sequence[Session]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.rpush(session.history_key, *[orjson.dumps(m) for m in MESSAGES])
                pipe.ltrim(session.history_key, -MAX_HISTORY, -1)
                pipe.expire(session.history_key, SESSION_TTL)
            await pipe.execute()

    async def do_load_turn(self, batch: Sequence[Session]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.get(session.context_key)
                pipe.lrange(session.history_key, -HISTORY_LAST, -1)
                pipe.get(session.facts_key)
            replies = await pipe.execute()
        for context, history, facts in zip(replies[::3], replies[1::3], replies[2::3], strict=True):
            _decode_blob(context)
            _decode_messages(history)
            _decode_blob(facts)


class PipelinedHash(_RedisContender, _Batched):
    kind = "pipelined"
    shape = "hash"

    async def do_pair(self, batch: Sequence[Session]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.delete(session.context_key)
                pipe.hset(session.context_key, mapping=_encode_fields(CONTEXT))
                pipe.expire(session.context_key, SESSION_TTL)
            await pipe.execute()
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.hgetall(session.context_key)
                pipe.expire(session.context_key, SESSION_TTL)
            for raw in (await pipe.execute())[::2]:
                _decode_fields(raw)

    async def do_update(self, batch: Sequence[Session]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.hset(session.context_key, mapping=_encode_fields(CONTEXT_UPDATE))
                pipe.expire(session.context_key, SESSION_TTL)
            await pipe.execute()

    # History is a list in both layouts: the same pipelined commands.
    do_append = PipelinedBlob.do_append

    async def do_load_turn(self, batch: Sequence[Session]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for session in batch:
                pipe.hgetall(session.context_key)
                pipe.expire(session.context_key, SESSION_TTL)
                pipe.lrange(session.history_key, -HISTORY_LAST, -1)
                pipe.expire(session.history_key, SESSION_TTL)
                pipe.hgetall(session.facts_key)
            replies = await pipe.execute()
        for context, history, facts in zip(replies[::5], replies[2::5], replies[4::5], strict=True):
            _decode_fields(context)
            _decode_messages(history)
            _decode_fields(facts)


# -- the tutorial shape: synchronous redis-py and stdlib json ------------------------------


class SyncJson(Contender):
    """Blocking redis-py and ``json``, measured in one worker thread at concurrency 1."""

    kind = "sync"
    max_concurrency = 1

    def __init__(self, name: str) -> None:
        super().__init__(name, max_connections=1)
        self._client: redis.Redis | None = None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError(f"{self.name} is not open")
        return self._client

    async def open(self, url: str, prefix: str, sessions: int) -> None:
        await asyncio.to_thread(self._open, url, prefix, sessions)

    def _open(self, url: str, prefix: str, sessions: int) -> None:
        self._client = redis.Redis.from_url(url, client_name=f"bench-{self.name}")
        self.sessions = make_sessions(prefix, sessions)
        pipe = self.client.pipeline(transaction=False)
        for session in self.sessions:
            pipe.set(session.context_key, json.dumps(CONTEXT), ex=SESSION_TTL)
            pipe.set(session.facts_key, json.dumps(PROFILE))
            pipe.rpush(session.history_key, *[json.dumps(m) for m in HISTORY_SEED])
            pipe.expire(session.history_key, SESSION_TTL)
        pipe.execute()

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def plan(self, operation: str, concurrency: int) -> Measure:
        if concurrency != 1:
            raise ValueError(f"{self.name} runs at concurrency 1 only")
        run: Callable[[Session], object] = getattr(self, f"do_{operation}")
        session = self.sessions[0]

        def step() -> int:
            run(session)
            return 1

        def measure(budget: Budget) -> Awaitable[Sample]:
            return asyncio.to_thread(measure_sync, step, budget)

        return measure

    def _get(self, key: str) -> Any:
        raw = self.client.get(key)
        if raw is None:
            raise LookupError("a seeded key is missing: was it deleted while the benchmark ran?")
        return json.loads(raw)

    def do_pair(self, session: Session) -> None:
        self.client.set(session.context_key, json.dumps(CONTEXT), ex=SESSION_TTL)
        self._get(session.context_key)

    def do_update(self, session: Session) -> None:
        context = self._get(session.context_key)
        context.update(CONTEXT_UPDATE)
        self.client.set(session.context_key, json.dumps(context), ex=SESSION_TTL)

    def do_append(self, session: Session) -> None:
        self.client.rpush(session.history_key, *[json.dumps(m) for m in MESSAGES])
        self.client.ltrim(session.history_key, -MAX_HISTORY, -1)
        self.client.expire(session.history_key, SESSION_TTL)

    def do_load_turn(self, session: Session) -> None:
        self._get(session.context_key)
        history: Any = self.client.lrange(session.history_key, -HISTORY_LAST, -1)
        _ = [json.loads(message) for message in history]
        self._get(session.facts_key)


def standard_contenders() -> list[Contender]:
    """Every contender of the side-by-side tables, in report order."""
    return [
        AgentMem("agentmem", auto_pipeline=True),
        AgentMem("agentmem-nopipe", auto_pipeline=False),
        RawBlob("raw-blob"),
        RawHash("raw-hash"),
        PipelinedBlob("pipe-blob"),
        PipelinedHash("pipe-hash"),
        SyncJson("sync-json"),
    ]
