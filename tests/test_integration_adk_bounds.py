"""AgentMemorySessionService: the promises its main tests' setups hid (real servers).

A second append repairs a lost ``app:`` write on a cluster; an ``app:``-only event refreshes
the app state's TTL; ``agentmem acl --integration adk`` is enough to list sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

pytest.importorskip("google.adk", reason="needs the adk extra: pip install -e '.[adk]'")

from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.genai import types

from agentmem import AgentMemoryStore, MemoryFullError
from agentmem.acl import acl_setuser_args
from agentmem.integrations.adk import AgentMemorySessionService
from agentmem.keys import KeySchema
from agentmem.testing import memory_pressure
from agentmem.testing.cluster import ClusterGroup

StoreFactory = Callable[..., AgentMemoryStore]
APP = "app"


def _event(text: str, delta: dict[str, Any]) -> Event:
    return Event(
        author="user",
        invocation_id="inv-1",
        content=types.Content(role="user", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta),
    )


async def test_appending_again_applies_an_app_delta_whose_script_failed_on_a_cluster(
    agentmem_private_cluster: ClusterGroup,
) -> None:
    """Cluster: the event's script succeeds, the app: script on the app's node fails (memory full);
    appending the same event again stores it once and applies the app: delta."""
    group = agentmem_private_cluster
    prefix = "adkapp"
    schema = KeySchema(prefix)
    app_key = schema.adk_app_state(APP)
    user = next(
        f"u{i}"
        for i in range(500)
        if group.primary_for(key_slot(schema.adk_session(APP, f"u{i}", "s1").state.encode()))
        != group.primary_for(key_slot(app_key.encode()))
    )
    keys = schema.adk_session(APP, user, "s1")
    store = AgentMemoryStore.from_url(group.url, prefix=prefix)
    app_node = Redis(port=group.primary_for(key_slot(app_key.encode())))
    session_node = Redis(port=group.primary_for(key_slot(keys.state.encode())))
    try:
        service = AgentMemorySessionService(store)
        session = await service.create_session(app_name=APP, user_id=user, session_id="s1")
        event = _event("hello", {"a": 1, "app:c": 3})
        async with memory_pressure(app_node, maxmemory=1, policy="noeviction"):
            with pytest.raises(MemoryFullError):
                await service.append_event(session, event)
        assert await session_node.llen(keys.events) == 1  # the event's own script was applied
        assert await app_node.hgetall(app_key) == {}  # its app: delta was not
        await service.append_event(session, event)
        assert await session_node.llen(keys.events) == 1  # stored once
        assert await app_node.hgetall(app_key) == {b"c": b"3"}
        got = await service.get_session(app_name=APP, user_id=user, session_id="s1")
        assert got is not None
        assert got.state == {"a": 1, "app:c": 3}
    finally:
        await app_node.aclose()
        await session_node.aclose()
        await store.aclose()  # the private cluster goes with the test


async def test_an_app_only_event_refreshes_the_app_states_ttl(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """profile_ttl set: an event whose delta is only app: keys gives the app state profile_ttl again."""
    store = agentmem_store_factory(profile_ttl=3600)
    service = AgentMemorySessionService(store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"app:c": 1})
    app_key = KeySchema(agentmem_prefix).adk_app_state(APP)
    await agentmem_redis.pexpire(app_key, 10_000)  # as if most of profile_ttl had passed
    await service.append_event(session, _event("x", {"app:c": 2}))
    assert 3_500_000 < await agentmem_redis.pttl(app_key) <= 3_600_000
    assert await agentmem_redis.hget(app_key, "c") == b"2"


async def test_the_adk_acl_rule_is_enough_to_list_sessions(
    agentmem_private_server: Any, agentmem_store_factory: StoreFactory
) -> None:
    """Under `agentmem acl --integration adk`'s rule, list_sessions (one user, every user, and
    an expired session's index entry pruned) is allowed."""
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        args = acl_setuser_args("tadk", "tadk", password="tadk-pw", client_name=True, integrations=["adk"])
        await admin.execute_command("ACL", "SETUSER", *args)  # type: ignore[no-untyped-call]
        url = agentmem_private_server.url.replace("redis://", "redis://tadk:tadk-pw@", 1)
        store = agentmem_store_factory(url, prefix="tadk")
        service = AgentMemorySessionService(store)
        for user, sid in (("u1", "s1"), ("u1", "s2"), ("u2", "s3")):
            await service.create_session(app_name=APP, user_id=user, session_id=sid, state={"app:c": 1})
        await admin.delete(KeySchema("tadk").adk_session(APP, "u1", "s2").state)  # as if expired
        mine = await service.list_sessions(app_name=APP, user_id="u1")
        assert [s.id for s in mine.sessions] == ["s1"]
        everyone = await service.list_sessions(app_name=APP)
        assert sorted(s.id for s in everyone.sessions) == ["s1", "s3"]
        index, _ = KeySchema("tadk").adk_user(APP, "u1")
        assert await admin.zrange(index, 0, -1) == [b"s1"]  # the expired entry was pruned
    finally:
        await admin.aclose()
