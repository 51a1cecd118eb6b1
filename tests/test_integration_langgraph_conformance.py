"""LangGraph's own checkpointer conformance suite (langgraph-checkpoint-conformance) run
against AgentMemorySaver on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

pytest.importorskip("langgraph.checkpoint.conformance")

from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.checkpoint.conformance.report import ProgressCallbacks

from agentmem import AgentMemoryStore
from agentmem.integrations.langgraph import AgentMemorySaver
from agentmem.testing.fixtures import StoreFactory, delete_cluster_prefix

pytestmark = pytest.mark.timeout(180)


async def test_every_capability_passes_the_conformance_suite(
    agentmem_store_factory: StoreFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every capability, base and extended, is detected and passes LangGraph's suite."""
    stores: list[AgentMemoryStore] = []

    @checkpointer_test(name="AgentMemorySaver")
    async def saver() -> AsyncIterator[AgentMemorySaver]:
        store = agentmem_store_factory()  # a fresh store (own client name) per capability
        stores.append(store)
        yield AgentMemorySaver(store)

    report = await validate(saver, progress=ProgressCallbacks.verbose())
    report.print_report()
    failures = {name: result.failures for name, result in report.results.items() if result.failures}
    assert failures == {}, capsys.readouterr().out
    claimed = {name for name, result in report.results.items() if result.detected}
    assert claimed == {capability.value for capability in ALL_CAPABILITIES}
    assert all(result.passed for result in report.results.values())
    assert report.passed_all_base()
    assert len(stores) == len(ALL_CAPABILITIES)
    # The suite wrote through the server: the store's keys are there.
    keys = await stores[0].client.keys(stores[0].config.prefix + ":{lgt:*")
    assert keys


async def test_every_capability_passes_on_redis_cluster(
    agentmem_cluster: list[str], agentmem_prefix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same suite on the shared 3-primary cluster: a thread's keys sit in one slot, so
    every saver operation is one script on one node."""
    stores: list[AgentMemoryStore] = []

    @checkpointer_test(name="AgentMemorySaver on Redis Cluster")
    async def saver() -> AsyncIterator[AgentMemorySaver]:
        store = AgentMemoryStore.from_url(agentmem_cluster[0], prefix=f"{agentmem_prefix}-{len(stores)}")
        stores.append(store)  # closed below, in this test's loop (not when the suite drops the generator)
        yield AgentMemorySaver(store)

    try:
        report = await validate(saver, progress=ProgressCallbacks.verbose())
    finally:
        for store in stores:
            await store.aclose()
            await delete_cluster_prefix(agentmem_cluster, store.config.prefix)
    report.print_report()
    failures = {name: result.failures for name, result in report.results.items() if result.failures}
    assert failures == {}, capsys.readouterr().out
    claimed = {name for name, result in report.results.items() if result.detected}
    assert claimed == {capability.value for capability in ALL_CAPABILITIES}
    assert stores
    assert all(
        getattr(store.engine.transport, "slots", None) is not None for store in stores
    )  # routed by slot
