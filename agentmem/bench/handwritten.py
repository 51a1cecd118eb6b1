"""The same work as agentmem, written by hand: redis.asyncio one command at a time
(``raw-blob``, ``raw-hash``), hand-pipelined (``pipe-blob``, ``pipe-hash``) and redis-py's
synchronous client with stdlib json (``sync-json``); see :mod:`agentmem.bench.contenders`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar

import orjson
import redis
from redis.asyncio import BlockingConnectionPool, Redis

from agentmem.bench.contenders import (
    DEFAULT_POOL_SIZE,
    Batched,
    Contender,
    Measure,
    OneAtATime,
    Session,
    make_sessions,
)
from agentmem.bench.harness import Budget, Sample, measure_sync
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

__all__ = ["PipelinedBlob", "PipelinedHash", "RawBlob", "RawHash", "SyncJson"]


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


class RawBlob(_RedisContender, OneAtATime):
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


class RawHash(_RedisContender, OneAtATime):
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


class PipelinedBlob(_RedisContender, Batched):
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


class PipelinedHash(_RedisContender, Batched):
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
