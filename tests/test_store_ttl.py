"""Session keys share one TTL that writes (and, by default, reads) reset; facts keep none."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from redis.asyncio import Redis

from agentmem import AgentMemoryStore, InvalidArgumentError, StoreConfig
from agentmem.config import MAX_TTL
from agentmem.keys import KeySchema

StoreFactory = Callable[..., AgentMemoryStore]


async def test_session_expires_after_ttl(agentmem_store_factory: StoreFactory) -> None:
    """With a short TTL and no activity, context and history are gone."""
    store = agentmem_store_factory(ttl=0.3)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await asyncio.sleep(0.6)
    assert await store.load_context("s") is None
    assert await store.load_history("s") == []


async def test_writes_to_either_key_reset_both(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """An append resets the context's TTL, and a context write resets the history's."""
    store = agentmem_store_factory(ttl=10, sliding_ttl=False)
    keys = KeySchema(agentmem_prefix).session("s")
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await agentmem_redis.pexpire(keys.context, 500)
    await agentmem_redis.pexpire(keys.history, 500)
    await store.append_messages("s", [{"n": 2}])
    assert await agentmem_redis.pttl(keys.context) > 5000
    await agentmem_redis.pexpire(keys.history, 500)
    await store.update_context("s", {"b": 2})
    assert await agentmem_redis.pttl(keys.history) > 5000


async def test_reads_slide_the_ttl(agentmem_store_factory: StoreFactory) -> None:
    """With sliding_ttl (default), regular reads keep a session alive past its TTL."""
    store = agentmem_store_factory(ttl=1.0)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    for _ in range(5):  # 1.5 s in all: well past the TTL, each step well inside it
        await asyncio.sleep(0.3)
        assert (await store.load_turn("s")).context == {"a": 1}
    assert await store.load_history("s") == [{"n": 1}]


async def test_reads_do_not_slide_when_disabled(agentmem_store_factory: StoreFactory) -> None:
    """With sliding_ttl=False, reading does not extend the session."""
    store = agentmem_store_factory(ttl=0.4, sliding_ttl=False)
    await store.save_context("s", {"a": 1})
    for _ in range(2):
        await asyncio.sleep(0.25)
        await store.load_context("s")
    assert await store.load_context("s") is None


async def test_facts_have_no_ttl_by_default(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Long-term facts persist until forgotten unless profile_ttl is set."""
    await agentmem_store.remember("u", {"a": 1})
    assert await agentmem_redis.pttl(KeySchema(agentmem_prefix).profile("u")) == -1


async def test_profile_ttl_expires_facts(agentmem_store_factory: StoreFactory) -> None:
    """With profile_ttl, facts expire; recall refreshes it while sliding."""
    store = agentmem_store_factory(profile_ttl=1.0)
    await store.remember("u", {"a": 1})
    await asyncio.sleep(0.6)
    assert await store.recall("u") == {"a": 1}
    await asyncio.sleep(0.6)  # 1.2 s after remember: alive only because recall slid it
    assert await store.recall("u") == {"a": 1}
    await asyncio.sleep(1.3)
    assert await store.recall("u") == {}


async def test_longest_ttl_reaches_every_key(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """ttl and profile_ttl at MAX_TTL are accepted by the server and set on every key, to the ms."""
    store = agentmem_store_factory(ttl=MAX_TTL, profile_ttl=MAX_TTL)
    schema = KeySchema(agentmem_prefix)
    await store.save_context("s", {"a": 1})
    await store.append_messages("s", [{"n": 1}])
    await store.remember("u", {"b": 2})
    for key in (*schema.session("s").all(), schema.profile("u")):
        assert MAX_TTL * 1000 - 60_000 < await agentmem_redis.pttl(key) <= MAX_TTL * 1000


@pytest.mark.parametrize(
    "options", [{"ttl": MAX_TTL + 1}, {"ttl": 10**14}, {"profile_ttl": 10**14}, {"max_history": 2**53}]
)
def test_out_of_range_options_are_refused(options: dict[str, int]) -> None:
    """A ttl, profile_ttl or max_history no server can take raises InvalidArgumentError at construction."""
    with pytest.raises(InvalidArgumentError, match=next(iter(options))):
        StoreConfig.from_options(**options)
