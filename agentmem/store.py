"""AgentMemoryStore: an agent's conversation memory in Redis, where every call either
does what it says or raises a typed :class:`~agentmem.AgentMemoryError`."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from agentmem.breaker import CircuitBreaker
from agentmem.codec import META_FIELD, decode_fields, decode_messages, encode_fields, encode_messages
from agentmem.config import POOL_OPTIONS, StoreConfig, options_from_url
from agentmem.errors import AgentMemoryError, InvalidArgumentError, StoreClosedError, UnflushedJournalError
from agentmem.fallback import JournalFallback
from agentmem.health import Health, collect_health, refused_by_acl
from agentmem.journal import Journal, JournalEntry
from agentmem.keys import KeySchema
from agentmem.pipeline import AutoPipeliner, Call, send_direct
from agentmem.retry import Retrier, RetryPolicy, RetryStats
from agentmem.scripts import APPEND, MAX_EXACT, READ_HASH, READ_SESSION, WRITE_HASH, Script, ScriptRunner

__all__ = ["AgentMemoryStore", "Turn", "append_window"]

_EXISTS = (META_FIELD, b"1")
log = logging.getLogger("agentmem")


def _version() -> int:
    """A write's version: this process's wall clock in microseconds."""
    return time.time_ns() // 1000


@dataclass(frozen=True, slots=True)
class Turn:
    """What an agent needs at the start of a turn, fetched in one round trip."""

    context: dict[str, Any] | None
    history: list[dict[str, Any]]
    profile: dict[str, Any]


def _ms(value: float | None) -> int:
    return 0 if value is None else max(1, int(value * 1000))


def _count(value: object, name: str) -> int:
    """A count argument (``last``) as the scripts take it, or InvalidArgumentError before any I/O."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXACT:
        raise InvalidArgumentError(f"{name} must be an int in [1, {MAX_EXACT}], got {value!r}")
    return value


#: The append log keeps an operation id at least this long, whatever the options say:
#: margin for a server clock that steps (NTP, a failover to a replica with another clock).
MIN_APPEND_WINDOW = 60.0


def append_window(config: StoreConfig) -> float:
    """Seconds an append's operation id is remembered: twice the longest time between an
    append's first attempt and the last retry of it reaching the server, at least
    ``MIN_APPEND_WINDOW``.

    No retry starts later than ``retry_deadline`` after the first attempt; each attempt
    can wait ``pool_timeout`` for a connection, ``socket_connect_timeout`` to connect,
    and ``socket_timeout`` twice (a health-check PING, then the script).
    """
    attempt = config.pool_timeout + config.socket_connect_timeout + 2 * config.socket_timeout
    return max(MIN_APPEND_WINDOW, 2 * (config.retry_deadline + (config.retries + 1) * attempt))


def _refuse_pool_options(options: Mapping[str, Any], config: StoreConfig | None) -> None:
    """Pool options given with a caller's client would be ignored: raise, naming them."""
    if config is not None:
        default = StoreConfig()
        given = [name for name in POOL_OPTIONS if getattr(config, name) != getattr(default, name)]
    else:
        given = [name for name in POOL_OPTIONS if name in options]
    if given:
        raise TypeError(
            f"{', '.join(given)} configure the pool from_url() builds; a client you pass in keeps its "
            "own pool and settings: set them on that client (Redis(..., socket_timeout=...)) instead"
        )


class AgentMemoryStore:
    """Conversation context, message history and long-term user facts in Redis.

    ``AgentMemoryStore(client, **options)`` uses a ``redis.asyncio.Redis`` the caller
    owns and never closes it; :meth:`from_url` builds (and later closes) its own
    bounded connection pool. Options are the fields of :class:`~agentmem.StoreConfig`.
    """

    def __init__(
        self, client: Redis, *, config: StoreConfig | None = None, _own_pool: bool = False, **options: Any
    ) -> None:
        if config is not None and options:
            raise TypeError("pass either config= or keyword options, not both")
        self.config = config if config is not None else StoreConfig.from_options(**options)
        if not _own_pool:
            _refuse_pool_options(options, config)
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError(
                "AgentMemoryStore needs a client with decode_responses=False: it stores "
                "orjson bytes and reads them back as bytes"
            )
        self._client = client
        self._owns_client = False
        self._closed = False
        self._closing = False  # aclose() is flushing the journal: sends still allowed
        self._keys = KeySchema(self.config.prefix)
        self._append_window_ms = _ms(append_window(self.config))
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
        self._fallback: JournalFallback | None = None
        if self.config.fallback == "journal":
            journal = Journal(
                max_targets=self.config.journal_max_sessions, max_bytes=self.config.journal_max_bytes
            )
            self._fallback = JournalFallback(journal, self._replay)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> AgentMemoryStore:
        """A store with its own ``BlockingConnectionPool`` of ``max_connections``.

        A burst of calls waits up to ``pool_timeout`` for a free connection instead of
        failing with "Too many connections". The pool's own retry policy is set to zero
        retries on purpose: the store retries (with a deadline and a breaker) one level up.
        """
        url, options = options_from_url(url, options)
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
        store = cls(Redis(connection_pool=pool), config=config, _own_pool=True)
        store._owns_client = True
        return store

    # -- lifecycle -------------------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` this store sends its commands through."""
        return self._client

    @property
    def retry_stats(self) -> RetryStats:
        """Attempts, retries and failures counted since the store was made."""
        return self._retrier.stats

    @property
    def journal_backlog(self) -> int:
        """Writes kept locally that Redis has not received yet (0 without a journal)."""
        return len(self._fallback.journal) if self._fallback is not None else 0

    async def flush_journal(self) -> list[tuple[str, str]]:
        """Replay the journal now; return ``(kind, id)`` of every write still pending."""
        return await self._fallback.flush() if self._fallback is not None else []

    async def aclose(self) -> None:
        """Release every connection this store opened; a caller's client stays open.

        With a journal, first try to write it back; if that fails, the connections are
        still released and :class:`~agentmem.UnflushedJournalError` names every
        write that is lost.
        """
        if self._closed or self._closing:
            return
        self._closing = True
        pending: list[tuple[str, str]] = []
        try:
            pending = await self.flush_journal()
        finally:
            self._closed = True
            if self._pipeliner is not None:
                await self._pipeliner.aclose()
            if self._owns_client:
                await self._client.aclose(close_connection_pool=True)
        if pending:
            log.error(
                "agentmem: closing with %d journaled writes Redis never received: %s", len(pending), pending
            )
            raise UnflushedJournalError(
                f"{len(pending)} journaled writes could not be written back to Redis and are lost: {pending}",
                pending,
            )

    async def __aenter__(self) -> AgentMemoryStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------

    def _check_open(self, operation: str) -> None:
        if self._closed:
            raise StoreClosedError(f"{operation}: the store was closed by aclose(); nothing was sent")

    async def _send(self, operation: str, calls: Sequence[Call]) -> list[Any]:
        """Send one operation (retried as a whole), through the auto-pipeliner if on.

        Every attempt first checks that the store is open, so neither a new call nor a
        retry of one in flight reconnects a closed store.
        """
        self._check_open(operation)
        pipeliner = self._pipeliner

        async def attempt() -> list[Any]:
            self._check_open(operation)
            if pipeliner is not None:
                return await pipeliner.send(calls)
            return await send_direct(self._client, self._scripts, calls, self.breaker)

        return await self._retrier.run(operation, attempt)

    async def _script(self, operation: str, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return (await self._send(operation, (Call(script, keys, args),)))[0]

    async def _write(
        self,
        operation: str,
        script: Script,
        keys: Sequence[str],
        args: Sequence[Any],
        entry: Callable[[], JournalEntry],
    ) -> Any:
        """A write: sent, or (with ``fallback="journal"``) journaled when Redis is down."""
        if self._fallback is None:
            return await self._script(operation, script, keys, args)
        return await self._fallback.write(
            operation, lambda: self._script(operation, script, keys, args), entry
        )

    def _session_ttl_ms(self) -> int:
        return _ms(self.config.ttl)

    def _read_ttl_ms(self) -> int:
        return self._session_ttl_ms() if self.config.sliding_ttl else 0

    def _profile_ttl_ms(self) -> int:
        return _ms(self.config.profile_ttl)

    def _write_hash_args(
        self, ttl_ms: int, version: int, mode: str, encoded: Sequence[bytes]
    ) -> tuple[Any, ...]:
        return (ttl_ms, version, mode, *_EXISTS, *encoded)

    async def _replay(self, entry: JournalEntry) -> object:
        """Send one journaled write; fields never overwrite newer ones, appends apply once."""
        if entry.kind == "append":
            keys = self._keys.session(entry.target)
            args = (
                self._session_ttl_ms(),
                self.config.max_history,
                entry.operation_id,
                self._append_window_ms,
                *entry.encoded,
            )
            return await self._script("replay append", APPEND, keys.all(), args)
        keys_of_write: tuple[str, ...]
        if entry.kind == "remember":
            keys_of_write, ttl = (self._keys.profile(entry.target),), self._profile_ttl_ms()
            mode = "merge-if-newer"
        else:
            keys_of_write, ttl = self._keys.session(entry.target).all(), self._session_ttl_ms()
            mode = "replace-if-newer" if entry.kind == "save" else "merge-if-newer"
        return await self._script(
            f"replay {entry.kind}",
            WRITE_HASH,
            keys_of_write,
            self._write_hash_args(ttl, entry.version, mode, entry.encoded),
        )

    # -- session context -------------------------------------------------------------

    async def save_context(self, session_id: str, context: Mapping[str, Any]) -> None:
        """Replace the session's context with ``context`` and reset the session TTL."""
        keys = self._keys.session(session_id)
        encoded = encode_fields(context, limit=self.config.max_value_bytes, what="context")
        version = _version()
        await self._write(
            "save_context",
            WRITE_HASH,
            keys.all(),
            self._write_hash_args(self._session_ttl_ms(), version, "replace", encoded),
            lambda: JournalEntry("save", session_id, tuple(encoded), version, fields=dict(context)),
        )
        if self._fallback is not None:
            self._fallback.see(("ctx", session_id), dict(context))

    async def update_context(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set the given top-level fields, keeping the others; creates the context if missing.

        Each field is its own hash field, so concurrent updates of different fields
        never lose each other.
        """
        keys = self._keys.session(session_id)
        encoded = encode_fields(fields, limit=self.config.max_value_bytes, what="context update")
        version = _version()
        await self._write(
            "update_context",
            WRITE_HASH,
            keys.all(),
            self._write_hash_args(self._session_ttl_ms(), version, "merge", encoded),
            lambda: JournalEntry("update", session_id, tuple(encoded), version, fields=dict(fields)),
        )
        if self._fallback is not None and (seen := self._fallback.seen(("ctx", session_id))) is not None:
            self._fallback.see(("ctx", session_id), {**seen, **fields})

    async def _fetch_context(self, session_id: str) -> dict[str, Any] | None:
        keys = self._keys.session(session_id)
        raw_context, _ = await self._script(
            "load_context", READ_SESSION, keys.all(), (self._read_ttl_ms(), 1, 0)
        )
        return decode_fields(raw_context, what="context") if raw_context else None

    async def load_context(self, session_id: str) -> dict[str, Any] | None:
        """The session's context, or ``None`` if it has none (never for broken data)."""
        if self._fallback is None:
            return await self._fetch_context(session_id)
        journal = self._fallback.journal
        return await self._fallback.read_one(
            ("session", session_id),
            ("ctx", session_id),
            lambda: self._fetch_context(session_id),
            lambda base: journal.context_view(session_id, base),
        )

    # -- history ---------------------------------------------------------------------

    async def append_messages(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """Append messages, keep the newest ``max_history``, reset the TTL; return the new length.

        One atomic script run; a retry after a lost reply does not append twice. While
        journaled, the length is the one this process knows of.
        """
        keys = self._keys.session(session_id)
        batch = list(messages) if not isinstance(messages, (str, bytes, Mapping)) else messages
        encoded = encode_messages(batch, limit=self.config.max_value_bytes)
        operation_id = uuid.uuid4().hex
        length = await self._write(
            "append_messages",
            APPEND,
            keys.all(),
            (self._session_ttl_ms(), self.config.max_history, operation_id, self._append_window_ms, *encoded),
            lambda: JournalEntry(
                "append",
                session_id,
                tuple(encoded),
                _version(),
                messages=[dict(m) for m in batch],
                operation_id=operation_id,
            ),
        )
        fallback = self._fallback
        if fallback is not None:
            seen = fallback.seen(("hist", session_id))
            if seen is not None and length is not None:
                fallback.see(("hist", session_id), [*seen, *map(dict, batch)][-self.config.max_history :])
            if length is None:  # journaled
                return len(fallback.journal.history_view(session_id, seen, self.config.max_history))
        return int(length)

    async def _fetch_history(self, session_id: str, last: int) -> list[dict[str, Any]]:
        keys = self._keys.session(session_id)
        _, raw_history = await self._script(
            "load_history", READ_SESSION, keys.all(), (self._read_ttl_ms(), 0, last)
        )
        return decode_messages(raw_history)

    async def load_history(self, session_id: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The last ``last`` messages, oldest first (``[]`` when there are none)."""
        last = _count(last, "last")
        if self._fallback is None:
            return await self._fetch_history(session_id, last)
        journal, limit = self._fallback.journal, self.config.max_history
        history = await self._fallback.read_one(
            ("session", session_id),
            ("hist", session_id),
            lambda: self._fetch_history(session_id, last),
            lambda base: journal.history_view(session_id, base, limit),
        )
        return history[-last:]

    # -- long-term facts -------------------------------------------------------------

    async def remember(self, user_id: str, facts: Mapping[str, Any]) -> None:
        """Merge ``facts`` into the user's long-term facts."""
        key = self._keys.profile(user_id)
        encoded = encode_fields(facts, limit=self.config.max_value_bytes, what="facts")
        version = _version()
        await self._write(
            "remember",
            WRITE_HASH,
            (key,),
            self._write_hash_args(self._profile_ttl_ms(), version, "merge", encoded),
            lambda: JournalEntry("remember", user_id, tuple(encoded), version, fields=dict(facts)),
        )
        if self._fallback is not None and (seen := self._fallback.seen(("facts", user_id))) is not None:
            self._fallback.see(("facts", user_id), {**seen, **facts})

    async def _fetch_facts(self, user_id: str) -> dict[str, Any]:
        key = self._keys.profile(user_id)
        refresh = self._profile_ttl_ms() if self.config.sliding_ttl else 0
        return decode_fields(await self._script("recall", READ_HASH, (key,), (refresh,)), what="facts")

    async def recall(self, user_id: str) -> dict[str, Any]:
        """The user's long-term facts (``{}`` when there are none)."""
        if self._fallback is None:
            return await self._fetch_facts(user_id)
        journal = self._fallback.journal
        return await self._fallback.read_one(
            ("user", user_id),
            ("facts", user_id),
            lambda: self._fetch_facts(user_id),
            lambda base: journal.facts_view(user_id, base),
        )

    # -- both at once ----------------------------------------------------------------

    async def _fetch_turn(self, session_id: str, user_id: str | None, last: int) -> Turn:
        keys = self._keys.session(session_id)
        calls = [Call(READ_SESSION, keys.all(), (self._read_ttl_ms(), 1, last))]
        if user_id is not None:
            refresh = self._profile_ttl_ms() if self.config.sliding_ttl else 0
            calls.append(Call(READ_HASH, (self._keys.profile(user_id),), (refresh,)))
        results = await self._send("load_turn", calls)
        raw_context, raw_history = results[0]
        return Turn(
            context=decode_fields(raw_context, what="context") if raw_context else None,
            history=decode_messages(raw_history),
            profile=decode_fields(results[1], what="facts") if user_id is not None else {},
        )

    async def load_turn(self, session_id: str, *, user_id: str | None = None, last: int = 20) -> Turn:
        """Context, the last ``last`` messages and the user's facts, in one round trip."""
        last = _count(last, "last")
        if user_id is not None:
            self._keys.profile(user_id)  # validate before any I/O
        fallback = self._fallback
        if fallback is None:
            return await self._fetch_turn(session_id, user_id, last)
        journal, limit = fallback.journal, self.config.max_history

        def merged(
            context: dict[str, Any] | None, history: list[dict[str, Any]], facts: dict[str, Any]
        ) -> Turn:
            profile = journal.facts_view(user_id, facts) if user_id is not None else {}
            return Turn(
                context=journal.context_view(session_id, context),
                history=journal.history_view(session_id, history, limit)[-last:],
                profile=profile,
            )

        def local() -> Turn:
            return merged(
                fallback.seen(("ctx", session_id)),
                fallback.seen(("hist", session_id)) or [],
                (fallback.seen(("facts", user_id)) if user_id is not None else None) or {},
            )

        scopes = [("session", session_id)] + ([("user", user_id)] if user_id is not None else [])
        seen_keys = [("ctx", session_id), ("hist", session_id)]
        turn, from_redis = await fallback.read(
            scopes, seen_keys, lambda: self._fetch_turn(session_id, user_id, last), local
        )
        if not from_redis:
            return turn
        fallback.see(("ctx", session_id), turn.context)
        fallback.see(("hist", session_id), turn.history)
        if user_id is not None:
            fallback.see(("facts", user_id), turn.profile)
        return merged(turn.context, turn.history, turn.profile)

    # -- erasure ---------------------------------------------------------------------

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session's context and history; ``True`` if anything was there.

        Not journaled: while Redis is unreachable it raises MemoryUnavailableError.
        """
        keys = self._keys.session(session_id)
        if self._fallback is not None:
            await self._fallback.replay()
            self._fallback.journal.seen.drop(("ctx", session_id))
            self._fallback.journal.seen.drop(("hist", session_id))
        (removed,) = await self._send("delete_session", (Call(None, keys.all(), command="UNLINK"),))
        return int(removed) > 0

    async def forget_user(self, user_id: str) -> bool:
        """Erase the user's long-term facts; ``True`` if there were any. Not journaled."""
        key = self._keys.profile(user_id)
        if self._fallback is not None:
            await self._fallback.replay()
            self._fallback.journal.seen.drop(("facts", user_id))
        (removed,) = await self._send("forget_user", (Call(None, (key,), command="UNLINK"),))
        return int(removed) > 0

    # -- observability ---------------------------------------------------------------

    async def health(self) -> Health:
        """Server version, round-trip latency, pool use, breaker state, journal and key counters."""
        self._check_open("health")
        skipped: list[str] = []
        info: dict[str, Any] | None = None
        latency: float | None = None
        # A least-privilege ACL user may not run INFO (or even PING): report what it may see.
        started = time.perf_counter()
        try:
            info = await self._retrier.run("health", self._client.info)
            latency = time.perf_counter() - started
        except AgentMemoryError as exc:
            if not refused_by_acl(exc):
                raise
            skipped.append(
                f"INFO refused by the server's ACL for this user ({exc.__cause__ or exc}): "
                "server, server_version, evicted_keys, expired_keys and maxmemory_policy are unknown"
            )
            started = time.perf_counter()
            try:
                await self._retrier.run("health", self._client.ping)
                latency = time.perf_counter() - started
            except AgentMemoryError as ping_exc:
                if not refused_by_acl(ping_exc):
                    raise
                skipped.append(
                    f"PING refused by the server's ACL for this user ({ping_exc.__cause__ or ping_exc}): "
                    "latency_ms is unknown"
                )
        return collect_health(
            info=info,
            latency=latency,
            pool=self._client.connection_pool,
            breaker=self.breaker,
            stats=self._retrier.stats,
            journal_backlog=self.journal_backlog,
            skipped=tuple(skipped),
        )
