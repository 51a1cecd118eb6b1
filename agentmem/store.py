"""AgentMemoryStore: an agent's conversation memory in Redis, where every call either
does what it says or raises a typed :class:`~agentmem.AgentMemoryError`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentmem.breaker import CircuitBreaker
from agentmem.codec import META_FIELD, decode_fields, decode_messages, encode_fields, encode_messages
from agentmem.config import StoreConfig
from agentmem.health import Health, collect_health
from agentmem.keys import KeySchema
from agentmem.pipeline import AutoPipeliner, Call, send_direct
from agentmem.retry import Retrier, RetryPolicy
from agentmem.scripts import APPEND, MERGE_HASH, READ_HASH, READ_SESSION, SAVE_HASH, Script, ScriptRunner

__all__ = ["AgentMemoryStore", "Turn"]

_EXISTS = (META_FIELD, b"1")


@dataclass(frozen=True, slots=True)
class Turn:
    """What an agent needs at the start of a turn, fetched in one round trip."""

    context: dict[str, Any] | None
    history: list[dict[str, Any]]
    profile: dict[str, Any]


def _ms(value: float | None) -> int:
    return 0 if value is None else max(1, int(value * 1000))


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


class AgentMemoryStore:
    """Conversation context, message history and long-term user facts in Redis.

    ``AgentMemoryStore(client, **options)`` uses a ``redis.asyncio.Redis`` the caller
    owns and never closes it; :meth:`from_url` builds (and later closes) its own
    bounded connection pool. Options are the fields of :class:`~agentmem.StoreConfig`.
    """

    def __init__(self, client: Redis, *, config: StoreConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise TypeError("pass either config= or keyword options, not both")
        self.config = config if config is not None else StoreConfig.from_options(**options)
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "AgentMemoryStore needs a client with decode_responses=False: it stores "
                "orjson bytes and reads them back as bytes"
            )
        self._client = client
        self._owns_client = False
        self._keys = KeySchema(self.config.prefix)
        self._scripts = ScriptRunner()
        self.breaker = CircuitBreaker(
            threshold=self.config.breaker_threshold, cooldown=self.config.breaker_cooldown
        )
        self._retrier = Retrier(
            RetryPolicy(
                retries=self.config.retries,
                deadline=self.config.retry_deadline,
                base_delay=self.config.retry_base_delay,
                max_delay=self.config.retry_max_delay,
            ),
            self.breaker,
        )
        self._pipeliner = (
            AutoPipeliner(client, self._scripts, self.breaker) if self.config.auto_pipeline else None
        )

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AgentMemoryStore:
        """A store with its own ``BlockingConnectionPool`` of ``max_connections``.

        A burst of calls waits up to ``pool_timeout`` for a free connection instead of
        failing with "Too many connections". The pool's own retry policy is set to zero
        retries on purpose: the store retries (with a deadline and a breaker) one level up.
        """
        config = StoreConfig.from_options(**options)
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=config.max_connections,
            timeout=config.pool_timeout,
            socket_timeout=config.socket_timeout,
            socket_connect_timeout=config.socket_connect_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=config.client_name,
            health_check_interval=config.health_check_interval,
            decode_responses=False,
        )
        store = cls(Redis(connection_pool=pool), config=config)
        store._owns_client = True
        return store

    # -- lifecycle -------------------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` this store sends its commands through."""
        return self._client

    @property
    def retry_stats(self) -> Any:
        """Attempts, retries and failures counted since the store was made."""
        return self._retrier.stats

    async def aclose(self) -> None:
        """Release every connection this store opened; a caller's client stays open."""
        if self._pipeliner is not None:
            await self._pipeliner.aclose()
        if self._owns_client:
            await self._client.aclose(close_connection_pool=True)

    async def __aenter__(self) -> AgentMemoryStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------

    async def _send(self, operation: str, calls: Sequence[Call]) -> list[Any]:
        """Send one operation (retried as a whole), through the auto-pipeliner if on."""
        if self._pipeliner is not None:
            pipeliner = self._pipeliner
            return await self._retrier.run(operation, lambda: pipeliner.send(calls))
        return await self._retrier.run(
            operation, lambda: send_direct(self._client, self._scripts, calls, self.breaker)
        )

    async def _script(self, operation: str, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return (await self._send(operation, (Call(script, keys, args),)))[0]

    def _session_ttl_ms(self) -> int:
        return _ms(self.config.ttl)

    def _read_ttl_ms(self) -> int:
        return self._session_ttl_ms() if self.config.sliding_ttl else 0

    # -- session context -------------------------------------------------------------

    async def save_context(self, session_id: str, context: Mapping[str, Any]) -> None:
        """Replace the session's context with ``context`` and reset the session TTL."""
        keys = self._keys.session(session_id)
        fields = encode_fields(context, limit=self.config.max_value_bytes, what="context")
        await self._script(
            "save_context",
            SAVE_HASH,
            keys.all(),
            (self._session_ttl_ms(), *_EXISTS, *fields),
        )

    async def update_context(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set the given top-level fields, keeping the others; creates the context if missing.

        Each field is its own hash field, so concurrent updates of different fields
        never lose each other.
        """
        keys = self._keys.session(session_id)
        encoded = encode_fields(fields, limit=self.config.max_value_bytes, what="context update")
        await self._script(
            "update_context",
            MERGE_HASH,
            keys.all(),
            (self._session_ttl_ms(), *_EXISTS, *encoded),
        )

    async def load_context(self, session_id: str) -> dict[str, Any] | None:
        """The session's context, or ``None`` if it has none (never for broken data)."""
        keys = self._keys.session(session_id)
        raw_context, _ = await self._script(
            "load_context", READ_SESSION, keys.all(), (self._read_ttl_ms(), 1, 0)
        )
        return decode_fields(raw_context, what="context") if raw_context else None

    # -- history ---------------------------------------------------------------------

    async def append_messages(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """Append messages, keep the newest ``max_history``, reset the TTL; return the new length.

        One atomic script run; a retry after a lost reply does not append twice.
        """
        keys = self._keys.session(session_id)
        encoded = encode_messages(messages, limit=self.config.max_value_bytes)
        operation_id = uuid.uuid4().hex
        length: int = await self._script(
            "append_messages",
            APPEND,
            keys.all(),
            (self._session_ttl_ms(), self.config.max_history, operation_id, *encoded),
        )
        return length

    async def load_history(self, session_id: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The last ``last`` messages, oldest first (``[]`` when there are none)."""
        keys = self._keys.session(session_id)
        _, raw_history = await self._script(
            "load_history",
            READ_SESSION,
            keys.all(),
            (self._read_ttl_ms(), 0, _positive(last, "last")),
        )
        return decode_messages(raw_history)

    # -- long-term facts -------------------------------------------------------------

    def _profile_ttl_ms(self) -> int:
        return _ms(self.config.profile_ttl)

    async def remember(self, user_id: str, facts: Mapping[str, Any]) -> None:
        """Merge ``facts`` into the user's long-term facts."""
        key = self._keys.profile(user_id)
        encoded = encode_fields(facts, limit=self.config.max_value_bytes, what="facts")
        await self._script("remember", MERGE_HASH, (key,), (self._profile_ttl_ms(), *_EXISTS, *encoded))

    async def recall(self, user_id: str) -> dict[str, Any]:
        """The user's long-term facts (``{}`` when there are none)."""
        key = self._keys.profile(user_id)
        refresh = self._profile_ttl_ms() if self.config.sliding_ttl else 0
        raw = await self._script("recall", READ_HASH, (key,), (refresh,))
        return decode_fields(raw, what="facts")

    # -- both at once ----------------------------------------------------------------

    async def load_turn(self, session_id: str, *, user_id: str | None = None, last: int = 20) -> Turn:
        """Context, the last ``last`` messages and the user's facts, in one round trip."""
        keys = self._keys.session(session_id)
        calls: list[tuple[Script, Sequence[str], Sequence[Any]]] = [
            (READ_SESSION, keys.all(), (self._read_ttl_ms(), 1, _positive(last, "last")))
        ]
        if user_id is not None:
            refresh = self._profile_ttl_ms() if self.config.sliding_ttl else 0
            calls.append((READ_HASH, (self._keys.profile(user_id),), (refresh,)))
        results = await self._send("load_turn", [Call(*call) for call in calls])
        raw_context, raw_history = results[0]
        return Turn(
            context=decode_fields(raw_context, what="context") if raw_context else None,
            history=decode_messages(raw_history),
            profile=decode_fields(results[1], what="facts") if user_id is not None else {},
        )

    # -- erasure ---------------------------------------------------------------------

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session's context and history; ``True`` if anything was there."""
        keys = self._keys.session(session_id)
        removed: int = await self._retrier.run("delete_session", lambda: self._client.unlink(*keys.all()))
        return int(removed) > 0

    async def forget_user(self, user_id: str) -> bool:
        """Erase the user's long-term facts; ``True`` if there were any."""
        key = self._keys.profile(user_id)
        (removed,) = await self._send("forget_user", (Call(None, (key,), command="UNLINK"),))
        return int(removed) > 0

    # -- observability ---------------------------------------------------------------

    async def health(self) -> Health:
        """Server version, round-trip latency, pool use, breaker state and key counters."""
        started = time.perf_counter()
        info: dict[str, Any] = await self._retrier.run("health", lambda: self._client.info())
        latency = time.perf_counter() - started
        return collect_health(
            info=info,
            latency=latency,
            pool=self._client.connection_pool,
            breaker=self.breaker,
            stats=self._retrier.stats,
            journal_backlog=0,
        )
