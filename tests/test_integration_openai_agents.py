"""AgentMemorySession against a real server: the OpenAI Agents SDK ``Session`` contract
(order, limits, pop, clear), isolation, concurrent writers, corruption, TTL, faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from redis.asyncio import Redis

pytest.importorskip("agents", reason="needs the openai-agents extra: pip install -e '.[openai-agents]'")

from agents import SQLiteSession
from agents.items import TResponseInputItem
from agents.memory import Session, SessionABC, SessionSettings

from agentmem import (
    AgentMemoryStore,
    InvalidArgumentError,
    InvalidKeyError,
    MemoryCorruptedError,
    MemoryFullError,
    MemoryUnavailableError,
    ReplicationTimeoutError,
)
from agentmem.integrations.openai_agents import AgentMemorySession
from agentmem.keys import KeySchema
from agentmem.testing import EmbeddedServer, ServerInfo, TcpProxy, kill_connections, memory_pressure

StoreFactory = Callable[..., AgentMemoryStore]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _item(n: int, role: str = "user") -> TResponseInputItem:
    return cast("TResponseInputItem", {"role": role, "content": f"message {n}"})


def _numbers(items: list[Any]) -> list[int]:
    return [int(item["content"].split()[-1]) for item in items]


def _history_key(prefix: str, session_id: str) -> str:
    return KeySchema(prefix).session(session_id).history


async def test_is_an_agents_session(agentmem_store: AgentMemoryStore) -> None:
    """The adapter is a SessionABC and satisfies the SDK's runtime Session protocol."""
    session = AgentMemorySession("s", agentmem_store)
    assert isinstance(session, SessionABC)
    assert isinstance(session, Session)
    assert session.session_id == "s"
    assert session.session_settings == SessionSettings()


async def test_items_keep_their_order_across_batches(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Items come back oldest first, in the order of the calls and within each batch."""
    session = AgentMemorySession("s", agentmem_store)
    await session.add_items([_item(0), _item(1, "assistant")])
    await session.add_items([])
    await session.add_items([_item(2), _item(3, "assistant"), _item(4)])
    assert _numbers(await session.get_items()) == [0, 1, 2, 3, 4]
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "s")) == 5


async def test_limit_returns_the_newest_items_oldest_first(agentmem_store: AgentMemoryStore) -> None:
    """get_items(limit) is the newest `limit` items; 0 gives none; past the length gives all."""
    session = AgentMemorySession("s", agentmem_store)
    await session.add_items([_item(n) for n in range(10)])
    assert _numbers(await session.get_items(limit=3)) == [7, 8, 9]
    assert await session.get_items(limit=0) == []
    assert _numbers(await session.get_items(limit=50)) == list(range(10))


async def test_session_settings_limit_is_the_default(agentmem_store: AgentMemoryStore) -> None:
    """session_settings.limit applies when get_items gets none; an explicit limit wins."""
    session = AgentMemorySession("s", agentmem_store, session_settings={"limit": 2})
    await session.add_items([_item(n) for n in range(5)])
    assert _numbers(await session.get_items()) == [3, 4]
    assert _numbers(await session.get_items(limit=4)) == [1, 2, 3, 4]


@pytest.mark.parametrize("limit", [-1, 1.5, "3", True])
async def test_bad_limit_is_a_typed_error(agentmem_store: AgentMemoryStore, limit: Any) -> None:
    """A limit that is not None or an int >= 0 raises InvalidArgumentError."""
    session = AgentMemorySession("s", agentmem_store)
    with pytest.raises(InvalidArgumentError):
        await session.get_items(limit=limit)


async def test_bad_session_id_and_store_are_refused(agentmem_store: AgentMemoryStore) -> None:
    """An unusable session id raises InvalidKeyError; something that is not a store, TypeError."""
    with pytest.raises(InvalidKeyError):
        AgentMemorySession("", agentmem_store)
    with pytest.raises(TypeError):
        AgentMemorySession("s", object())  # type: ignore[arg-type]


async def test_pop_removes_and_returns_the_newest(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """pop_item returns the newest item and removes it on the server; None when empty."""
    session = AgentMemorySession("s", agentmem_store)
    await session.add_items([_item(0), _item(1)])
    popped = await session.pop_item()
    assert popped == _item(1)
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "s")) == 1
    assert await session.pop_item() == _item(0)
    assert await session.pop_item() is None
    assert await session.get_items() == []


async def test_sessions_are_isolated(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Writes, pops and clears of one session never touch another, even with look-alike ids."""
    one = AgentMemorySession("user:1", agentmem_store)
    two = AgentMemorySession("user:1*", agentmem_store)
    await one.add_items([_item(1)])
    await two.add_items([_item(2), _item(3)])
    assert await one.pop_item() == _item(1)
    await one.add_items([_item(4)])
    await one.clear_session()
    assert _numbers(await two.get_items()) == [2, 3]
    assert await one.get_items() == []
    assert await agentmem_redis.exists(_history_key(agentmem_prefix, "user:1")) == 0
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "user:1*")) == 2


async def test_items_are_the_store_sessions_history(agentmem_store: AgentMemoryStore) -> None:
    """The agent's items are the store session's history: load_turn sees them; clear deletes the session."""
    session = AgentMemorySession("call-1", agentmem_store)
    await agentmem_store.save_context("call-1", {"phone": "555"})
    await session.add_items([_item(0), _item(1)])
    turn = await agentmem_store.load_turn("call-1")
    assert (turn.context, turn.history) == ({"phone": "555"}, [_item(0), _item(1)])
    await session.clear_session()
    assert await agentmem_store.load_context("call-1") is None


async def test_concurrent_writers_lose_nothing(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """20 writers on two stores (two processes' worth) add 5 batches each: all 100 items are
    stored, each writer's items in its own order."""
    stores = [agentmem_store_factory(), agentmem_store_factory()]

    async def writer(w: int) -> None:
        session = AgentMemorySession("shared", stores[w % 2])
        for n in range(5):
            await session.add_items([cast("TResponseInputItem", {"role": "user", "content": f"{w} {n}"})])

    await asyncio.gather(*(writer(w) for w in range(20)))
    items = await AgentMemorySession("shared", stores[0]).get_items()
    seen = [tuple(int(x) for x in cast("dict[str, str]", item)["content"].split()) for item in items]
    assert sorted(seen) == [(w, n) for w in range(20) for n in range(5)]
    for w in range(20):
        assert [n for writer_id, n in seen if writer_id == w] == list(range(5))
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "shared")) == 100


async def test_concurrent_pops_never_return_one_item_twice(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """40 concurrent pops from two stores over 30 items: each item is returned exactly once,
    the other 10 pops get None, and the list is empty."""
    stores = [agentmem_store_factory(), agentmem_store_factory()]
    await AgentMemorySession("s", stores[0]).add_items([_item(n) for n in range(30)])
    popped = await asyncio.gather(*(AgentMemorySession("s", stores[i % 2]).pop_item() for i in range(40)))
    items = [item for item in popped if item is not None]
    assert sorted(_numbers(items)) == list(range(30))
    assert popped.count(None) == 10
    assert await agentmem_redis.exists(_history_key(agentmem_prefix, "s")) == 0


@pytest.mark.parametrize("garbage", [b"not json", b"[1, 2]", b'"a string"'])
async def test_corrupt_item_raises_and_pop_leaves_it(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, garbage: bytes
) -> None:
    """A stored item that is not a JSON object raises MemoryCorruptedError from get_items and
    pop_item (never skipped); pop leaves it and everything else in place."""
    session = AgentMemorySession("s", agentmem_store)
    await session.add_items([_item(0)])
    key = _history_key(agentmem_prefix, "s")
    await agentmem_redis.rpush(key, garbage)
    with pytest.raises(MemoryCorruptedError):
        await session.get_items()
    with pytest.raises(MemoryCorruptedError):
        await session.get_items(limit=1)
    with pytest.raises(MemoryCorruptedError, match="left in place"):
        await session.pop_item()
    assert await agentmem_redis.lrange(key, 0, -1) == [b'{"role":"user","content":"message 0"}', garbage]


async def test_writes_and_reads_set_the_store_ttl(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Every key of the session carries the store's ttl after add, pop and get."""
    session = AgentMemorySession("s", agentmem_store)
    keys = KeySchema(agentmem_prefix).session("s")
    ttl_ms = agentmem_store.config.ttl * 1000
    await session.add_items([_item(0), _item(1)])
    await agentmem_redis.pexpire(keys.history, 5_000)
    await session.pop_item()
    assert ttl_ms - 60_000 < await agentmem_redis.pttl(keys.history) <= ttl_ms
    assert ttl_ms - 60_000 < await agentmem_redis.pttl(keys.pops) <= ttl_ms
    await agentmem_redis.pexpire(keys.history, 5_000)
    await session.get_items()
    assert ttl_ms - 60_000 < await agentmem_redis.pttl(keys.history) <= ttl_ms


async def test_session_expires_with_the_store_ttl(agentmem_store_factory: StoreFactory) -> None:
    """With ttl=1 s the items are gone a little later: an expired session is empty, not an error."""
    session = AgentMemorySession("s", agentmem_store_factory(ttl=1))
    await session.add_items([_item(0)])
    await asyncio.sleep(1.5)
    assert await session.get_items() == []
    assert await session.pop_item() is None


async def test_lost_pop_reply_is_retried_without_popping_twice(
    agentmem_store_factory: StoreFactory, agentmem_proxy: TcpProxy
) -> None:
    """The server pops, the reply is cut: the retry returns the same item and pops nothing more."""
    store = agentmem_store_factory(url=agentmem_proxy.url)
    session = AgentMemorySession("s", store)
    await session.add_items([_item(0), _item(1), _item(2), _item(3)])
    assert await session.pop_item() == _item(3)  # the script is loaded: the cut hits the pop
    agentmem_proxy.cut_next_reply()
    assert await session.pop_item() == _item(2)
    assert agentmem_proxy.replies_cut == 1
    assert store.retry_stats.retries >= 1
    assert _numbers(await session.get_items()) == [0, 1]


async def test_lost_add_reply_is_retried_without_adding_twice(
    agentmem_store_factory: StoreFactory, agentmem_proxy: TcpProxy
) -> None:
    """The server appends, the reply is cut: the retry stores the batch once."""
    store = agentmem_store_factory(url=agentmem_proxy.url)
    session = AgentMemorySession("s", store)
    agentmem_proxy.cut_next_reply()
    await session.add_items([_item(0), _item(1)])
    assert agentmem_proxy.replies_cut == 1
    assert _numbers(await session.get_items()) == [0, 1]


async def test_same_session_object_works_after_a_server_restart(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory
) -> None:
    """A restart (AOF on) drops every connection: the same session object's next calls
    succeed (the store reconnects and retries) and see the items written before it."""
    server: EmbeddedServer = agentmem_server_factory(persistence=True, appendfsync="always")
    store = agentmem_store_factory(url=server.url)
    session = AgentMemorySession("s", store)
    await session.add_items([_item(0), _item(1)])
    await asyncio.to_thread(server.restart)
    assert _numbers(await session.get_items()) == [0, 1]
    await session.add_items([_item(2)])
    assert await session.pop_item() == _item(2)
    assert _numbers(await session.get_items()) == [0, 1]


async def test_killed_connections_are_survived(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """CLIENT KILL of every store connection: the next add, get and pop succeed."""
    name = f"{agentmem_prefix}-kill"[-60:]
    store = agentmem_store_factory(client_name=name)
    session = AgentMemorySession("s", store)
    await session.add_items([_item(0)])
    assert await kill_connections(agentmem_redis, name) >= 1
    await session.add_items([_item(1)])
    assert await kill_connections(agentmem_redis, name) >= 1
    assert _numbers(await session.get_items()) == [0, 1]
    assert await kill_connections(agentmem_redis, name) >= 1
    assert await session.pop_item() == _item(1)
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "s")) == 1


async def test_out_of_memory_writes_nothing(
    agentmem_store_factory: StoreFactory, agentmem_private_server: EmbeddedServer
) -> None:
    """Past maxmemory (noeviction) add and pop raise MemoryFullError and change nothing; get works."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    session = AgentMemorySession("s", store)
    await session.add_items([_item(0), _item(1)])
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        async with memory_pressure(admin, maxmemory=1, policy="noeviction"):
            with pytest.raises(MemoryFullError):
                await session.add_items([_item(2)])
            with pytest.raises(MemoryFullError):
                await session.pop_item()
            assert _numbers(await session.get_items()) == [0, 1]
        key = KeySchema(store.config.prefix).session("s").history
        assert await admin.llen(key) == 2
    finally:
        await admin.aclose()


async def test_behaves_like_the_sdks_own_session(agentmem_store: AgentMemoryStore, tmp_path: Path) -> None:
    """The same calls on the SDK's SQLiteSession and on AgentMemorySession give the same results."""
    ours = AgentMemorySession("s", agentmem_store)
    theirs = SQLiteSession("s", str(tmp_path / "sessions.db"))
    try:
        results: list[list[Any]] = [[], []]
        for index, session in enumerate((ours, theirs)):
            out = results[index]
            await session.add_items([_item(0), _item(1)])
            await session.add_items([_item(2)])
            out.append(await session.get_items())
            out.append(await session.get_items(limit=2))
            out.append(await session.get_items(limit=0))
            out.append(await session.pop_item())
            out.append(await session.get_items())
            await session.clear_session()
            out.append(await session.get_items())
            out.append(await session.pop_item())
        assert results[0] == results[1]
    finally:
        theirs.close()


async def test_example_runs_an_agent_whose_memory_carries_over(
    agentmem_server: ServerInfo, agentmem_prefix: str, agentmem_redis: Redis
) -> None:
    """examples/openai_agents_session.py: the second run greets by the name from the first."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLES / "openai_agents_session.py"), agentmem_server.url, agentmem_prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "turn 2: Hello again, Ada!" in result.stdout
    assert "4 items in agentmem session 'call-1'" in result.stdout
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "call-1")) == 4


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [("openai_agents", "agents", "openai-agents"), ("adk", "google.adk", "adk")],
)
def test_missing_framework_names_the_extra(module: str, framework: str, extra: str) -> None:
    """Without its framework an adapter fails to import with the extra to install; the
    integrations package itself imports no framework."""
    code = (
        "import sys\n"
        "import agentmem.integrations\n"
        f"assert {framework!r} not in sys.modules\n"
        f"sys.modules[{framework!r}] = None\n"
        f"import agentmem.integrations.{module}\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert f"pip install 'agentmem-redis[{extra}]'" in result.stderr


#: A journaled store that notices an outage at once (as tests/test_journal.py uses).
JOURNAL_FAST = {
    "fallback": "journal",
    "socket_timeout": 0.3,
    "socket_connect_timeout": 0.3,
    "retries": 0,
    "breaker_threshold": 0,
}


async def test_journaled_store_keeps_adds_and_pops_only_what_redis_has(
    agentmem_store_factory: StoreFactory,
    agentmem_proxy: TcpProxy,
    agentmem_redis: Redis,
    agentmem_prefix: str,
) -> None:
    """With fallback="journal" an add during an outage is kept and read back; pop_item then
    raises MemoryUnavailableError and pops nothing; after recovery it pops the replayed item."""
    store = agentmem_store_factory(url=agentmem_proxy.url, **JOURNAL_FAST)
    session = AgentMemorySession("s", store)
    await session.add_items([_item(0), _item(1)])
    assert _numbers(await session.get_items()) == [0, 1]
    agentmem_proxy.refuse()
    agentmem_proxy.reset()
    await session.add_items([_item(2)])
    assert _numbers(await session.get_items()) == [0, 1, 2]
    with pytest.raises(MemoryUnavailableError, match="nothing was popped"):
        await session.pop_item()
    agentmem_proxy.restore()
    assert await session.pop_item() == _item(2)
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "s")) == 2


async def test_journaled_store_never_serves_a_popped_item(
    agentmem_store_factory: StoreFactory, agentmem_proxy: TcpProxy
) -> None:
    """What the journaled store knew of the history is dropped by a pop: during a later
    outage get_items raises instead of returning the popped item."""
    store = agentmem_store_factory(url=agentmem_proxy.url, **JOURNAL_FAST)
    session = AgentMemorySession("s", store)
    await session.add_items([_item(0), _item(1)])
    assert _numbers(await session.get_items()) == [0, 1]
    assert await session.pop_item() == _item(1)
    agentmem_proxy.refuse()
    agentmem_proxy.reset()
    with pytest.raises(MemoryUnavailableError):
        await session.get_items()


async def test_max_history_bounds_the_session(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """The store's max_history bounds the session: the oldest items leave first."""
    session = AgentMemorySession("s", agentmem_store_factory(max_history=3))
    await session.add_items([_item(n) for n in range(5)])
    await session.add_items([_item(5)])
    assert _numbers(await session.get_items()) == [3, 4, 5]
    assert await agentmem_redis.llen(_history_key(agentmem_prefix, "s")) == 3


@pytest.mark.single_node  # WAIT must find no replica: the shared single server has none
async def test_pop_under_wait_replicas_hands_the_item_over_and_a_repeat_pops_nothing_more(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """wait_replicas with no replica acknowledging: pop_item's ReplicationTimeoutError carries the
    item it popped (.reply), and pop_item again returns that same item instead of popping the next."""
    store = agentmem_store_factory(wait_replicas=1, wait_timeout=0.05)
    history = _history_key(agentmem_prefix, "s")
    await agentmem_redis.rpush(history, orjson.dumps(_item(1)), orjson.dumps(_item(2)))
    session = AgentMemorySession("s", store)
    with pytest.raises(ReplicationTimeoutError, match="same item") as first:
        await session.pop_item()
    assert first.value.reply == _item(2)
    with pytest.raises(ReplicationTimeoutError) as repeat:
        await session.pop_item()
    assert repeat.value.reply == _item(2)
    assert await agentmem_redis.lrange(history, 0, -1) == [orjson.dumps(_item(1))]
