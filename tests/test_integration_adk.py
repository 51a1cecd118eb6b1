"""AgentMemorySessionService against a real server: Google ADK's session-service contract
(create/get/list/delete, GetSessionConfig filters, append_event with app:/user:/session
state), isolation, concurrent state updates, corruption, TTL, faults."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

pytest.importorskip("google.adk", reason="needs the adk extra: pip install -e '.[adk]'")

from google.adk.errors.already_exists_error import AlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.sessions import BaseSessionService, InMemorySessionService, Session
from google.adk.sessions.base_session_service import GetSessionConfig
from google.genai import types

from agentmem import (
    AgentMemoryStore,
    InvalidKeyError,
    MemoryCorruptedError,
    MemoryFullError,
    SerializationError,
)
from agentmem.integrations.adk import AgentMemorySessionService
from agentmem.keys import AdkSessionKeys, KeySchema
from agentmem.testing import EmbeddedServer, ServerInfo, TcpProxy, kill_connections, memory_pressure

StoreFactory = Callable[..., AgentMemoryStore]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APP = "app"


def _event(text: str, delta: dict[str, Any] | None = None, *, timestamp: float | None = None) -> Event:
    extra: dict[str, Any] = {} if timestamp is None else {"timestamp": timestamp}
    return Event(
        author="user",
        invocation_id="inv-1",
        content=types.Content(role="user", parts=[types.Part(text=text)]),
        actions=EventActions(state_delta=delta or {}),
        **extra,
    )


def _texts(session: Session | None) -> list[str]:
    assert session is not None
    return [e.content.parts[0].text or "" for e in session.events if e.content and e.content.parts]


def _keys(prefix: str, user: str, session_id: str) -> AdkSessionKeys:
    return KeySchema(prefix).adk_session(APP, user, session_id)


async def test_is_an_adk_session_service(agentmem_store: AgentMemoryStore) -> None:
    """The adapter is a BaseSessionService; a non-store argument is a TypeError."""
    assert isinstance(AgentMemorySessionService(agentmem_store), BaseSessionService)
    with pytest.raises(TypeError):
        AgentMemorySessionService(object())  # type: ignore[arg-type]


async def test_create_splits_state_into_its_scopes(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """create_session stores session, user: and app: state in their own hashes, drops temp:,
    and returns the merged state."""
    service = AgentMemorySessionService(agentmem_store)
    state = {"topic": "order", "user:name": "Ada", "app:greeting": "hi", "temp:scratch": 1}
    session = await service.create_session(app_name=APP, user_id="u1", state=state, session_id="s1")
    assert session.state == {"topic": "order", "user:name": "Ada", "app:greeting": "hi"}
    assert (session.id, session.app_name, session.user_id, session.events) == ("s1", APP, "u1", [])
    keys = _keys(agentmem_prefix, "u1", "s1")
    stored = await agentmem_redis.hgetall(keys.state)
    assert {k: v for k, v in stored.items() if k != b"\xff"} == {b"topic": b'"order"'}
    assert await agentmem_redis.hgetall(keys.user_state) == {b"name": b'"Ada"'}
    app_key = KeySchema(agentmem_prefix).adk_app_state(APP)
    assert await agentmem_redis.hgetall(app_key) == {b"greeting": b'"hi"'}
    assert await service.get_user_state(app_name=APP, user_id="u1") == {"name": "Ada"}


async def test_create_refuses_a_taken_id_and_makes_ids(agentmem_store: AgentMemoryStore) -> None:
    """A taken id raises AlreadyExistsError and changes nothing; no id gets a fresh one."""
    service = AgentMemorySessionService(agentmem_store)
    await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"a": 1})
    with pytest.raises(AlreadyExistsError):
        await service.create_session(app_name=APP, user_id="u1", session_id=" s1 ", state={"a": 2})
    got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert got is not None
    assert got.state == {"a": 1}
    fresh = [await service.create_session(app_name=APP, user_id="u1") for _ in range(2)]
    assert len({fresh[0].id, fresh[1].id, "s1"}) == 3


async def test_bad_ids_and_state_write_nothing(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """An empty app/user id raises InvalidKeyError, a state value that is not JSON
    SerializationError; neither writes a key."""
    service = AgentMemorySessionService(agentmem_store)
    with pytest.raises(InvalidKeyError):
        await service.create_session(app_name="", user_id="u1")
    with pytest.raises(InvalidKeyError):
        await service.get_session(app_name=APP, user_id="", session_id="s")
    with pytest.raises(SerializationError):
        await service.create_session(app_name=APP, user_id="u1", session_id="s", state={"f": object()})
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s")
    with pytest.raises(SerializationError):
        await service.append_event(session, _event("x", {"user:f": object()}))
    assert session.events == []
    keys = _keys(agentmem_prefix, "u1", "s")
    assert await agentmem_redis.exists(keys.events, keys.user_state) == 0


async def test_append_event_applies_every_scope_in_one_write(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """append_event stores the event and its session/user:/app: deltas; temp: reaches only the
    in-memory session, never the server; the session's update time is the event's."""
    service = AgentMemorySessionService(agentmem_store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"a": 1})
    event = _event("hello", {"a": 2, "b": [1, 2], "user:seen": True, "app:count": 7, "temp:t": "x"})
    returned = await service.append_event(session, event)
    assert returned is event
    assert "temp:t" not in event.actions.state_delta
    assert session.state["temp:t"] == "x"
    assert session.events == [event]
    assert session.last_update_time == event.timestamp
    got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert got is not None
    assert got.state == {"a": 2, "b": [1, 2], "user:seen": True, "app:count": 7}
    assert got.events == [event]
    assert got.last_update_time == pytest.approx(event.timestamp)
    keys = _keys(agentmem_prefix, "u1", "s1")
    assert await agentmem_redis.llen(keys.events) == 1
    stored_event = await agentmem_redis.lindex(keys.events, 0)
    assert isinstance(stored_event, bytes)
    assert b"temp" not in stored_event
    assert await agentmem_redis.hgetall(keys.user_state) == {b"seen": b"true"}


async def test_partial_events_are_not_stored(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """A partial (streaming) event is returned as is and stored nowhere."""
    service = AgentMemorySessionService(agentmem_store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    event = _event("chunk", {"a": 1})
    event.partial = True
    assert await service.append_event(session, event) is event
    assert await agentmem_redis.exists(_keys(agentmem_prefix, "u1", "s1").events) == 0
    assert session.events == []


async def test_append_to_a_missing_session_writes_nothing(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """append_event on a session that is not stored raises SessionNotFoundError, writes no key."""
    service = AgentMemorySessionService(agentmem_store)
    ghost = Session(id="ghost", app_name=APP, user_id="u1")
    with pytest.raises(SessionNotFoundError):
        await service.append_event(ghost, _event("x", {"user:a": 1, "app:b": 2}))
    assert await agentmem_redis.keys(f"{agentmem_prefix}:*") == []


async def test_same_event_twice_is_stored_once(agentmem_store: AgentMemoryStore) -> None:
    """Appending an event whose id is stored already (a retry) adds nothing."""
    service = AgentMemorySessionService(agentmem_store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    event = _event("once", {"n": 1})
    await service.append_event(session, event)
    await service.append_event(session, event)
    assert len(session.events) == 1
    assert _texts(await service.get_session(app_name=APP, user_id="u1", session_id="s1")) == ["once"]


async def test_events_keep_order_and_config_filters_them(agentmem_store: AgentMemoryStore) -> None:
    """Events come back in append order; num_recent_events and after_timestamp filter them
    exactly as ADK's InMemorySessionService does."""
    ours = AgentMemorySessionService(agentmem_store)
    theirs = InMemorySessionService()
    configs = [
        None,
        GetSessionConfig(num_recent_events=2),
        GetSessionConfig(num_recent_events=0),
        GetSessionConfig(num_recent_events=50),
        GetSessionConfig(after_timestamp=103.0),
        GetSessionConfig(after_timestamp=103.5),
        GetSessionConfig(after_timestamp=999.0),
        GetSessionConfig(num_recent_events=3, after_timestamp=102.0),
    ]
    results: list[list[list[str]]] = [[], []]
    for index, service in enumerate((ours, theirs)):
        session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
        for n in range(6):
            await service.append_event(session, _event(f"e{n}", timestamp=100.0 + n))
        for config in configs:
            got = await service.get_session(app_name=APP, user_id="u1", session_id="s1", config=config)
            results[index].append(_texts(got))
    assert results[0] == results[1]
    assert results[0][0] == [f"e{n}" for n in range(6)]


async def test_sessions_users_and_apps_are_isolated(agentmem_store: AgentMemoryStore) -> None:
    """Same session id under another user or app is another session; user: state is per
    (app, user), app: state per app."""
    service = AgentMemorySessionService(agentmem_store)
    a = await service.create_session(app_name=APP, user_id="u1", session_id="s")
    await service.create_session(app_name=APP, user_id="u2", session_id="s")
    await service.create_session(app_name="other", user_id="u1", session_id="s")
    await service.append_event(a, _event("a", {"x": 1, "user:y": 2, "app:z": 3}))
    u2 = await service.get_session(app_name=APP, user_id="u2", session_id="s")
    other = await service.get_session(app_name="other", user_id="u1", session_id="s")
    assert u2 is not None
    assert other is not None
    assert (u2.state, u2.events) == ({"app:z": 3}, [])
    assert (other.state, other.events) == ({}, [])
    assert await service.get_session(app_name=APP, user_id="u3", session_id="s") is None


async def test_list_sessions_orders_by_update_and_merges_state(agentmem_store: AgentMemoryStore) -> None:
    """list_sessions gives a user's sessions (every user's with user_id=None), without events,
    with merged state, least recently updated first; other apps are not listed."""
    service = AgentMemorySessionService(agentmem_store)
    s1 = await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"k": 1})
    s2 = await service.create_session(app_name=APP, user_id="u1", session_id="s2")
    await service.create_session(app_name=APP, user_id="u2", session_id="s3", state={"user:n": "b"})
    await service.create_session(app_name="other", user_id="u1", session_id="s4")
    await service.append_event(s2, _event("x", {"user:n": "a"}, timestamp=4_000_000_000.0))
    await service.append_event(s1, _event("y", timestamp=4_000_000_001.0))
    mine = (await service.list_sessions(app_name=APP, user_id="u1")).sessions
    assert [s.id for s in mine] == ["s2", "s1"]
    assert all(s.events == [] for s in mine)
    assert mine[1].state == {"k": 1, "user:n": "a"}
    everyone = (await service.list_sessions(app_name=APP)).sessions
    assert [s.id for s in everyone] == ["s3", "s2", "s1"]
    assert everyone[0].state == {"user:n": "b"}
    assert (await service.list_sessions(app_name=APP, user_id="nobody")).sessions == []


async def test_delete_removes_the_session_and_keeps_scoped_state(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """delete_session removes the session's keys and index entry; user:/app: state stays;
    deleting a missing session is no error."""
    service = AgentMemorySessionService(agentmem_store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await service.append_event(session, _event("x", {"a": 1, "user:b": 2, "app:c": 3}))
    await service.delete_session(app_name=APP, user_id="u1", session_id="s1")
    await service.delete_session(app_name=APP, user_id="u1", session_id="never")
    keys = _keys(agentmem_prefix, "u1", "s1")
    assert await agentmem_redis.exists(keys.state, keys.events, keys.event_ids) == 0
    assert await agentmem_redis.zcard(keys.index) == 0
    assert await service.get_session(app_name=APP, user_id="u1", session_id="s1") is None
    fresh = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    assert fresh.state == {"user:b": 2, "app:c": 3}
    assert fresh.events == []


async def test_concurrent_scoped_state_updates_lose_nothing(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """20 concurrent events from two service instances (two sessions of one user), each setting
    its own user: and app: key: all 20 of each are stored, and all 20 events."""
    services = [AgentMemorySessionService(agentmem_store_factory()) for _ in range(2)]
    sessions = [
        await services[i].create_session(app_name=APP, user_id="u1", session_id=f"s{i}") for i in range(2)
    ]
    await asyncio.gather(
        *(
            services[i % 2].append_event(sessions[i % 2], _event(f"e{i}", {f"user:k{i}": i, f"app:k{i}": i}))
            for i in range(20)
        )
    )
    keys = _keys(agentmem_prefix, "u1", "s0")
    assert await agentmem_redis.hlen(keys.user_state) == 20
    assert await agentmem_redis.hlen(KeySchema(agentmem_prefix).adk_app_state(APP)) == 20
    got = await services[0].get_session(app_name=APP, user_id="u1", session_id="s1")
    assert got is not None
    assert {k: v for k, v in got.state.items() if k.startswith("user:")} == {
        f"user:k{i}": i for i in range(20)
    }
    assert len(got.events) == 10
    assert await agentmem_redis.llen(keys.events) == 10


@pytest.mark.parametrize(
    ("part", "garbage"),
    [("events", b"not json"), ("events", b'{"timestamp": "soon"}'), ("state", b"{broken")],
)
async def test_corrupt_stored_data_raises(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str, part: str, garbage: bytes
) -> None:
    """An event or state value that does not decode raises MemoryCorruptedError from
    get_session and list_sessions instead of a session with a gap."""
    service = AgentMemorySessionService(agentmem_store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"a": 1})
    await service.append_event(session, _event("ok"))
    keys = _keys(agentmem_prefix, "u1", "s1")
    if part == "events":
        await agentmem_redis.rpush(keys.events, garbage)
    else:
        await agentmem_redis.hset(keys.state, "b", garbage)
    with pytest.raises(MemoryCorruptedError):
        await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    if part == "state":
        with pytest.raises(MemoryCorruptedError):
            await service.list_sessions(app_name=APP, user_id="u1")


async def test_session_keys_carry_the_store_ttl(
    agentmem_store: AgentMemoryStore, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """Session keys live the store's ttl (reset by append and by get); user:/app: state has
    no TTL (profile_ttl None)."""
    service = AgentMemorySessionService(agentmem_store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await service.append_event(session, _event("x", {"a": 1, "user:b": 2, "app:c": 3}))
    keys = _keys(agentmem_prefix, "u1", "s1")
    ttl_ms = agentmem_store.config.ttl * 1000
    for key in (keys.state, keys.events, keys.event_ids, keys.index):
        assert ttl_ms - 60_000 < await agentmem_redis.pttl(key) <= ttl_ms
    assert await agentmem_redis.pttl(keys.user_state) == -1
    assert await agentmem_redis.pttl(KeySchema(agentmem_prefix).adk_app_state(APP)) == -1
    await agentmem_redis.pexpire(keys.events, 5_000)
    await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert ttl_ms - 60_000 < await agentmem_redis.pttl(keys.events) <= ttl_ms


async def test_expired_session_is_gone_and_unlisted(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """With ttl=1 s a session is gone a little later: get gives None, append raises
    SessionNotFoundError, and list_sessions drops it from the user's index."""
    store = agentmem_store_factory(ttl=1)
    service = AgentMemorySessionService(store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    keys = _keys(agentmem_prefix, "u1", "s1")
    await agentmem_redis.persist(keys.index)  # as if a newer session kept the index alive
    await asyncio.sleep(1.5)
    assert await service.get_session(app_name=APP, user_id="u1", session_id="s1") is None
    with pytest.raises(SessionNotFoundError):
        await service.append_event(session, _event("late"))
    assert (await service.list_sessions(app_name=APP, user_id="u1")).sessions == []
    assert await agentmem_redis.zcard(keys.index) == 0


async def test_lost_append_reply_is_retried_without_applying_twice(
    agentmem_store_factory: StoreFactory, agentmem_proxy: TcpProxy
) -> None:
    """The server applies an event, the reply is cut: the retry stores it once and the
    in-memory session has it once."""
    store = agentmem_store_factory(url=agentmem_proxy.url)
    service = AgentMemorySessionService(store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await service.append_event(session, _event("w"))  # the script is loaded: the cut hits the event
    agentmem_proxy.cut_next_reply()
    await service.append_event(session, _event("x", {"user:n": 1}))
    assert agentmem_proxy.replies_cut == 1
    assert store.retry_stats.retries >= 1
    assert len(session.events) == 2
    assert _texts(await service.get_session(app_name=APP, user_id="u1", session_id="s1")) == ["w", "x"]


async def test_lost_create_reply_is_retried_without_already_exists(
    agentmem_store_factory: StoreFactory, agentmem_proxy: TcpProxy
) -> None:
    """The server creates the session, the reply is cut: the retry recognises its own create."""
    store = agentmem_store_factory(url=agentmem_proxy.url)
    service = AgentMemorySessionService(store)
    await service.create_session(app_name=APP, user_id="u1", session_id="s0")  # connected, scripts loaded
    agentmem_proxy.cut_next_reply()
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"a": 1})
    assert agentmem_proxy.replies_cut == 1
    assert store.retry_stats.retries >= 1
    assert session.state == {"a": 1}


async def test_same_service_works_after_a_server_restart(
    agentmem_server_factory: Any, agentmem_store_factory: StoreFactory
) -> None:
    """A restart (AOF on) drops every connection: the same service's next calls succeed and
    see what was written before it."""
    server: EmbeddedServer = agentmem_server_factory(persistence=True, appendfsync="always")
    service = AgentMemorySessionService(agentmem_store_factory(url=server.url))
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    await service.append_event(session, _event("before", {"user:n": 1}))
    await asyncio.to_thread(server.restart)
    await service.append_event(session, _event("after", {"user:n": 2}))
    got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert _texts(got) == ["before", "after"]
    assert got is not None
    assert got.state == {"user:n": 2}


async def test_killed_connections_are_survived(
    agentmem_store_factory: StoreFactory, agentmem_redis: Redis, agentmem_prefix: str
) -> None:
    """CLIENT KILL of every store connection before each call: every call succeeds."""
    name = f"{agentmem_prefix}-kill"[-60:]
    service = AgentMemorySessionService(agentmem_store_factory(client_name=name))
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
    assert await kill_connections(agentmem_redis, name) >= 1
    await service.append_event(session, _event("x", {"app:n": 1}))
    assert await kill_connections(agentmem_redis, name) >= 1
    assert _texts(await service.get_session(app_name=APP, user_id="u1", session_id="s1")) == ["x"]
    assert await kill_connections(agentmem_redis, name) >= 1
    assert [s.id for s in (await service.list_sessions(app_name=APP)).sessions] == ["s1"]


async def test_out_of_memory_append_writes_nothing(
    agentmem_store_factory: StoreFactory, agentmem_private_server: EmbeddedServer
) -> None:
    """Past maxmemory (noeviction) append_event and create_session raise MemoryFullError and
    write nothing (no event, no state of any scope); get_session still answers."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    service = AgentMemorySessionService(store)
    session = await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"a": 1})
    admin = Redis.from_url(agentmem_private_server.url)
    try:
        async with memory_pressure(admin, maxmemory=1, policy="noeviction"):
            with pytest.raises(MemoryFullError):
                await service.append_event(session, _event("x", {"a": 2, "user:b": 2, "app:c": 3}))
            with pytest.raises(MemoryFullError):
                await service.create_session(app_name=APP, user_id="u1", session_id="s2")
            got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
            assert got is not None
            assert (got.state, got.events) == ({"a": 1}, [])
        assert session.events == []
        keys = KeySchema(store.config.prefix).adk_session(APP, "u1", "s1")
        assert await admin.exists(keys.events, keys.user_state) == 0
    finally:
        await admin.aclose()


async def test_example_runs_an_agent_whose_memory_carries_over(
    agentmem_server: ServerInfo, agentmem_prefix: str, agentmem_redis: Redis
) -> None:
    """examples/adk_session_service.py: turn 2 greets by name, a new session sees user: state."""
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(EXAMPLES / "adk_session_service.py"), agentmem_server.url, agentmem_prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "turn 2: Hello again, Ada!" in result.stdout
    assert "new session sees user:last_reply = 'Hello again, Ada!'" in result.stdout
    keys = KeySchema(agentmem_prefix).adk_session("support", "ada", "call-1")
    assert await agentmem_redis.llen(keys.events) == 4


async def test_look_alike_ids_never_share_keys_or_listings(agentmem_store: AgentMemoryStore) -> None:
    """Ids with ':', '{', '}' and glob characters are kept apart: ("a:b", "c") is not
    ("a", "b:c"), and listing app "a" does not list the users of app "a*"."""
    service = AgentMemorySessionService(agentmem_store)
    await service.create_session(app_name="a:b", user_id="c", session_id="s", state={"user:who": 1})
    await service.create_session(app_name="a", user_id="b:c", session_id="s", state={"user:who": 2})
    await service.create_session(app_name="a*", user_id="{x}", session_id="s", state={"user:who": 3})
    await service.create_session(app_name="a", user_id="{x}", session_id="s?", state={"user:who": 4})
    listed = {
        (s.user_id, s.id, s.state["user:who"]) for s in (await service.list_sessions(app_name="a")).sessions
    }
    assert listed == {("b:c", "s", 2), ("{x}", "s?", 4)}
    star = (await service.list_sessions(app_name="a*")).sessions
    assert [(s.user_id, s.state) for s in star] == [("{x}", {"user:who": 3})]
    schema = agentmem_store.engine.keys
    assert schema.adk_session("a:b", "c", "s").state != schema.adk_session("a", "b:c", "s").state
    assert schema.adk_user_of_index("a", schema.adk_user("a", "b:c")[0]) == "b:c"
    assert schema.adk_user_of_index("a", schema.adk_user("a*", "b")[0]) is None


async def test_create_returns_the_app_state_it_wrote_on_a_fresh_server(
    agentmem_store_factory: StoreFactory, agentmem_private_server: EmbeddedServer
) -> None:
    """On a server that knows the store's read script but not the create script yet, the
    session create_session returns still holds the app: state it wrote (a read queued in
    the create's own operation would run before the create once the create is resent
    after NOSCRIPT)."""
    store = agentmem_store_factory(url=agentmem_private_server.url)
    await store.recall("someone")  # loads READ_HASH only
    service = AgentMemorySessionService(store)
    session = await service.create_session(app_name=APP, user_id="u1", state={"app:greeting": "hi", "a": 1})
    assert session.state == {"app:greeting": "hi", "a": 1}


async def test_listing_every_users_sessions_on_a_cluster_reads_every_primary(
    agentmem_cluster_store: AgentMemoryStore,
) -> None:
    """list_sessions(user_id=None) finds the users on every primary (their index keys hash
    to different nodes), not only those of the node a keyless SCAN would reach."""
    service = AgentMemorySessionService(agentmem_cluster_store)
    users = [f"user-{i}" for i in range(24)]
    for user in users:
        await service.create_session(app_name=APP, user_id=user, session_id="s1")
    transport: Any = agentmem_cluster_store.engine.transport
    assert transport is not None
    nodes = {
        transport.slots.node_for(key_slot(agentmem_cluster_store.engine.keys.adk_user(APP, user)[0].encode()))
        for user in users
    }
    assert len(nodes) == 3
    everyone = (await service.list_sessions(app_name=APP)).sessions
    assert sorted(session.user_id for session in everyone) == sorted(users)


@pytest.mark.cluster
async def test_app_state_on_a_redis_cluster(
    agentmem_cluster_store: AgentMemoryStore, agentmem_cluster: list[str], agentmem_prefix: str
) -> None:
    """On a Redis Cluster the app: state is in another slot than the session: create and
    append_event write it in a script of its own after the session's (one script over both
    is CROSSSLOT there). The event and every scope's state are stored; the same event
    appended again stores nothing twice and leaves the app: state as it is."""
    from redis.asyncio.cluster import RedisCluster
    from redis.crc import key_slot

    service = AgentMemorySessionService(agentmem_cluster_store)
    schema = KeySchema(agentmem_prefix)
    app_key = schema.adk_app_state(APP)
    keys = _keys(agentmem_prefix, "u1", "s1")
    assert key_slot(app_key.encode()) != key_slot(keys.state.encode())  # the case at hand
    session = await service.create_session(
        app_name=APP, user_id="u1", session_id="s1", state={"a": 1, "user:b": 2, "app:c": 3}
    )
    assert session.state == {"a": 1, "user:b": 2, "app:c": 3}
    event = _event("hello", {"a": 2, "user:b": 3, "app:c": 4, "app:d": [1, 2]})
    await service.append_event(session, event)
    await service.append_event(session, event)  # a retry of the same event
    got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
    assert got is not None
    assert got.state == {"a": 2, "user:b": 3, "app:c": 4, "app:d": [1, 2]}
    assert _texts(got) == ["hello"]
    client = RedisCluster.from_url(agentmem_cluster[0])
    try:
        stored: dict[Any, Any] = await client.hgetall(app_key)
        assert stored == {b"c": b"4", b"d": b"[1,2]"}
        assert await client.llen(keys.events) == 1
        assert await client.pttl(app_key) == -1  # profile_ttl unset: app: state never expires
    finally:
        await client.aclose()
