"""telemetry=True: OpenTelemetry spans and metrics of store operations, read with the SDK's
in-memory exporters against a real server."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from redis.asyncio import Redis
from stored import payload

import agentmem.telemetry
from agentmem import (
    AgentMemoryStore,
    InvalidArgumentError,
    JournaledStore,
    MemoryUnavailableError,
    MissingDependencyError,
    StoreConfig,
    SyncAgentMemoryStore,
)
from agentmem.bench.run import main as bench_main
from agentmem.bench.telemetry import CONCURRENCY
from agentmem.keys import KeySchema
from agentmem.testing.fixtures import StoreFactory, delete_prefix

SESSION = "session-7f3a-secret"
USER = "user-alice-secret"
VALUE = "a-value-only-redis-should-see"


@pytest.fixture(scope="session")
def otel() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    """The global providers, set once per process (OpenTelemetry allows no second set)."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return exporter, reader


@pytest.fixture
def spans(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> Iterator[InMemorySpanExporter]:
    """The span exporter, emptied before the test."""
    exporter, _ = otel
    exporter.clear()
    yield exporter
    exporter.clear()


@pytest.fixture
def reader(otel: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> InMemoryMetricReader:
    return otel[1]


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    """Every data point of metric ``name`` collected now."""
    data = reader.get_metrics_data()
    found: list[Any] = []
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            if scope.scope.name != "agentmem":
                continue
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def _histogram_count(reader: InMemoryMetricReader, **attributes: Any) -> int:
    """Operations recorded in db.client.operation.duration with these attributes (cumulative)."""
    return sum(
        int(point.count)
        for point in _points(reader, "db.client.operation.duration")
        if all(point.attributes.get(k) == v for k, v in attributes.items())
    )


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    named: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        named.setdefault(span.name, []).append(span)
    return named


def _no_secrets(exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
    """No span or metric attribute holds an id or a value, even inside a key name."""
    texts = [
        str(value) for span in exporter.get_finished_spans() for value in (span.attributes or {}).values()
    ]
    texts += [str(span.status.description) for span in exporter.get_finished_spans()]
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                texts += [str(v) for p in metric.data.data_points for v in (p.attributes or {}).values()]
    for secret in (SESSION, USER, VALUE):
        assert not [text for text in texts if secret in text], secret


async def test_every_operation_has_a_client_span_with_db_attributes(
    agentmem_store_factory: StoreFactory,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    """One CLIENT span per operation, named after it, with the database-client attributes."""
    store = agentmem_store_factory(telemetry=True)
    await store.save_context(SESSION, {"note": VALUE})
    await store.append_messages(SESSION, [{"role": "user", "content": VALUE}])
    await store.remember(USER, {"fact": VALUE})
    turn = await store.load_turn(SESSION, user_id=USER)
    assert turn.context == {"note": VALUE}

    named = _by_name(spans)
    assert sorted(named) == ["append_messages", "load_turn", "remember", "save_context"]
    kwargs = store.client.connection_pool.connection_kwargs
    for name, (span,) in named.items():
        assert span.kind is SpanKind.CLIENT
        assert span.status.status_code is StatusCode.UNSET
        attributes = _attrs(span)
        assert attributes["db.system.name"] == "redis"
        assert attributes["db.operation.name"] == name
        assert attributes["server.address"] == kwargs["host"]
        assert attributes["server.port"] == kwargs["port"]
        assert attributes["db.namespace"] == str(kwargs.get("db") or 0)
        assert attributes["agentmem.retries"] == 0
        assert attributes["agentmem.batch_size"] == (2 if name == "load_turn" else 1)
        assert "error.type" not in attributes
    _no_secrets(spans, reader)
    # what the spans describe really reached the server
    keys = KeySchema(agentmem_prefix)
    saved = await agentmem_redis.get(keys.session(SESSION).base)  # save_context's object
    assert saved is not None
    assert orjson.loads(payload(saved)) == {"note": VALUE}
    assert await agentmem_redis.llen(keys.session(SESSION).history) == 1


async def test_a_store_without_telemetry_is_not_wrapped_and_emits_nothing(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, spans: InMemorySpanExporter
) -> None:
    """The default store (telemetry=False) sends through its own methods and makes no span."""
    assert agentmem_store.config.telemetry is False
    assert "_send" not in vars(agentmem_store)
    await agentmem_store.save_context(SESSION, {"a": 1})
    assert spans.get_finished_spans() == ()
    assert await agentmem_redis.exists(KeySchema(agentmem_prefix).session(SESSION).base) == 1


async def test_concurrent_operations_report_the_pipeline_that_carried_them(
    agentmem_store_factory: StoreFactory,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    spans: InMemorySpanExporter,
) -> None:
    """Ten saves made in one event-loop iteration go in one pipeline: each span says 10."""
    store = agentmem_store_factory(telemetry=True)
    # A burst first: after lone calls the first caller of a burst is sent inline (pipeline.py).
    await asyncio.gather(*(store.load_context(f"warm{i}") for i in range(4)))
    spans.clear()
    await asyncio.gather(*(store.save_context(f"s{i}", {"i": i}) for i in range(10)))
    saves = _by_name(spans)["save_context"]
    assert [_attrs(s)["agentmem.batch_size"] for s in saves] == [10] * 10
    keys = KeySchema(agentmem_prefix)
    assert sum([await agentmem_redis.exists(keys.session(f"s{i}").base) for i in range(10)]) == 10


async def test_a_retried_call_counts_its_retries(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    """The reply of the first attempt is lost: the span has agentmem.retries >= 1, no error,
    the retries counter grows, and the append is stored once."""
    store = agentmem_store_factory(url=agentmem_proxy.url, telemetry=True)
    await store.append_messages(SESSION, [{"n": 0}])
    before = sum(p.value for p in _points(reader, "agentmem.client.retries"))
    spans.clear()
    agentmem_proxy.cut_next_reply()
    assert await store.append_messages(SESSION, [{"n": 1}]) == 2
    assert agentmem_proxy.replies_cut == 1
    (span,) = _by_name(spans)["append_messages"]
    attributes = _attrs(span)
    assert attributes["agentmem.retries"] >= 1
    assert attributes["server.port"] == agentmem_proxy.port
    assert span.status.status_code is StatusCode.UNSET
    after = sum(
        p.value
        for p in _points(reader, "agentmem.client.retries")
        if p.attributes.get("db.operation.name") == "append_messages"
    )
    assert after - before >= 1
    history = KeySchema(agentmem_prefix).session(SESSION).history
    assert await agentmem_redis.llen(history) == 2


async def test_a_failed_call_records_its_error_type(
    agentmem_store_factory: StoreFactory,
    agentmem_private_server: Any,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    """Server gone: the span's status is ERROR with error.type the agentmem error class, and
    the duration histogram has the failure under that error.type."""
    store = agentmem_store_factory(url=agentmem_private_server.url, telemetry=True)
    await store.save_context(SESSION, {"a": 1})
    port = agentmem_private_server.port
    failed_before = _histogram_count(reader, **{"server.port": port, "error.type": "MemoryUnavailableError"})
    agentmem_private_server.stop()
    with pytest.raises(MemoryUnavailableError) as info:
        await store.save_context(SESSION, {"a": 2})
    (_, span) = _by_name(spans)["save_context"]
    attributes = _attrs(span)
    assert span.status.status_code is StatusCode.ERROR
    assert attributes["error.type"] == type(info.value).__name__
    assert attributes["agentmem.retries"] >= 1
    failed_after = _histogram_count(reader, **{"server.port": port, "error.type": type(info.value).__name__})
    assert failed_after == failed_before + 1
    _no_secrets(spans, reader)
    # the breaker gauge shows the state the store is in
    pool = f"127.0.0.1:{port}/0"
    states = {
        p.attributes["agentmem.breaker.state"]: p.value
        for p in _points(reader, "agentmem.breaker.state")
        if p.attributes["db.client.connection.pool.name"] == pool
    }
    assert states[store.breaker.state.value] == 1
    assert sum(states.values()) == 1


async def test_pool_connections_are_observed_by_state(
    agentmem_store_factory: StoreFactory,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    agentmem_server: Any,
    reader: InMemoryMetricReader,
) -> None:
    """db.client.connection.count: the connections the server lists for the store are all idle."""
    store = agentmem_store_factory(telemetry=True, auto_pipeline=False)
    await asyncio.gather(*(store.save_context(f"s{i}", {"i": i}) for i in range(5)))
    kwargs = store.client.connection_pool.connection_kwargs
    pool = f"{kwargs['host']}:{kwargs['port']}/0"
    counts = {
        p.attributes["db.client.connection.state"]: p.value
        for p in _points(reader, "db.client.connection.count")
        if p.attributes["db.client.connection.pool.name"] == pool
        and p.attributes["agentmem.prefix"] == agentmem_prefix
    }
    name = kwargs["client_name"]
    on_server = [c for c in await agentmem_redis.client_list() if c.get("name") == name]
    assert counts == {"used": 0, "idle": len(on_server)}
    assert counts["idle"] >= 1
    (size,) = [
        p.value
        for p in _points(reader, "db.client.connection.max")
        if p.attributes["agentmem.prefix"] == agentmem_prefix
    ]
    assert size == store.config.max_connections


async def test_journaled_writes_are_marked_and_the_backlog_observed(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy: Any,
    agentmem_redis: Redis,
    agentmem_prefix: str,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    """A write kept in the journal has agentmem.journaled=true and no error; the backlog
    gauge counts it; its replay has a span of its own and the value reaches Redis."""
    store = agentmem_store_factory(url=agentmem_proxy.url, fallback="journal", telemetry=True)
    assert isinstance(store, JournaledStore)
    await store.save_context(SESSION, {"a": 1})
    agentmem_proxy.refuse()
    agentmem_proxy.reset()
    await store.update_context(SESSION, {"b": VALUE})
    assert store.journal_backlog == 1

    def backlog() -> list[Any]:
        return [
            p.value
            for p in _points(reader, "agentmem.journal.backlog")
            if p.attributes["agentmem.prefix"] == agentmem_prefix
        ]

    assert backlog() == [1]
    named = _by_name(spans)
    (sent,) = named["save_context"]
    (kept,) = named["update_context"]
    assert _attrs(sent)["agentmem.journaled"] is False
    kept_attributes = _attrs(kept)
    assert kept_attributes["agentmem.journaled"] is True
    assert "error.type" not in kept_attributes
    assert kept.status.status_code is StatusCode.UNSET
    context = KeySchema(agentmem_prefix).session(SESSION).context
    assert await agentmem_redis.hget(context, "b") is None

    agentmem_proxy.restore()
    for _ in range(200):  # the breaker's probe finds the server back (at most every 0.5 s)
        if store.breaker.state.value == "closed":
            break
        await asyncio.sleep(0.02)
    assert await store.flush_journal() == []
    assert backlog() == [0]
    (replay,) = _by_name(spans)["replay update"]
    assert _attrs(replay)["db.operation.name"] == "replay update"
    assert payload(await agentmem_redis.hget(context, "b") or b"") == f'"{VALUE}"'.encode()
    _no_secrets(spans, reader)


def test_telemetry_must_be_a_bool() -> None:
    """telemetry="yes" raises InvalidArgumentError naming the option."""
    with pytest.raises(InvalidArgumentError, match="telemetry"):
        StoreConfig.from_options(telemetry="yes")


async def test_a_missing_otel_extra_names_the_pip_install(
    agentmem_server: Any, agentmem_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without opentelemetry installed, telemetry=True raises MissingDependencyError (an
    ImportError) naming agentmem-redis[otel], before any connection is made."""
    monkeypatch.setattr(agentmem.telemetry, "_instruments", None)
    for module in ("opentelemetry", "opentelemetry.trace", "opentelemetry.metrics"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'agentmem-redis\[otel\]'") as info:
        AgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix, telemetry=True)
    assert isinstance(info.value, ImportError)


def test_bench_telemetry_measures_cpu_per_operation_and_cleans_up(
    agentmem_server: Any, otel: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``agentmem bench --telemetry`` writes off/sdk rows at each concurrency and leaves no key."""
    code = bench_main(
        ["--telemetry", "--url", agentmem_server.url, "--ops", "64", "--repeat", "1", "--out", str(tmp_path)]
    )
    assert code == 0
    results = json.loads((tmp_path / "telemetry.json").read_text())
    # this process already has the SDK as its provider (the otel fixture): no api mode
    assert {(r["mode"], r["concurrency"]) for r in results["rows"]} == {
        (mode, c) for mode in ("off", "sdk") for c in CONCURRENCY
    }
    assert all(r["cpu_us_per_op"] > 0 and r["ops_per_s"] > 0 for r in results["rows"])
    assert "CPU us/op" in capsys.readouterr().out
    client = redis.Redis.from_url(agentmem_server.url)
    try:
        assert results["keys_deleted"] > 0
        assert list(client.scan_iter(match=f"{results['key_prefix']}*")) == []
    finally:
        client.close()


def test_the_sync_store_passes_telemetry_through(
    agentmem_server: Any, agentmem_prefix: str, spans: InMemorySpanExporter
) -> None:
    """SyncAgentMemoryStore(telemetry=True) makes the same spans, from its event-loop thread,
    each a child of the calling thread's current span (the portal carries the context)."""
    with SyncAgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix, telemetry=True) as store:
        with trace.get_tracer("test").start_as_current_span("agent turn") as turn:
            store.save_context(SESSION, {"a": 1})
        assert store.load_context(SESSION) == {"a": 1}  # no current span: a root
    finished = {span.name: span for span in spans.get_finished_spans()}
    assert list(finished) == ["save_context", "agent turn", "load_context"]
    parent = finished["save_context"].parent
    assert parent is not None
    assert parent.span_id == turn.get_span_context().span_id
    assert finished["save_context"].context.trace_id == turn.get_span_context().trace_id
    assert finished["load_context"].parent is None
    client = redis.Redis.from_url(agentmem_server.url)
    try:
        saved = client.get(KeySchema(agentmem_prefix).session(SESSION).base)
        assert isinstance(saved, bytes)
        assert orjson.loads(payload(saved)) == {"a": 1}
    finally:
        client.close()
        asyncio.run(delete_prefix(agentmem_server.url, agentmem_prefix))


async def test_engine_observe_is_one_span_its_first_send_joins(
    spans: InMemorySpanExporter, agentmem_store_factory: StoreFactory
) -> None:
    """engine.observe(): one annotated span; its first send of that name joins it, others are children."""
    from agentmem.calls import Call

    store = agentmem_store_factory(telemetry=True)
    key = store.engine.keys.profile(USER)
    async with store.engine.observe("adapter.op") as scope:
        await store.engine.send("adapter.op", (Call(None, (key,), (), command="EXISTS"),))
        await store.engine.send("adapter.step", (Call(None, (key,), (), command="EXISTS"),))
        scope.annotate(**{"agentmem.journaled": False})
    finished = spans.get_finished_spans()
    assert [s.name for s in finished].count("adapter.op") == 1
    op = next(s for s in finished if s.name == "adapter.op")
    step = next(s for s in finished if s.name == "adapter.step")
    assert step.parent is not None
    assert step.parent.span_id == op.context.span_id
    assert op.attributes is not None
    assert op.attributes["agentmem.journaled"] is False
    assert op.attributes["agentmem.batch_size"] == 1


async def test_memories_spans_carry_no_text_query_or_vector(
    spans: InMemorySpanExporter, agentmem_search_store_factory: StoreFactory
) -> None:
    """Each memories call is one span named after it; no attribute holds its text, query or vector."""
    from agentmem.testing.embedders import HashEmbedder

    store = agentmem_search_store_factory(telemetry=True, embedder=HashEmbedder())
    memory = await store.memories.add(USER, "secret text about the dog")
    await store.memories.search(USER, "private question", k=3)
    await store.memories.get(USER, memory.id)
    await store.memories.list(USER)
    await store.memories.delete(USER, memory.id)
    finished = spans.get_finished_spans()
    names = {s.name for s in finished}
    assert {"memories.add", "memories.search", "memories.get", "memories.list", "memories.delete"} <= names
    for span in finished:
        for value in (span.attributes or {}).values():
            assert "secret" not in str(value)
            assert "private" not in str(value)
        for event in span.events:
            assert "secret" not in str(event.attributes)


async def _touch_every_primary(store: AgentMemoryStore) -> None:
    """Writes to users spread over every slot range, so each primary's pool is made."""
    await asyncio.gather(*(store.remember(f"u{i}", {"i": i}) for i in range(24)))


@pytest.mark.parametrize("how", ["caller_client", "from_url"])
async def test_a_cluster_store_with_telemetry_reports_every_primary_pool(
    how: str,
    agentmem_cluster: list[str],
    agentmem_prefix: str,
    spans: InMemorySpanExporter,
    reader: InMemoryMetricReader,
) -> None:
    """telemetry=True on a cluster (a caller's RedisCluster or from_url): spans per operation,
    and connection gauges for each primary's own pool (not the seed node's only)."""
    from redis.asyncio.cluster import RedisCluster

    from agentmem.testing.fixtures import delete_cluster_prefix

    client = RedisCluster.from_url(agentmem_cluster[0]) if how == "caller_client" else None
    store = (
        AgentMemoryStore(client, prefix=agentmem_prefix, telemetry=True)
        if client is not None
        else AgentMemoryStore.from_url(agentmem_cluster[0], prefix=agentmem_prefix, telemetry=True)
    )
    try:
        await _touch_every_primary(store)
        assert await store.recall("u3") == {"i": 3}
        names = [s.name for s in spans.get_finished_spans()]
        assert names.count("remember") == 24
        assert names.count("recall") == 1
        sizes = {
            p.attributes["db.client.connection.pool.name"]: p.value
            for p in _points(reader, "db.client.connection.max")
            if p.attributes["agentmem.prefix"] == agentmem_prefix
        }
        transport: Any = store.engine.transport
        primaries = {f"{host}:{port}/0" for host, port in transport.slots.primaries}
        assert primaries <= set(sizes)
        assert all(sizes[name] == store.config.max_connections for name in primaries)
        health = await store.health()
        assert health.pool_size == sum(sizes.values())
    finally:
        await store.aclose()
        if client is not None:
            await client.aclose()
        await delete_cluster_prefix(agentmem_cluster, agentmem_prefix)
