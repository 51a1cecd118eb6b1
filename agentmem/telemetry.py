"""``telemetry=True``: OpenTelemetry spans and metrics for a store, as a layer over it.

:func:`instrument` wraps one store's sending path; the core store only calls it from its
constructor when the option is on, so a store without telemetry runs none of this code
and never imports ``opentelemetry``. It uses the global tracer and meter providers (set
them up as for any other instrumentation; without an SDK every call is a no-op).

What is emitted, following the OpenTelemetry database-client semantic conventions:

* one ``CLIENT`` span per store operation, named after it (``save_context``,
  ``load_turn``, ``replay save``...), with ``db.system.name`` (and the older
  ``db.system``) ``"redis"`` (the conventions have no Valkey value; Valkey speaks the
  Redis protocol), ``db.operation.name``, ``db.namespace`` (the database index),
  ``server.address``/``server.port``, and ``agentmem.retries``,
  ``agentmem.batch_size`` (calls in the pipeline that carried it), ``agentmem.journaled``.
  A failed operation has ``error.type`` (the agentmem error class) and status ERROR.
  Ids, keys and values are never recorded, nor error messages (they can hold keys);
* ``db.client.operation.duration`` (histogram, s), ``agentmem.client.retries``
  (counter), ``agentmem.breaker.state``, ``agentmem.journal.backlog`` (gauges) and
  ``db.client.connection.count`` (``state`` used/idle) and ``db.client.connection.max``.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from agentmem._version import __version__
from agentmem.errors import MissingDependencyError
from agentmem.retry import Retrier

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation
    from opentelemetry.trace import Span, Tracer

    from agentmem.journal import JournalEntry
    from agentmem.pipeline import Call
    from agentmem.store import AgentMemoryStore

__all__ = ["INSTRUMENTATION_NAME", "StoreTelemetry", "instrument", "server_attributes"]

#: The tracer's and meter's name (the instrumentation scope).
INSTRUMENTATION_NAME = "agentmem"
DB_SYSTEM = "redis"
#: The conventions' advice for ``db.client.operation.duration``, in seconds.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
BREAKER_STATES = ("closed", "open", "failing_fast")

T = TypeVar("T")
Send = Callable[[str, Sequence["Call"]], Coroutine[Any, Any, list[Any]]]
SendOrKeep = Callable[[str, "JournalEntry"], Coroutine[Any, Any, tuple[bool, "int | None"]]]


@dataclass(slots=True)
class _Operation:
    """One store operation in flight: what its span will say when it ends."""

    name: str
    span: Span
    #: The operation's span and metric attributes (shared: never mutated).
    attributes: dict[str, Any]
    attempts: int = 0
    batch_size: int = 0
    #: A journaled write's span is opened by the journal layer; the core send joins it.
    joined: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


#: The operation the current task is sending, so the retrier can count its attempts.
_CURRENT: contextvars.ContextVar[_Operation | None] = contextvars.ContextVar(
    "agentmem_operation", default=None
)


def _import_otel() -> Any:
    try:
        import opentelemetry.context
        import opentelemetry.metrics
        import opentelemetry.trace
    except ImportError as exc:
        raise MissingDependencyError(
            "telemetry=True needs the OpenTelemetry API: pip install 'agentmem[otel]' "
            f"(and an SDK to export with, e.g. opentelemetry-sdk) ({exc})"
        ) from exc
    return opentelemetry


class _Instruments:
    """The process's agentmem tracer and metric instruments, made once on the global
    providers; observable metrics report every live instrumented store."""

    def __init__(self, otel: Any) -> None:
        self.trace = otel.trace
        self.attach = otel.context.attach
        self.detach = otel.context.detach
        self.tracer: Tracer = otel.trace.get_tracer(INSTRUMENTATION_NAME, __version__)
        meter = otel.metrics.get_meter(INSTRUMENTATION_NAME, __version__)
        self.observation: type[Observation] = otel.metrics.Observation
        self.stores: weakref.WeakSet[StoreTelemetry] = weakref.WeakSet()
        self.duration: Histogram = meter.create_histogram(
            "db.client.operation.duration",
            unit="s",
            description="Duration of agentmem store operations, retries and breaker waits included.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.retries: Counter = meter.create_counter(
            "agentmem.client.retries",
            unit="{retry}",
            description="Attempts of store operations sent again after a transient error.",
        )
        meter.create_observable_gauge(
            "agentmem.breaker.state",
            callbacks=[self._breaker_state],
            unit="1",
            description="1 for the breaker's current state (attribute agentmem.breaker.state), 0 for others.",
        )
        meter.create_observable_gauge(
            "agentmem.journal.backlog",
            callbacks=[self._journal_backlog],
            unit="{write}",
            description="Writes kept in the journal that Redis has not received yet (fallback='journal').",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.count",
            callbacks=[self._connections],
            unit="{connection}",
            description="Connections of the store's pool, by state (used, idle).",
        )
        meter.create_observable_up_down_counter(
            "db.client.connection.max",
            callbacks=[self._connections_max],
            unit="{connection}",
            description="The most connections the store's pool opens (max_connections).",
        )

    def _live(self) -> Iterator[StoreTelemetry]:
        return (store for store in list(self.stores) if not store.closed)

    def _breaker_state(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            current = store.store.breaker.state.value
            for state in BREAKER_STATES:
                yield self.observation(
                    int(state == current), {**store.pool_attributes, "agentmem.breaker.state": state}
                )

    def _journal_backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            backlog = getattr(store.store, "journal_backlog", None)
            if isinstance(backlog, int):
                yield self.observation(backlog, store.pool_attributes)

    def _connections(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            # redis-py keeps these as private lists; read them defensively (as health() does).
            pool = store.store.client.connection_pool
            used = len(getattr(pool, "_in_use_connections", ()) or ())
            idle = len(getattr(pool, "_available_connections", ()) or ())
            yield self.observation(used, {**store.pool_attributes, "db.client.connection.state": "used"})
            yield self.observation(idle, {**store.pool_attributes, "db.client.connection.state": "idle"})

    def _connections_max(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            size = getattr(store.store.client.connection_pool, "max_connections", None)
            if isinstance(size, int):
                yield self.observation(size, store.pool_attributes)


_instruments: _Instruments | None = None


def _get_instruments() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments(_import_otel())
    return _instruments


def server_attributes(store: AgentMemoryStore) -> dict[str, Any]:
    """``server.address``, ``server.port`` and ``db.namespace`` of the store's pool, as
    far as it knows them (a Sentinel pool learns its primary per connection: no address)."""
    kwargs = store.client.connection_pool.connection_kwargs
    attributes: dict[str, Any] = {"db.system.name": DB_SYSTEM, "db.system": DB_SYSTEM}
    if kwargs.get("path"):
        attributes["server.address"] = str(kwargs["path"])
    elif kwargs.get("host"):
        attributes["server.address"] = str(kwargs["host"])
        if kwargs.get("port") is not None:
            attributes["server.port"] = int(kwargs["port"])
    attributes["db.namespace"] = str(kwargs.get("db") or 0)
    return attributes


class _CountingRetrier(Retrier):
    """The store's retrier, counting each attempt on the operation being sent."""

    def __init__(self, retrier: Retrier) -> None:
        super().__init__(retrier.policy, retrier.breaker)
        self.stats = retrier.stats  # one set of counters, as before

    async def run(
        self,
        operation: str,
        attempt: Callable[[], Awaitable[T]],
        *,
        failed: Exception | None = None,
        started: float | None = None,
    ) -> T:
        current = _CURRENT.get()
        if current is None:  # health(), or a call outside a traced operation
            return await super().run(operation, attempt, failed=failed, started=started)
        if failed is not None:  # the store's first attempt, made without the retrier
            current.attempts += 1

        async def counted() -> T:
            current.attempts += 1
            return await attempt()

        return await super().run(operation, counted, failed=failed, started=started)


class StoreTelemetry:
    """The spans and metrics of one store; made by :func:`instrument`."""

    def __init__(self, store: AgentMemoryStore, instruments: _Instruments) -> None:
        self.store = store
        self._instruments = instruments
        self.attributes = server_attributes(store)
        address = self.attributes.get("server.address", "unknown")
        port = self.attributes.get("server.port")
        pool_name = f"{address}:{port}" if port is not None else str(address)
        pool_name += f"/{self.attributes['db.namespace']}"
        #: Attributes of the store's observable metrics: which pool, which key prefix.
        self.pool_attributes: dict[str, Any] = {
            "db.client.connection.pool.name": pool_name,
            "agentmem.prefix": store.config.prefix,
        }
        #: Operations waiting for a pipeline, by the id of their first call.
        self._waiting: dict[int, _Operation] = {}
        self._by_operation: dict[str, dict[str, Any]] = {}
        self._client_kind = instruments.trace.SpanKind.CLIENT
        self._error_code = instruments.trace.StatusCode.ERROR

    @property
    def closed(self) -> bool:
        return bool(getattr(self.store, "_closed", False))

    # -- spans ---------------------------------------------------------------------------

    def _start(self, operation: str) -> _Operation:
        attributes = self._by_operation.get(operation)
        if attributes is None:  # one dict per operation name, shared by its spans and metrics
            attributes = self._by_operation[operation] = {**self.attributes, "db.operation.name": operation}
        span = self._instruments.tracer.start_span(operation, kind=self._client_kind, attributes=attributes)
        return _Operation(operation, span, attributes)

    def _end(self, op: _Operation, started: float, error: BaseException | None) -> None:
        span = op.span
        retries = max(0, op.attempts - 1)
        metric_attributes = op.attributes
        if error is not None:
            error_type = type(error).__name__
            metric_attributes = {**metric_attributes, "error.type": error_type}
            op.extra["error.type"] = error_type
            # The class only: messages can carry key names, which carry ids.
            span.set_status(self._instruments.trace.Status(self._error_code, error_type))
        if span.is_recording():
            span.set_attributes(
                {"agentmem.retries": retries, "agentmem.batch_size": op.batch_size, **op.extra}
            )
        span.end()
        self._instruments.duration.record(time.perf_counter() - started, metric_attributes)
        if retries:
            self._instruments.retries.add(retries, metric_attributes)

    def wrap_send(self, send: Send) -> Send:
        """``store._send`` with a span per operation (or joining the journal layer's)."""
        waiting = self._waiting
        in_context = self._instruments.trace.set_span_in_context
        attach, detach = self._instruments.attach, self._instruments.detach

        async def traced_send(operation: str, calls: Sequence[Call]) -> list[Any]:
            key = id(calls[0]) if calls else 0
            outer = _CURRENT.get()
            if outer is not None and not outer.joined and outer.name == operation:
                outer.joined = True  # the journal layer's span for this write: count into it
                outer.batch_size = len(calls)
                waiting[key] = outer
                try:
                    return await send(operation, calls)
                finally:
                    waiting.pop(key, None)
            op = self._start(operation)
            op.batch_size = len(calls)
            waiting[key] = op
            token = _CURRENT.set(op)
            context = attach(in_context(op.span))  # spans made inside (SCRIPT LOAD...) are its children
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                return await send(operation, calls)
            except BaseException as exc:
                error = exc
                raise
            finally:
                detach(context)
                _CURRENT.reset(token)
                waiting.pop(key, None)
                self._end(op, started, error)

        return traced_send

    def wrap_send_or_keep(self, send_or_keep: SendOrKeep) -> SendOrKeep:
        """``JournaledStore._send_or_keep`` with the write's span, marked when journaled."""
        in_context = self._instruments.trace.set_span_in_context
        attach, detach = self._instruments.attach, self._instruments.detach

        async def traced(operation: str, entry: JournalEntry) -> tuple[bool, int | None]:
            op = self._start(operation)
            token = _CURRENT.set(op)
            context = attach(in_context(op.span))
            started = time.perf_counter()
            try:
                sent, result = await send_or_keep(operation, entry)
            except BaseException as exc:
                self._end(op, started, exc)
                raise
            finally:
                detach(context)
                _CURRENT.reset(token)
            op.extra["agentmem.journaled"] = not sent
            self._end(op, started, None)
            return sent, result

        return traced

    def on_batch(self, calls: Sequence[Call]) -> None:
        """Called by the auto-pipeliner with each pipeline it sends: each operation's batch size."""
        size = len(calls)
        waiting = self._waiting
        for call in calls:
            op = waiting.get(id(call))
            if op is not None:
                op.batch_size = size


def instrument(store: AgentMemoryStore) -> StoreTelemetry:
    """Give ``store`` spans and metrics (``telemetry=True``); raise
    :class:`~agentmem.MissingDependencyError` when the ``otel`` extra is not installed."""
    from agentmem.journaled import JournaledStore

    instruments = _get_instruments()
    telemetry = StoreTelemetry(store, instruments)
    # Instance attributes shadow the methods: only this store is wrapped, and the core's
    # code path stays the same whether telemetry is on or off.
    store._send = telemetry.wrap_send(store._send)  # type: ignore[method-assign,assignment]
    store._retrier = _CountingRetrier(store._retrier)
    if isinstance(store, JournaledStore):
        store._send_or_keep = telemetry.wrap_send_or_keep(store._send_or_keep)  # type: ignore[method-assign,assignment]
    pipeliner = store._pipeliner
    if pipeliner is not None:
        pipeliner.on_batch = telemetry.on_batch
    if store._cluster is not None:  # AgentMemoryStore(RedisCluster(...))
        store._cluster.on_batch = telemetry.on_batch
    instruments.stores.add(telemetry)
    return telemetry
