"""``telemetry=True``: OpenTelemetry spans and metrics for a store, as a layer over it.

:class:`OtelObserver` is told of a store's operations by its engine (operation start and
end, each attempt, each pipeline sent; see :class:`~agentmem.calls.SendObserver`) and
reads pool figures from the engine's transport (every primary's pool on a cluster); it
imports nothing of the store. The engine makes one only when the option is on, so a
store without telemetry runs none of this code and never imports ``opentelemetry``.
It uses the global tracer and meter providers (set them up as for any other
instrumentation; without an SDK every call is a no-op).

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

import contextlib
import contextvars
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentmem._version import __version__
from agentmem.calls import Call, PoolStats
from agentmem.errors import MissingDependencyError

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Observation
    from opentelemetry.trace import Span, Tracer

__all__ = ["INSTRUMENTATION_NAME", "OtelObserver", "server_attributes"]

#: The tracer's and meter's name (the instrumentation scope).
INSTRUMENTATION_NAME = "agentmem"
DB_SYSTEM = "redis"
#: The conventions' advice for ``db.client.operation.duration``, in seconds.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)
BREAKER_STATES = ("closed", "open", "failing_fast")

PoolFigures = Callable[[], Mapping[str, PoolStats]]


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
            "telemetry=True needs the OpenTelemetry API: pip install 'agentmem-redis[otel]' "
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
        self.stores: weakref.WeakSet[OtelObserver] = weakref.WeakSet()
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

    def _live(self) -> Iterator[OtelObserver]:
        return (store for store in list(self.stores) if not store.closed())

    def _breaker_state(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            current = store.breaker_state()
            for state in BREAKER_STATES:
                yield self.observation(
                    int(state == current), {**store.pool_attributes, "agentmem.breaker.state": state}
                )

    def _journal_backlog(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            backlog = store.backlog()
            if isinstance(backlog, int):
                yield self.observation(backlog, store.pool_attributes)

    def _connections(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            for attributes, pool in store.pools():
                yield self.observation(pool.in_use, {**attributes, "db.client.connection.state": "used"})
                yield self.observation(pool.idle, {**attributes, "db.client.connection.state": "idle"})

    def _connections_max(self, options: CallbackOptions) -> Iterable[Observation]:
        for store in self._live():
            for attributes, pool in store.pools():
                yield self.observation(pool.size, attributes)


_instruments: _Instruments | None = None


def _get_instruments() -> _Instruments:
    global _instruments
    if _instruments is None:
        _instruments = _Instruments(_import_otel())
    return _instruments


def server_attributes(described: Mapping[str, Any]) -> dict[str, Any]:
    """``db.system.name`` (and the older ``db.system``) with the transport's
    ``server.address``, ``server.port`` and ``db.namespace``, as far as it knows them (a
    Sentinel pool learns its primary per connection: no address)."""
    return {"db.system.name": DB_SYSTEM, "db.system": DB_SYSTEM, **described}


def _pool_name(attributes: Mapping[str, Any]) -> str:
    address = attributes.get("server.address", "unknown")
    port = attributes.get("server.port")
    name = f"{address}:{port}" if port is not None else str(address)
    return f"{name}/{attributes.get('db.namespace', '0')}"


@dataclass(slots=True)
class _Scope:
    """One operation's send as the engine reports it: the operation, and how to end it."""

    op: _Operation
    key: int
    joined: bool
    token: contextvars.Token[_Operation | None] | None = None
    context: object = None
    started: float = 0.0


class _Annotations:
    """What ``OtelObserver.observe`` yields: annotations for the operation's span."""

    def __init__(self, op: _Operation) -> None:
        self._op = op

    def annotate(self, **attributes: Any) -> None:
        self._op.extra.update(attributes)


class OtelObserver:
    """The spans and metrics of one store (a :class:`~agentmem.calls.SendObserver`).

    ``described``: the transport's ``describe()``; ``pool_stats``: its ``pool_stats``
    (read at each metric collection); the callables read the breaker's state, whether
    the store is closed, and the journal's backlog (``None`` without a journal).
    """

    def __init__(
        self,
        described: Mapping[str, Any],
        pool_stats: PoolFigures,
        *,
        prefix: str,
        breaker_state: Callable[[], str],
        closed: Callable[[], bool],
        backlog: Callable[[], int | None],
    ) -> None:
        instruments = _get_instruments()
        self._instruments = instruments
        self.attributes = server_attributes(described)
        self.prefix = prefix
        self.breaker_state = breaker_state
        self.closed = closed
        self.backlog = backlog
        self._pool_stats = pool_stats
        #: Attributes of the store's observable metrics: which pool, which key prefix.
        self.pool_attributes: dict[str, Any] = {
            "db.client.connection.pool.name": _pool_name(self.attributes),
            "agentmem.prefix": prefix,
        }
        #: Operations waiting for a pipeline, by the id of their first call.
        self._waiting: dict[int, _Operation] = {}
        self._by_operation: dict[str, dict[str, Any]] = {}
        self._client_kind = instruments.trace.SpanKind.CLIENT
        self._error_code = instruments.trace.StatusCode.ERROR
        instruments.stores.add(self)

    def pools(self) -> Iterator[tuple[dict[str, Any], PoolStats]]:
        """Each pool's metric attributes and figures (every node's pool on a cluster)."""
        for name, pool in self._pool_stats().items():
            yield {"db.client.connection.pool.name": name, "agentmem.prefix": self.prefix}, pool

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

    def start(self, operation: str, calls: Sequence[Call]) -> _Scope:
        """A span per operation, or the scope's (:meth:`observe`) when this is its first
        send of the same name (the journal layer's write span)."""
        key = id(calls[0]) if calls else 0
        outer = _CURRENT.get()
        if outer is not None and not outer.joined and outer.name == operation:
            outer.joined = True  # the scope's span for this operation: count into it
            outer.batch_size = len(calls)
            self._waiting[key] = outer
            return _Scope(outer, key, joined=True)
        op = self._start(operation)
        op.batch_size = len(calls)
        self._waiting[key] = op
        token = _CURRENT.set(op)
        instruments = self._instruments
        # Spans made inside (SCRIPT LOAD...) are its children.
        context = instruments.attach(instruments.trace.set_span_in_context(op.span))
        return _Scope(op, key, joined=False, token=token, context=context, started=time.perf_counter())

    def attempt(self, scope: _Scope) -> None:
        scope.op.attempts += 1

    def end(self, scope: _Scope, error: BaseException | None) -> None:
        if scope.joined:
            self._waiting.pop(scope.key, None)
            return
        self._instruments.detach(scope.context)
        assert scope.token is not None
        _CURRENT.reset(scope.token)
        self._waiting.pop(scope.key, None)
        self._end(scope.op, scope.started, error)

    @contextlib.asynccontextmanager
    async def observe(self, operation: str) -> AsyncIterator[_Annotations]:
        """A span for an operation of several sends (``StoreEngine.observe``): the first
        send of the same name joins it, the others are its children."""
        op = self._start(operation)
        token = _CURRENT.set(op)
        context = self._instruments.attach(self._instruments.trace.set_span_in_context(op.span))
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield _Annotations(op)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._instruments.detach(context)
            _CURRENT.reset(token)
            self._end(op, started, error)

    def batch(self, calls: Sequence[Call]) -> None:
        """A pipeline is about to be sent: each operation it carries learns its batch size."""
        size = len(calls)
        waiting = self._waiting
        for call in calls:
            op = waiting.get(id(call))
            if op is not None:
                op.batch_size = size
