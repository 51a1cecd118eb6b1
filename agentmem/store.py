"""AgentMemoryStore: an agent's conversation memory in Redis, where every call either
does what it says or raises a typed :class:`~agentmem.AgentMemoryError`.

The store is the API: its operations validate and encode (raising before any I/O) and
hand their calls to its :class:`~agentmem.engine.StoreEngine` (``store.engine``), which
sends them through one transport, retried, behind the circuit breaker.
"""

from __future__ import annotations

import functools
import logging
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from agentmem._connect import build_pool, build_sentinel_pool
from agentmem.breaker import CircuitBreaker
from agentmem.calls import Call
from agentmem.codec import decode_context, decode_fields, decode_messages
from agentmem.config import POOL_OPTIONS, StoreConfig, options_from_url
from agentmem.engine import MIN_APPEND_WINDOW, StoreEngine, append_window
from agentmem.errors import (
    CircuitOpenError,
    InvalidArgumentError,
    MemoryFullError,
    MemoryPermissionError,
    MemoryUnavailableError,
)
from agentmem.health import Health, collect_health
from agentmem.reads import context_read, context_reply, flat_hash
from agentmem.retry import RetryStats
from agentmem.scripts import DELETE, MAX_EXACT, READ_HASH, READ_SESSION
from agentmem.sentinel import SENTINEL_SCHEMES, sentinel_url
from agentmem.topology import Connect, connect_client, connect_url
from agentmem.writes import (
    apply,
    prepare_append,
    prepare_remember,
    prepare_save,
    prepare_update,
    write_version,
)

if TYPE_CHECKING:
    from agentmem.memories.api import Memories

__all__ = ["MIN_APPEND_WINDOW", "AgentMemoryStore", "Turn", "append_window"]

log = logging.getLogger("agentmem")


@dataclass(frozen=True, slots=True)
class Turn:
    """What an agent needs at the start of a turn, fetched in one round trip."""

    context: dict[str, Any] | None
    history: list[dict[str, Any]]
    profile: dict[str, Any]


def _count(value: object, name: str) -> int:
    """A count argument (``last``) as the scripts take it, or InvalidArgumentError before any I/O."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_EXACT:
        raise InvalidArgumentError(f"{name} must be an int in [1, {MAX_EXACT}], got {value!r}")
    return value


_S = TypeVar("_S", bound="AgentMemoryStore")


def _layer_name(fallback: str) -> str:
    layer = AgentMemoryStore._layers.get(fallback)
    return layer.__name__ if layer is not None else "JournaledStore"


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
    The class is the choice: :class:`~agentmem.JournaledStore` (the same constructors)
    layers an in-process write-behind journal over this class, and
    :func:`agentmem.open_store` picks the class from ``fallback`` for config-driven code.
    """

    #: The ``fallback`` option this class implements (a layer subclass names its own).
    fallback: ClassVar[str] = "raise"
    #: Layer classes by the ``fallback`` they implement (for the deprecated
    #: ``AgentMemoryStore.from_url(..., fallback=...)``), filled as they are defined.
    _layers: ClassVar[dict[str, type[AgentMemoryStore]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        AgentMemoryStore._layers.setdefault(cls.fallback, cls)

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        config: StoreConfig | None = None,
        _connect: Connect | None = None,
        **options: Any,
    ) -> None:
        if config is not None and options:
            raise TypeError("pass either config= or keyword options, not both")
        if _connect is None:  # before the options' own checks: this is the mistake to name
            _refuse_pool_options(options, config)
        config = self._configure(config if config is not None else StoreConfig.from_options(**options))
        kwargs: Mapping[str, Any] = (
            client.get_connection_kwargs()
            if isinstance(client, RedisCluster)
            else client.connection_pool.connection_kwargs
        )
        if kwargs.get("decode_responses"):
            raise ValueError(
                "AgentMemoryStore needs a client with decode_responses=False: it stores "
                "orjson bytes and reads them back as bytes"
            )
        connect = _connect or connect_client(client, config)
        engine = StoreEngine(config, connect, client=client, append_window=self._append_window(config))
        #: The documented API for layers and adapters (see :mod:`agentmem.engine`).
        self.engine = engine
        self.config = config
        #: A RedisCluster given is kept only to hand back (``client``); the store talks to
        #: the cluster through its own per-node pools (the engine's transport).
        self._client: Redis = cast(Redis, client)

    @classmethod
    def _configure(cls, config: StoreConfig) -> StoreConfig:
        """The configuration this class runs with (a layer sets its own ``fallback``)."""
        if config.fallback != cls.fallback:
            raise TypeError(
                f"fallback={config.fallback!r} is a class of its own: use "
                f"{_layer_name(config.fallback)}(client, ...) or "
                f"agentmem.open_store(client, fallback={config.fallback!r}, ...) "
                f"({cls.__name__}(client, fallback=...) no longer picks the class)"
            )
        return config

    @classmethod
    def _append_window(cls, config: StoreConfig) -> float | None:
        """Seconds an append's operation id is kept, when this class needs longer than
        :func:`append_window` (``None``: that default)."""
        return None

    @classmethod
    def _deprecated_layer(cls, config: StoreConfig) -> type[AgentMemoryStore] | None:
        """``AgentMemoryStore.from_url(..., fallback="journal")``, as 0.3 allowed: the layer
        class to build instead, with a DeprecationWarning; ``None`` otherwise."""
        if cls is not AgentMemoryStore or config.fallback == cls.fallback:
            return None
        layer = AgentMemoryStore._layers.get(config.fallback)
        if layer is None:  # pragma: no cover - the package imports every layer
            raise TypeError(f"no store class implements fallback={config.fallback!r}")
        warnings.warn(
            f"AgentMemoryStore.from_url(..., fallback={config.fallback!r}) is deprecated and goes in "
            f"0.4: use {layer.__name__}.from_url(...) or agentmem.open_store(url, "
            f"fallback={config.fallback!r}, ...)",
            DeprecationWarning,
            stacklevel=3,
        )
        return layer

    @classmethod
    def from_url(cls: type[_S], url: str, *, cluster: bool | None = None, **options: Any) -> _S:
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
        made = cls._deprecated_layer(config) or cls
        if urlsplit(url).scheme in SENTINEL_SCHEMES:
            if cluster:
                raise InvalidArgumentError("cluster=True cannot go with a Sentinel URL")
            client = Redis(connection_pool=build_sentinel_pool(url, config))
            store = made(client, config=config, _connect=connect_url(url, client, config, cluster=False))
        else:
            client = Redis(connection_pool=build_pool(url, config))
            store = made(client, config=config, _connect=connect_url(url, client, config, cluster=cluster))
        return cast(_S, store)

    @classmethod
    def from_sentinel(
        cls: type[_S],
        sentinels: Sequence[tuple[str, int]],
        service_name: str,
        *,
        sentinel_kwargs: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> _S:
        """A store on the primary that Redis Sentinel names for ``service_name``.

        Every new connection asks the sentinels where the primary is, so after a failover
        the store reconnects to the promoted replica by itself (the breaker's probe goes
        through the sentinels too). Options are those of :meth:`from_url`; TLS options
        make the data connections TLS. ``sentinel_kwargs`` go to the connections to the
        sentinels themselves (for example their own ``password``). The same as
        ``from_url("redis+sentinel://host:port,.../<service>")``.
        """
        config = StoreConfig.from_options(**options)
        made = cls._deprecated_layer(config) or cls
        url = sentinel_url(sentinels, service_name, tls=bool(config.tls_options_given))
        client = Redis(connection_pool=build_sentinel_pool(url, config, sentinel_kwargs=sentinel_kwargs))
        store = made(client, config=config, _connect=connect_url(url, client, config, cluster=False))
        return cast(_S, store)

    # -- lifecycle -------------------------------------------------------------------

    @property
    def client(self) -> Redis:
        """The ``redis.asyncio.Redis`` this store sends its commands through (on a Redis
        Cluster: the ``RedisCluster`` given, or from ``from_url`` the seed node's client)."""
        return self._client

    @functools.cached_property
    def memories(self) -> Memories:
        """Recall by meaning: ``add``/``search``/``get``/``delete``/``list`` a user's
        memories (needs ``embedder=`` and a server with a query engine; see the README)."""
        from agentmem.memories.api import Memories

        return Memories(self.engine)

    @property
    def breaker(self) -> CircuitBreaker:
        """The circuit breaker every call of this store goes through."""
        return self.engine.breaker

    @property
    def retry_stats(self) -> RetryStats:
        """Attempts, retries and failures counted since the store was made."""
        return self.engine.retrier.stats

    async def aclose(self) -> None:
        """Release every connection this store opened; a caller's client stays open."""
        if self.engine.closed:
            return
        await self.engine.aclose()

    async def __aenter__(self) -> AgentMemoryStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- sending ---------------------------------------------------------------------

    # -- session context -------------------------------------------------------------

    async def save_context(self, session_id: str, context: Mapping[str, Any]) -> None:
        """Replace the session's context with ``context`` and reset the session TTL."""
        await apply(self.engine, "save_context", prepare_save(self.engine, session_id, context))

    async def update_context(self, session_id: str, fields: Mapping[str, Any]) -> None:
        """Set the given top-level fields, keeping the others; creates the context if missing.

        Each field is its own hash field, so concurrent updates of different fields
        never lose each other.
        """
        await apply(self.engine, "update_context", prepare_update(self.engine, session_id, fields))

    async def load_context(self, session_id: str) -> dict[str, Any] | None:
        """The session's context, or ``None`` if it has none (never for broken data)."""
        keys = self.engine.session_keys(session_id)
        refresh, sent = self._read_refresh_ms(("s", session_id), self.config.ttl), time.monotonic()
        try:
            (reply,) = await self.engine.send("load_context", (context_read(keys.core(), refresh),))
            fields, base = context_reply(reply)
        except MemoryFullError:
            # Past maxmemory, Redis before 7.2 refuses every command queued in MULTI, reads
            # too; the read script is flagged allow-oom and keeps reads working there.
            fields, base, _ = await self.engine.script(
                "load_context", READ_SESSION, keys.core(), (refresh, 1, 0)
            )
        self._refreshed(("s", session_id), refresh, sent)
        return decode_context(fields, base)

    # -- history ---------------------------------------------------------------------

    async def append_messages(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """Append messages, keep the newest ``max_history``, reset the TTL; return the new length.

        One atomic script run; a retry after a lost reply does not append twice.
        """
        write, _ = prepare_append(self.engine, session_id, messages)
        return cast(int, await apply(self.engine, "append_messages", write))

    async def load_history(self, session_id: str, *, last: int = 20) -> list[dict[str, Any]]:
        """The last ``last`` messages, oldest first (``[]`` when there are none)."""
        last = _count(last, "last")
        keys = self.engine.session_keys(session_id)
        refresh, sent = self._read_refresh_ms(("s", session_id), self.config.ttl), time.monotonic()
        if not refresh:  # one command is atomic by itself: no script run (issue 21)
            lrange = Call(None, (keys.history,), (-last, -1), command="LRANGE")
            return decode_messages((await self.engine.send("load_history", (lrange,)))[0])
        _, _, raw_history = await self.engine.script(
            "load_history", READ_SESSION, keys.core(), (refresh, 0, last)
        )
        self._refreshed(("s", session_id), refresh, sent)
        return decode_messages(raw_history)

    # -- long-term facts -------------------------------------------------------------

    async def remember(self, user_id: str, facts: Mapping[str, Any]) -> None:
        """Merge ``facts`` into the user's long-term facts."""
        await apply(self.engine, "remember", prepare_remember(self.engine, user_id, facts))

    def _read_refresh_ms(self, key: tuple[str, str], ttl: float | None) -> int:
        """The TTL a sliding read of ``key`` (``("s", session)`` or ``("u", user)``) refreshes:
        0 without ``sliding_ttl`` or a TTL, or when this store's reads refreshed it recently."""
        if not self.config.sliding_ttl or ttl is None or not self.engine.refresh.due(key, ttl):
            return 0
        return max(1, int(ttl * 1000))

    def _refreshed(self, key: tuple[str, str], refresh_ms: int, sent: float) -> None:
        if refresh_ms:
            self.engine.refresh.refreshed(key, sent)

    def _recall_call(self, user_id: str) -> tuple[Call, int]:
        """The read of the user's facts (the id validated first) and the TTL it refreshes."""
        key = self.engine.keys.profile(user_id)
        refresh = self._read_refresh_ms(("u", user_id), self.config.profile_ttl)
        if not refresh:  # one command is atomic by itself: no script run (issue 21)
            return Call(None, (key,), command="HGETALL"), 0
        return Call(READ_HASH, (key,), (refresh,)), refresh

    async def recall(self, user_id: str) -> dict[str, Any]:
        """The user's long-term facts (``{}`` when there are none)."""
        sent = time.monotonic()
        call, refresh = self._recall_call(user_id)
        (raw,) = await self.engine.send("recall", (call,))
        self._refreshed(("u", user_id), refresh, sent)
        return decode_fields(flat_hash(raw), what="facts")

    # -- both at once ----------------------------------------------------------------

    async def load_turn(self, session_id: str, *, user_id: str | None = None, last: int = 20) -> Turn:
        """Context, the last ``last`` messages and the user's facts, in one round trip."""
        last = _count(last, "last")
        keys = self.engine.session_keys(session_id)
        refresh, sent = self._read_refresh_ms(("s", session_id), self.config.ttl), time.monotonic()
        calls = [Call(READ_SESSION, keys.core(), (refresh, 1, last))]
        facts_refresh = 0
        if user_id is not None:
            facts_call, facts_refresh = self._recall_call(user_id)  # validates before any I/O
            calls.append(facts_call)
        results = await self.engine.send("load_turn", calls)
        self._refreshed(("s", session_id), refresh, sent)
        if user_id is not None:
            self._refreshed(("u", user_id), facts_refresh, sent)
        fields, base, raw_history = results[0]
        return Turn(
            context=decode_context(fields, base),
            history=decode_messages(raw_history),
            profile=decode_fields(flat_hash(results[1]), what="facts") if user_id is not None else {},
        )

    # -- erasure ---------------------------------------------------------------------

    async def delete_session(self, session_id: str) -> bool:
        """Delete the session's context and history; ``True`` if anything was there.

        Leaves a small tombstone key with the session's TTL (see ``DELETE``).
        """
        keys = self.engine.session_keys(session_id).all()
        args = (write_version(), self.engine.ttl_ms("session"))
        self.engine.refresh.forget(("s", session_id))
        return int(await self.engine.script("delete_session", DELETE, keys, args)) > 0

    async def forget_user(self, user_id: str) -> bool:
        """Erase the user's long-term facts and memories (``store.memories``: their index
        entries go with them); ``True`` if there were any.

        Leaves a small tombstone key that lives ``profile_ttl``, or ``ttl`` when facts never expire.
        """
        keys = self.engine.keys.profile_keys(user_id)
        self.engine.refresh.forget(("u", user_id))
        tombstone_ttl = self.engine.ttl_ms("profile") or self.engine.ttl_ms("session")
        args = (write_version(), tombstone_ttl)
        facts = int(await self.engine.script("forget_user", DELETE, keys, args)) > 0
        memories = await self.memories.forget(user_id)
        return facts or memories > 0

    # -- observability ---------------------------------------------------------------

    async def health(self) -> Health:
        """Server version, round-trip latency, pool use, breaker state and key counters.

        During an outage it answers at once (nothing sent while the breaker is open) with
        what the process knows: the server fields are ``None`` and ``skipped`` says why.
        A least-privilege ACL user may not run INFO (or even PING): the fields it cannot
        see are ``None``, and ``skipped`` says what was left out and why.
        """
        engine = self.engine
        engine.check_open("health")
        retrier = engine.retrier
        skipped: list[str] = []
        info: dict[str, Any] | None = None
        latency: float | None = None
        try:
            if engine.breaker.is_open:  # answer at once with what this process knows
                raise CircuitOpenError(f"the circuit breaker is {engine.breaker.state.value}")
            admin = await engine.admin_client()
            started = time.perf_counter()
            info = await retrier.run("health", admin.info)
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
                await retrier.run("health", (await engine.admin_client()).ping)
                latency = time.perf_counter() - started
            except MemoryPermissionError as ping_exc:
                skipped.append(
                    f"PING refused by the server's ACL for this user ({ping_exc.__cause__ or ping_exc}): "
                    "latency_ms is unknown"
                )
        return collect_health(
            info=info,
            latency=latency,
            pools=engine.transport.pool_stats().values(),
            breaker=engine.breaker,
            stats=retrier.stats,
            skipped=tuple(skipped),
        )


AgentMemoryStore._layers["raise"] = AgentMemoryStore
