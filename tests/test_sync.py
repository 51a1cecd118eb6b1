"""SyncAgentMemoryStore against a real server: every call, errors, threads, faults, closing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from redis.exceptions import ResponseError
from stored import payload

from agentmem import (
    AgentMemoryError,
    InvalidArgumentError,
    InvalidKeyError,
    MemoryCorruptedError,
    MemoryUnavailableError,
    SerializationError,
    StoreClosedError,
    SyncAgentMemoryStore,
    SyncJournaledStore,
)
from agentmem.keys import KeySchema, escape_glob
from agentmem.testing import ServerInfo
from agentmem.testing.server import EmbeddedServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Threads and calls per thread of the concurrency test.
THREADS = 8
CALLS_PER_THREAD = 60


def wait_for_breaker_to_close(store: SyncAgentMemoryStore, timeout: float = 5.0) -> None:
    """After an outage older than retry_deadline, calls fail fast until the breaker's probe
    is answered (within breaker_probe_interval of the server being back)."""
    deadline = time.monotonic() + timeout
    while store.breaker.state.value != "closed":
        assert time.monotonic() < deadline, f"breaker still {store.breaker.state.value}"
        time.sleep(0.02)


def loop_threads() -> int:
    return sum(thread.name == "agentmem-sync" for thread in threading.enumerate())


@pytest.fixture
def raw(agentmem_server: ServerInfo, agentmem_prefix: str) -> Iterator[redis.Redis]:
    """A sync raw client on the shared server; the test's keys are deleted afterwards."""
    client = redis.Redis.from_url(agentmem_server.url)
    try:
        yield client
    finally:
        keys = list(client.scan_iter(match=escape_glob(agentmem_prefix) + "*", count=500))
        if keys:
            client.unlink(*keys)
        client.close()


@pytest.fixture
def store(
    agentmem_server: ServerInfo, agentmem_prefix: str, raw: redis.Redis
) -> Iterator[SyncAgentMemoryStore]:
    with SyncAgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix) as made:
        yield made


def test_every_operation(store: SyncAgentMemoryStore, raw: redis.Redis, agentmem_prefix: str) -> None:
    """Each call does what the async one does, as the raw keys on the server show."""
    keys = KeySchema(agentmem_prefix)
    session = keys.session("call 1")
    store.save_context("call 1", {"phone": "13800138000", "intent": "return"})
    store.update_context("call 1", {"name": "Li Wei"})
    assert store.load_context("call 1") == {"phone": "13800138000", "intent": "return", "name": "Li Wei"}
    assert orjson.loads(payload(raw.hget(session.context, "name") or b"")) == "Li Wei"
    assert store.load_context("nobody") is None

    assert store.append_messages("call 1", [{"role": "user", "content": "hi"}]) == 1
    assert store.append_messages("call 1", [{"role": "assistant", "content": "hello"}]) == 2
    assert store.load_history("call 1", last=1) == [{"role": "assistant", "content": "hello"}]
    assert raw.llen(session.history) == 2

    store.remember("user-42", {"preferred_name": "Li"})
    assert store.recall("user-42") == {"preferred_name": "Li"}
    assert store.recall("nobody") == {}

    turn = store.load_turn("call 1", user_id="user-42", last=20)
    assert turn.context is not None
    assert turn.context["name"] == "Li Wei"
    assert [m["content"] for m in turn.history] == ["hi", "hello"]
    assert turn.profile == {"preferred_name": "Li"}

    health = store.health()
    assert health.server_version
    assert health.breaker_state == "closed"
    assert store.config.prefix == agentmem_prefix
    assert store.retry_stats.attempts >= 10
    assert store.breaker.state.value == "closed"

    assert store.delete_session("call 1") is True
    assert store.delete_session("call 1") is False
    assert raw.exists(session.context, session.base, session.history) == 0
    assert store.forget_user("user-42") is True
    assert raw.exists(keys.profile("user-42")) == 0


def test_typed_errors_reach_the_caller_unchanged(
    store: SyncAgentMemoryStore, raw: redis.Redis, agentmem_prefix: str
) -> None:
    """Validation and server errors arrive as the async store raises them: same class, same cause."""
    with pytest.raises(InvalidKeyError):
        store.load_context("")
    with pytest.raises(SerializationError):
        store.save_context("s", {"bad": {1, 2}})
    with pytest.raises(InvalidArgumentError):
        store.load_history("s", last=0)

    keys = KeySchema(agentmem_prefix)
    raw.set(keys.session("wrongtype").context, b"a string")
    with pytest.raises(AgentMemoryError) as info:
        store.load_context("wrongtype")
    assert type(info.value) is AgentMemoryError
    assert isinstance(info.value.__cause__, ResponseError)
    assert "WRONGTYPE" in str(info.value.__cause__)

    store.save_context("corrupt", {"ok": 1})
    raw.hset(keys.session("corrupt").context, "broken", b"{not json")
    with pytest.raises(MemoryCorruptedError, match="broken"):
        store.load_context("corrupt")


def test_invalid_option_raises_and_leaves_no_thread(agentmem_server: ServerInfo) -> None:
    """An invalid option raises InvalidArgumentError from from_url() and stops the loop thread."""
    before = loop_threads()
    with pytest.raises(InvalidArgumentError, match="ttl"):
        SyncAgentMemoryStore.from_url(agentmem_server.url, ttl=-1)
    with pytest.raises(TypeError, match="nonsense"):
        SyncAgentMemoryStore.from_url(agentmem_server.url, nonsense=1)
    with pytest.raises(InvalidArgumentError, match="ttl"):
        SyncAgentMemoryStore.from_sentinel([("127.0.0.1", 1)], "agentmem", ttl=-1)
    assert loop_threads() == before


def test_threads_share_one_store(agentmem_server: ServerInfo, agentmem_prefix: str, raw: redis.Redis) -> None:
    """8 threads x many calls on one store: every write lands, in each thread's order."""
    keys = KeySchema(agentmem_prefix)
    total = THREADS * CALLS_PER_THREAD

    def agent(store: SyncAgentMemoryStore, worker: int) -> None:
        for n in range(CALLS_PER_THREAD):
            store.append_messages(f"own-{worker}", [{"n": n}])
            store.update_context(f"own-{worker}", {"last": n, f"field-{n % 4}": worker})
            store.append_messages("shared", [{"worker": worker, "n": n}])
            store.update_context("shared", {f"worker-{worker}": n})
            assert store.load_context(f"own-{worker}") == {
                "last": n,
                **{f"field-{i}": worker for i in range(min(n + 1, 4))},
            }

    with SyncAgentMemoryStore.from_url(
        agentmem_server.url, prefix=agentmem_prefix, max_history=total
    ) as store:
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            for future in [pool.submit(agent, store, worker) for worker in range(THREADS)]:
                future.result()
        assert store.retry_stats.failures == 0

    for worker in range(THREADS):
        history = [orjson.loads(item) for item in raw.lrange(keys.session(f"own-{worker}").history, 0, -1)]
        assert history == [{"n": n} for n in range(CALLS_PER_THREAD)]
        assert orjson.loads(payload(raw.hget(keys.session(f"own-{worker}").context, "last") or b"")) == (
            CALLS_PER_THREAD - 1
        )
    shared = [orjson.loads(item) for item in raw.lrange(keys.session("shared").history, 0, -1)]
    assert len(shared) == total
    for worker in range(THREADS):
        assert [m["n"] for m in shared if m["worker"] == worker] == list(range(CALLS_PER_THREAD))
        field = raw.hget(keys.session("shared").context, f"worker-{worker}")
        assert orjson.loads(payload(field or b"")) == CALLS_PER_THREAD - 1


def test_close(agentmem_server: ServerInfo, agentmem_prefix: str, raw: redis.Redis) -> None:
    """close() stops the loop thread; later calls raise StoreClosedError; closing twice is fine."""
    before = loop_threads()
    with SyncAgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix) as store:
        store.save_context("s", {"a": 1})
        assert loop_threads() == before + 1
    assert store.closed
    assert loop_threads() == before
    with pytest.raises(StoreClosedError):
        store.load_context("s")
    with pytest.raises(StoreClosedError):
        store.health()
    store.close()


def test_call_racing_close_gets_store_closed(agentmem_server: ServerInfo, agentmem_prefix: str) -> None:
    """Calls from other threads while close() runs either finish or raise StoreClosedError."""
    store = SyncAgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix)
    outcomes: list[str] = []
    stop = threading.Event()

    def caller() -> None:
        while not stop.is_set():
            try:
                store.update_context("s", {"a": 1})
                outcomes.append("ok")
            except StoreClosedError:
                outcomes.append("closed")
                return

    threads = [threading.Thread(target=caller) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    store.close()
    stop.set()
    for thread in threads:
        thread.join(5)
    assert "ok" in outcomes
    assert set(outcomes) <= {"ok", "closed"}


def test_exit_without_close_does_not_hang(agentmem_server: ServerInfo, agentmem_prefix: str) -> None:
    """A program that never calls close() still exits, promptly and without a traceback."""
    script = textwrap.dedent(
        f"""
        from agentmem import SyncAgentMemoryStore
        store = SyncAgentMemoryStore.from_url({agentmem_server.url!r}, prefix={agentmem_prefix!r})
        store.save_context("s", {{"a": 1}})
        print("done")
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 15


@pytest.fixture
def store_outside_loop(agentmem_server: ServerInfo, agentmem_prefix: str) -> Iterator[SyncAgentMemoryStore]:
    """Made by a sync fixture, so an async test can try to use it from inside its loop."""
    store = SyncAgentMemoryStore.from_url(agentmem_server.url, prefix=agentmem_prefix)
    try:
        yield store
    finally:
        store.close()


async def test_refused_inside_an_event_loop(store_outside_loop: SyncAgentMemoryStore) -> None:
    """A blocking call from a running event loop raises RuntimeError at once, sending nothing."""
    attempts = store_outside_loop.retry_stats.attempts
    with pytest.raises(RuntimeError, match=r"running event loop.*await store\.load_context"):
        store_outside_loop.load_context("s")
    with pytest.raises(RuntimeError, match="running event loop"):
        store_outside_loop.close()
    with pytest.raises(RuntimeError, match="running event loop"):
        SyncAgentMemoryStore.from_url("redis://127.0.0.1:1")
    assert store_outside_loop.retry_stats.attempts == attempts


def test_journal_extras(agentmem_private_server: EmbeddedServer) -> None:
    """fallback="journal" gives a SyncJournaledStore: writes through an outage are kept and written back."""
    url = agentmem_private_server.url
    store = SyncAgentMemoryStore.from_url(url, prefix="j", fallback="journal", retry_deadline=0.3)
    assert isinstance(store, SyncJournaledStore)
    with store:
        store.save_context("s", {"a": 1})
        assert (store.journal_backlog, store.flush_journal(), store.journal_dropped) == (0, [], [])
        agentmem_private_server.kill()
        store.update_context("s", {"b": 2})  # journaled, acknowledged
        assert store.journal_backlog == 1
        agentmem_private_server.start()
        wait_for_breaker_to_close(store)
        assert store.flush_journal() == []
        assert store.journal_backlog == 0
    admin = redis.Redis.from_url(url)
    try:
        assert orjson.loads(payload(admin.hget(KeySchema("j").session("s").context, "b") or b"")) == 2
    finally:
        admin.close()
    typed = SyncJournaledStore.from_url(url, prefix="j")
    with typed:
        assert typed.config.fallback == "journal"


def test_short_restart_is_waited_out(agentmem_private_server: EmbeddedServer) -> None:
    """Default options: a kill -9 and restart shorter than retry_deadline costs the threads nothing."""
    errors: list[BaseException] = []
    calls = [0] * 4
    stop = threading.Event()

    def agent(store: SyncAgentMemoryStore, worker: int) -> None:
        while not stop.is_set():
            try:
                store.update_context(f"s-{worker}", {"n": calls[worker]})
                store.load_context(f"s-{worker}")
                calls[worker] += 1
            except Exception as exc:
                errors.append(exc)
                return

    with SyncAgentMemoryStore.from_url(agentmem_private_server.url, prefix="restart") as store:
        threads = [threading.Thread(target=agent, args=(store, worker)) for worker in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        agentmem_private_server.kill()
        time.sleep(0.3)
        agentmem_private_server.start()
        time.sleep(0.5)
        stop.set()
        for thread in threads:
            thread.join(10)
        assert errors == []
        assert min(calls) > 0
        assert store.retry_stats.retries > 0


def test_long_outage_raises_in_the_calling_thread(agentmem_private_server: EmbeddedServer) -> None:
    """Default options: an outage longer than retry_deadline raises MemoryUnavailableError in the
    thread that called, within about retry_deadline; the store works again once the server is back."""
    with SyncAgentMemoryStore.from_url(agentmem_private_server.url, prefix="outage") as store:
        store.save_context("s", {"a": 1})
        agentmem_private_server.kill()
        with ThreadPoolExecutor(max_workers=2) as pool:
            started = time.monotonic()
            futures: list[Future[Any]] = [
                pool.submit(store.load_context, "s"),
                pool.submit(store.update_context, "s", {}),
            ]
            for future in futures:
                assert isinstance(future.exception(timeout=10), MemoryUnavailableError)
            assert time.monotonic() - started < store.config.retry_deadline + 2
        agentmem_private_server.start()
        wait_for_breaker_to_close(store)
        store.save_context("s", {"back": True})
        assert store.load_context("s") == {"back": True}


def test_threadpool_example(agentmem_server: ServerInfo, agentmem_prefix: str, raw: redis.Redis) -> None:
    """examples/threadpool_agent.py greets every caller by name on the second request."""
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "threadpool_agent.py"), agentmem_server.url, agentmem_prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "32/32 callers greeted by name" in result.stdout
    assert raw.llen(KeySchema(agentmem_prefix).session("call-7").history) == 4
