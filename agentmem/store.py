"""AgentMemoryStore: an agent's conversation memory in Redis, where every call either
does what it says or raises a typed :class:`~agentmem.AgentMemoryError`."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster

from agentmem._connect import build_pool, build_sentinel_pool
from agentmem._translate import is_transient
from agentmem.breaker import CircuitBreaker
from agentmem.bulk import MIN_BULK_LIMIT, BulkLimit
from agentmem.cluster import ClusterTransport
from agentmem.codec import (
    decode_context,
    decode_fields,
    decode_messages,
    encode_context,
    encode_fields,
    encode_messages,
    packed_version,
)
from agentmem.config import POOL_OPTIONS, StoreConfig, options_from_url
from agentmem.errors import (
    AgentMemoryError,
    CircuitOpenError,
    InvalidArgumentError,
    MemoryPermissionError,
    MemoryUnavailableError,
    StoreClosedError,
)
from agentmem.health import Health, collect_health
from agentmem.keys import KeySchema, SessionKeys
from agentmem.pipeline import AutoPipeliner, Call, drain, send_direct
from agentmem.probe import ping_fresh_connection
from agentmem.replication import Wait
from agentmem.retry import Retrier, RetryPolicy, RetryStats
from agentmem.scripts import (
    APPEND,
    DELETE,
    MAX_EXACT,
    OPERATION_ID_BYTES,
    READ_HASH,
    READ_SESSION,
    REPLAY_APPEND,
    WRITE_CONTEXT,
    WRITE_FACTS,
    Script,
    ScriptRunner,
)
from agentmem.sentinel import SENTINEL_SCHEMES, sentinel_url
from agentmem.topology import client_transport, cluster_transport, is_cluster_node

__all__ = ["AgentMemoryStore", "Turn", "append_window"]

log = logging.getLogger("agentmem")


def new_operation_id() -> bytes:
    """An append's operation id: 64 random bits. Ids are compared only within one session's
    log of recent appends (a few hundred), which a new id matches with odds of ~2**-55;
    every byte more costs the log memory for no safety it needs."""
    return secrets.token_bytes(OPERATION_ID_BYTES)


def write_version() -> int:
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


#: Sessions whose keys a store keeps built (a few hundred bytes each).
KEY_CACHE_SIZE = 4096

#: The append log keeps an operation id at least this long, whatever the options say:
#: margin for a server clock that steps (NTP, a failover to a replica with another clock).
MIN_APPEND_WINDOW = 60.0


def append_window(config: StoreConfig) -> float:
    """Seconds an append's operation id is remembered: twice the longest time between an
    append's first attempt and the last retry of it reaching the server, at least
    ``MIN_APPEND_WINDOW``.

    No attempt starts later than ``retry_deadline`` after the first (a caller waiting
    for an open breaker included), and one attempt can wait ``pool_timeout`` for a
    connection, ``socket_connect_timeout`` to connect and ``socket_timeout`` twice (a
    health-check PING, then the script, plus ``wait_timeout`` with ``wait_replicas``).
    """
    attempt = config.pool_timeout + config.socket_connect_timeout + 2 * config.socket_timeout
    if config.wait_replicas:  # the script's pipeline is read under socket_timeout + wait_timeout
        attempt += config.wait_timeout
    return max(MIN_APPEND_WINDOW, 2 * (config.retry_deadline + attempt))


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
    ``fallback="journal"`` gives a :class:`~agentmem.JournaledStore`, a subclass that
    layers an in-process write-behind journal over this class.
    """

    def __new__(
        cls,
        client: Redis | RedisCluster,
        *,
        config: StoreConfig | None = None,
        _own_pool: bool = False,
        **options: Any,
    ) -> AgentMemoryStore:
        # Optional behaviour is a layer (a subclass), picked here so both constructors and
        # from_url() select it and isinstance(store, AgentMemoryStore) stays true.
        layer = config.fallback if config is not None else options.get("fallback", "raise")
        if cls is AgentMemoryStore and layer == "journal":
            from agentmem.journaled import JournaledStore

            return super().__new__(JournaledStore)
        return super().__new__(cls)

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        config: StoreConfig | None = None,
        _own_pool: bool = False,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError("pass either config= or keyword options, not both")
        if not _own_pool:  # before the options' own checks: this is the mistake to name
            _refuse_pool_options(options, config)
        self.config = config if config is not None else StoreConfig.from_options(**options)
        cluster_client = client if isinstance(client, RedisCluster) else None
        kwargs: Mapping[str, Any] = (
            cluster_client.get_connection_kwargs()
            if cluster_client is not None
            else cast(Redis, client).connection_pool.connection_kwargs
        )
        if kwargs.get("decode_responses"):
            raise ValueError(
                "AgentMemoryStore needs a client with decode_responses=False: it stores "
                "orjson bytes and reads them back as bytes"
            )
        #: A RedisCluster given is kept only to hand back (``client``); the store talks to
        #: the cluster through its own per-node pools (``_cluster``).
        self._client: Redis = cast(Redis, client)
        self._owns_client = False
        self._closed = False
        self._keys = KeySchema(self.config.prefix)
        # Agents touch the same few sessions every turn: build (and validate) their keys once.
        self._cached_session_keys = functools.lru_cache(maxsize=KEY_CACHE_SIZE)(self._keys.session)
        self._append_window_ms = _ms(append_window(self.config))
        self._scripts = ScriptRunner()
        self.breaker = CircuitBreaker(
            threshold=self.config.breaker_threshold,
            fail_fast_after=self.config.retry_deadline,
            probe_interval=self.config.breaker_probe_interval,
            probe=self._probe,
            on_recover=self._drop_idle_connections,
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
        self._wait = (
            Wait(self.config.wait_replicas, _ms(self.config.wait_timeout))
            if self.config.wait_replicas
            else None
        )
        #: Redis Cluster: the transport that routes by slot (None on a single server, or
        #: until from_url(cluster=None) has asked the server which it is).
        self._cluster: ClusterTransport | None = None
        self._detect_cluster: str | None = None
        self._detecting: asyncio.Future[None] | None = None
        if cluster_client is not None:
            self._cluster = client_transport(
                cluster_client, self._scripts, self.breaker, self.config, self._wait
            )
        #: Round trips on the wire without the auto-pipeliner (auto_pipeline=False).
        self._direct_sends = 0
        self._bulk_limit = BulkLimit(self._client, self._retrier)
        self._pipeliner = (
            AutoPipeliner(self._client, self._scripts, self.breaker, wait=self._wait)
            if self.config.auto_pipeline and cluster_client is None
            else None
        )
        if self.config.telemetry:  # a layer that wraps _send: a store without it runs none of it
            from agentmem.telemetry import instrument

            instrument(self)

    @classmethod
    def from_url(cls, url: str, *, cluster: bool | None = None, **options: Any) -> AgentMemoryStore:
        """A store with its own ``BlockingConnectionPool`` of ``max_connections``; a
        ``redis+sentinel://`` (``rediss+sentinel://``) URL gives one on the primary that
        Sentinel names (see :meth:`from_sentinel`).

        Credentials (``username``, ``password``) and TLS settings (``ssl_ca_certs``,
        ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs``, ``ssl_check_hostname``, or a
        ready ``ssl_context``) are options like the others: in the URL or as keywords, not
        both. See :func:`agentmem._connect.build_pool`.

        ``cluster``: ``None`` (the default) asks the server on the first call whether it
        is a Redis Cluster node (``INFO cluster``) and, if so, routes every call by slot to
        the cluster's primaries (one pool of ``max_connections`` per primary); ``True`` or
        ``False`` says so without asking.
        """
        url, options = options_from_url(url, options)
        config = StoreConfig.from_options(**options)
        if urlsplit(url).scheme in SENTINEL_SCHEMES:
            if cluster:
                raise InvalidArgumentError("cluster=True cannot go with a Sentinel URL")
            return cls._owning(build_sentinel_pool(url, config), config)
        store = cls._owning(build_pool(url, config), config)
        if cluster is None:
            store._detect_cluster = url
        elif cluster:
            store._use_cluster(url)
        return store

    def _use_cluster(self, url: str) -> None:
        """Route by slot from now on, the node at ``url`` being the first one asked."""
        self._cluster = cluster_transport(url, self.config, self._scripts, self.breaker, self._wait)
        if self._pipeliner is not None:  # telemetry's hook, set on the single-node pipeliner
            self._cluster.on_batch = self._pipeliner.on_batch
        self._pipeliner = None

    async def _resolve_topology(self) -> None:
        """from_url(cluster=None): ask the server once whether it is a cluster node.

        Unanswered (the server is down), the call goes on as on a single server, where it
        fails and is retried (and counted by the breaker) as any call; the next attempt asks
        again. Not a retried call of its own, so ``retry_stats`` count the caller's calls only.
        """
        # One INFO for a first burst of concurrent calls, and every caller of the burst
        # released in the same loop iteration (a lock would let them out one by one, each
        # in a round trip of its own, instead of in one pipeline).
        detecting = self._detecting
        if detecting is None:
            detecting = self._detecting = asyncio.ensure_future(self._detect())
            detecting.add_done_callback(self._detection_done)
        await asyncio.shield(detecting)

    def _detection_done(self, detecting: asyncio.Future[None]) -> None:
        if self._detecting is detecting:
            self._detecting = None
        if not detecting.cancelled():
            detecting.exception()  # raised to its waiters; retrieved here for the one-off task

    async def _detect(self) -> None:
        url = self._detect_cluster
        if url is None:
            return
        try:
            cluster = await is_cluster_node(self._client)
        except Exception as exc:
            if is_transient(exc):
                return
            cluster = False
        if cluster:
            self._use_cluster(url)
        self._detect_cluster = None

    @classmethod
    def _owning(cls, pool: ConnectionPool, config: StoreConfig) -> AgentMemoryStore:
        """A store on a pool it built, and closes."""
        store = cls(Redis(connection_pool=pool), config=config, _own_pool=True)
        store._owns_client = True
        return store

    @classmethod
    def from_sentinel(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> AgentMemoryStore:
        """A store on the primary that Redis Sentinel names for ``service_name``.

        Every new connection asks the sentinels where the primary is, so after a failover
        the store reconnects to the promoted replica by itself (the breaker's probe goes
        through the sentinels too). Options are those of :meth:`from_url`; TLS options
        make the data connections TLS. ``sentinel_kwargs`` go to the connections to the
        sentinels themselves (for example their own ``password``). The same as
        ``from_url("redis+sentinel://host:port,.../<service>")``.
        """
        config = StoreConfig.from_options(**options)
        url = sentinel_url(sentinels, service_name, tls=bool(config.tls_options_given))
        return cls._owning(build_sentinel_pool(url, config, sentinel_kwargs=sentinel_kwargs), config)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` this store sends its commands through (on a Redis
        Cluster: the ``RedisCluster`` given, or from ``from_url`` the seed node's client)."""
        return self._client

    @property
    def retry_stats(self) -> RetryStats:
        """Attempts, retries and failures counted since the store was made."""
        return self._retrier.stats

    async def aclose(self) -> None:
        """Release every connection this store opened; a caller's client stays open."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.breaker.aclose()
            if self._detecting is not None:  # a detection still asking: its callers fail closed
                await asyncio.gather(self._detecting, return_exceptions=True)
            if self._pipeliner is not None:
                await self._pipeliner.aclose()
            if self._cluster is not None:
                await self._cluster.aclose()
            # auto_pipeline=False: round trips on the wire complete on an open pool.
            await drain(set(), lambda: self._direct_sends > 0)
        finally:
            if self._owns_client:
                await self._client.aclose(close_connection_pool=True)

    async def __aenter__(self) -> AgentMemoryStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------

    async def _drop_idle_connections(self) -> None:
        """After an outage: idle pooled connections predate it and are likely dead."""
        if self._cluster is not None:
            await self._cluster.drop_idle()
            return
        if self._pipeliner is not None:
            await self._pipeliner.drop_held()
        await self._client.connection_pool.disconnect(inuse_connections=False)

    async def _probe(self) -> None:
        """The breaker's probe: the server (every primary of a cluster) answers."""
        if self._cluster is not None:
            await self._cluster.probe()
        else:
            await ping_fresh_connection(self._client)

    def _admin_client(self) -> Redis:
        """Where node-level commands (INFO, PING) go: the server, or a cluster primary."""
        return self._cluster.admin_client() if self._cluster is not None else self._client

    def _check_open(self, operation: str, *, retry: bool = False) -> None:
        if self._closed:
            if retry:
                raise StoreClosedError(
                    f"{operation}: the store was closed by aclose() before this call's retry; its "
                    "earlier attempt failed and may have been applied (safe to repeat)"
                )
            raise StoreClosedError(f"{operation}: the store was closed by aclose(); nothing was sent")

    async def _send(self, operation: str, calls: Sequence[Call]) -> list[Any]:
        """Send one operation (retried as a whole), through the auto-pipeliner if on.

        Every attempt first checks that the store is open, so neither a new call nor a
        retry of one in flight reconnects a closed store.
        """
        self._check_open(operation)
        if self.config.max_value_bytes > MIN_BULK_LIMIT:
            await self._bulk_limit.check(operation, calls)
        pipeliner = self._pipeliner
        attempts = 0
        failed: Exception | None = None
        started: float | None = None
        if pipeliner is not None and self._detect_cluster is None and not self.breaker.is_open:
            # The common case, one attempt that succeeds, without the Retrier's coroutine and
            # this closure (µs per call at 64 agents); a failure goes on through the Retrier
            # as its first attempt, under the same deadline.
            started = time.monotonic()
            attempts = 1
            self._retrier.stats.attempts += 1
            try:
                return await pipeliner.send(calls)
            except AgentMemoryError:
                raise
            except Exception as exc:
                failed = exc

        async def attempt() -> list[Any]:
            nonlocal attempts
            self._check_open(operation, retry=attempts > 0)
            attempts += 1
            if self._detect_cluster is not None:
                await self._resolve_topology()
            if self._cluster is not None:
                return await self._cluster.send(calls)
            if pipeliner is not None:
                return await pipeliner.send(calls)
            self._direct_sends += 1  # aclose() waits for it, as the pipeliner does for its own
            try:
                return await send_direct(self._client, self._scripts, calls, self.breaker, self._wait)
            finally:
                self._direct_sends -= 1

        return await self._retrier.run(operation, attempt, failed=failed, started=started)

    async def _scan(self, operation: str, match: str, *, count: int = 500) -> set[bytes]:
        """Every key matching ``match``, by ``SCAN`` (never ``KEYS``): on the server, or on
        every primary of a cluster (a keyless call would reach one node only). Each step is
        retried like any call; for listings (adapters' admin reads), not for hot paths."""
        self._check_open(operation)
        if self._detect_cluster is not None:
            await self._resolve_topology()
        found: set[bytes] = set()
        cluster = self._cluster
        if cluster is None:
            cursor: int | bytes = 0
            while True:
                scan = Call(None, (), (cursor, "MATCH", match, "COUNT", count), command="SCAN")
                ((cursor, keys),) = await self._send(operation, (scan,))
                found.update(keys)
                if int(cursor) == 0:
                    return found
        await self._retrier.run(operation, functools.partial(cluster.refresh, force=True))
        for address in cluster.slots.primaries:
            client = cluster.client(address)
            node_cursor = 0
            while True:
                step = functools.partial(client.scan, node_cursor, match=match, count=count)
                node_cursor, keys = await self._retrier.run(operation, step)
                found.update(keys)
                if node_cursor == 0:
                    break
        return found

    async def _script(self, operation: str, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return (await self._send(operation, (Call(script, keys, args),)))[0]

    def _session_keys(self, session_id: str) -> SessionKeys:
        """The session's keys; :class:`~agentmem.InvalidKeyError` for an unusable id."""
        if type(session_id) is str:
            keys: SessionKeys = self._cached_session_keys(session_id)
            return keys
        return self._keys.session(session_id)  # not a str: raises the typed error

    def _session_ttl_ms(self) -> int:
        return _ms(self.config.ttl)

    def _read_ttl_ms(self) -> int:
        return self._session_ttl_ms() if self.config.sliding_ttl else 0

    def _profile_ttl_ms(self) -> int:
        return _ms(self.config.profile_ttl)

    # -- writes of encoded data --------------------------------------------------------
    #
    # Each public write encodes (raising before any I/O), picks its version or operation
    # id, and sends through one of these. They take the version/id as an argument so a
    # layer can keep the same ones for a later replay; a mode ending in "-if-newer" is
    # such a replay, dropped by the script when a newer write, replace or delete exists.

    async def _write_context(
        self, operation: str, session_id: str, encoded: Sequence[bytes], version: int, mode: str
    ) -> bool:
        """Write a context: ``encoded`` is ``(base,)`` for a replace mode, field/value pairs
        for a merge; ``False`` when an ``-if-newer`` write was superseded."""
        keys = self._session_keys(session_id)
        args = (self._session_ttl_ms(), packed_version(version), mode, *encoded)
        return bool(await self._script(operation, WRITE_CONTEXT, keys.core(), args))

    async def _write_facts(
        self, operation: str, user_id: str, encoded: Sequence[bytes], version: int, mode: str
    ) -> bool:
        """Write a user's facts; ``False`` when an ``-if-newer`` write was superseded."""
        keys = self._keys.profile_keys(user_id)
        args = (self._profile_ttl_ms(), packed_version(version), mode, *encoded)
        return bool(await self._script(operation, WRITE_FACTS, keys, args))

    async def _append(
        self, operation: str, session_id: str, encoded: Sequence[bytes], operation_id: bytes
    ) -> int:
        """Append messages once per ``operation_id``; the new length."""
        keys = self._session_keys(session_id).appending()
        args = (
            self._session_ttl_ms(),
            self.config.max_history,
            operation_id,
            self._append_window_ms,
            *encoded,
        )
        return int(await self._script(operation, APPEND, keys, args))

    async def _append_unless_deleted_after(
        self, operation: str, session_id: str, encoded: Sequence[bytes], operation_id: bytes, version: int
    ) -> int | None:
        """``_append`` of a write made at ``version``; ``None`` (nothing appended) when the
        session was deleted after it."""
        keys = self._session_keys(session_id).appending()
        args = (
            self._session_ttl_ms(),
            self.config.max_history,
            operation_id,
            version,
            self._append_window_ms,
            *encoded,
        )
        length = int(await self._script(operation, REPLAY_APPEND, keys, args))
        return None if length < 0 else length

    # -- session context -------------------------------------------------------------

    async def save_context(self, session_id: str, context: Mapping[str, Any]) -> None:
        """Replace the session's context with ``context`` and reset the session TTL."""
        self._session_keys(session_id)  # validate before encoding
        encoded = encode_context(context, limit=self.config.max_value_bytes, what="context")
        await self._write_context("save_context", session_id, (encoded,), write_version(), "replace")

    async def update_context(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set the given top-level fields, keeping the others; creates the context if missing.

        Each field is its own hash field, so concurrent updates of different fields
        never lose each other.
        """
        self._session_keys(session_id)
        encoded = encode_fields(fields, limit=self.config.max_value_bytes, what="context update")
        await self._write_context("update_context", session_id, encoded, write_version(), "merge")

    async def load_context(self, session_id: str) -> dict[str, Any] | None:
        """The session's context, or ``None`` if it has none (never for broken data)."""
        keys = self._session_keys(session_id)
        fields, base, _ = await self._script(
            "load_context", READ_SESSION, keys.core(), (self._read_ttl_ms(), 1, 0)
        )
        return decode_context(fields, base)

    # -- history ---------------------------------------------------------------------

    async def append_messages(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """Append messages, keep the newest ``max_history``, reset the TTL; return the new length.

        One atomic script run; a retry after a lost reply does not append twice.
        """
        self._session_keys(session_id)
        batch = list(messages) if not isinstance(messages, (str, bytes, Mapping)) else messages
        encoded = encode_messages(batch, limit=self.config.max_value_bytes)
        return await self._append("append_messages", session_id, encoded, new_operation_id())

    async def load_history(self, session_id: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The last ``last`` messages, oldest first (``[]`` when there are none)."""
        last = _count(last, "last")
        keys = self._session_keys(session_id)
        _, _, raw_history = await self._script(
            "load_history", READ_SESSION, keys.core(), (self._read_ttl_ms(), 0, last)
        )
        return decode_messages(raw_history)

    # -- long-term facts -------------------------------------------------------------

    async def remember(self, user_id: str, facts: Mapping[str, Any]) -> None:
        """Merge ``facts`` into the user's long-term facts."""
        self._keys.profile(user_id)
        encoded = encode_fields(facts, limit=self.config.max_value_bytes, what="facts")
        await self._write_facts("remember", user_id, encoded, write_version(), "merge")

    def _recall_call(self, user_id: str) -> Call:
        refresh = self._profile_ttl_ms() if self.config.sliding_ttl else 0
        return Call(READ_HASH, (self._keys.profile(user_id),), (refresh,))

    async def recall(self, user_id: str) -> dict[str, Any]:
        """The user's long-term facts (``{}`` when there are none)."""
        (raw,) = await self._send("recall", (self._recall_call(user_id),))
        return decode_fields(raw, what="facts")

    # -- both at once ----------------------------------------------------------------

    async def load_turn(self, session_id: str, *, user_id: str | None = None, last: int = 20) -> Turn:
        """Context, the last ``last`` messages and the user's facts, in one round trip."""
        last = _count(last, "last")
        keys = self._session_keys(session_id)
        calls = [Call(READ_SESSION, keys.core(), (self._read_ttl_ms(), 1, last))]
        if user_id is not None:
            calls.append(self._recall_call(user_id))  # validates before any I/O
        results = await self._send("load_turn", calls)
        fields, base, raw_history = results[0]
        return Turn(
            context=decode_context(fields, base),
            history=decode_messages(raw_history),
            profile=decode_fields(results[1], what="facts") if user_id is not None else {},
        )

    # -- erasure ---------------------------------------------------------------------

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session's context and history; ``True`` if anything was there.

        Leaves a small tombstone key with the session's TTL (see ``DELETE``).
        """
        keys = self._session_keys(session_id).all()
        args = (write_version(), self._session_ttl_ms())
        return int(await self._script("delete_session", DELETE, keys, args)) > 0

    async def forget_user(self, user_id: str) -> bool:
        """Erase the user's long-term facts; ``True`` if there were any.

        Leaves a small tombstone key that lives ``profile_ttl``, or ``ttl`` when facts never expire.
        """
        keys = self._keys.profile_keys(user_id)
        tombstone_ttl = self._profile_ttl_ms() or self._session_ttl_ms()
        args = (write_version(), tombstone_ttl)
        return int(await self._script("forget_user", DELETE, keys, args)) > 0

    # -- observability ---------------------------------------------------------------

    async def health(self) -> Health:
        """Server version, round-trip latency, pool use, breaker state and key counters.

        During an outage it answers at once (nothing sent while the breaker is open) with
        what the process knows: the server fields are ``None`` and ``skipped`` says why.
        A least-privilege ACL user may not run INFO (or even PING): the fields it cannot
        see are ``None``, and ``skipped`` says what was left out and why.
        """
        self._check_open("health")
        skipped: list[str] = []
        info: dict[str, Any] | None = None
        latency: float | None = None
        try:
            if self.breaker.is_open:  # answer at once with what this process knows
                raise CircuitOpenError(f"the circuit breaker is {self.breaker.state.value}")
            if self._detect_cluster is not None:
                await self._resolve_topology()
            admin = self._admin_client()
            started = time.perf_counter()
            info = await self._retrier.run("health", admin.info)
            latency = time.perf_counter() - started
        except MemoryUnavailableError as exc:  # CircuitOpenError included
            skipped.append(
                f"Redis unreachable ({exc}): server, server_version, latency_ms, evicted_keys, "
                "expired_keys and maxmemory_policy are unknown"
            )
        except MemoryPermissionError as exc:
            skipped.append(
                f"INFO refused by the server's ACL for this user ({exc.__cause__ or exc}): "
                "server, server_version, evicted_keys, expired_keys and maxmemory_policy are unknown"
            )
            started = time.perf_counter()
            try:
                await self._retrier.run("health", self._admin_client().ping)
                latency = time.perf_counter() - started
            except MemoryPermissionError as ping_exc:
                skipped.append(
                    f"PING refused by the server's ACL for this user ({ping_exc.__cause__ or ping_exc}): "
                    "latency_ms is unknown"
                )
        health = collect_health(
            info=info,
            latency=latency,
            pool=self._cluster.pool_summary() if self._cluster is not None else self._client.connection_pool,
            breaker=self.breaker,
            stats=self._retrier.stats,
            skipped=tuple(skipped),
        )
        idle_held = self._pipeliner.idle_held if self._pipeliner is not None else 0
        if idle_held:  # kept for the next inline send, not in use by any call
            health = dataclasses.replace(health, pool_in_use=max(0, health.pool_in_use - idle_held))
        return health
