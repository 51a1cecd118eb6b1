"""agentmem as the session service of a Google ADK agent.

``AgentMemorySessionService(store)`` is a ``google.adk.sessions.BaseSessionService`` over
an existing :class:`~agentmem.AgentMemoryStore`: it shares the store's pool,
auto-pipeliner, retries, circuit breaker and typed errors.

* ``append_event`` is one Lua script (:data:`~agentmem.integrations.adk_scripts.ADK_APPEND`):
  the event, its session-state delta, its ``user:`` delta, its ``app:`` delta and the
  session's update time are written together or not at all (on a Redis Cluster the
  ``app:`` delta follows in a second script: see "Cluster slots"). State is merged per key on
  the server (``HSET``), never read-modified-written by the client, so concurrent events
  updating different keys of the same ``user:``/``app:`` state lose nothing. ``temp:`` keys
  are applied to the in-memory session and never stored, as in ADK. An event whose id is
  already stored is not applied again (a retry after a lost reply is safe).
* ``get_session`` reads the session, its events (``GetSessionConfig.num_recent_events`` is
  applied on the server, ``after_timestamp`` on the result), the user's and the app's
  state in one round trip. A stored event or state value that does not decode raises
  :class:`~agentmem.MemoryCorruptedError`, never a session with a gap.
* Session keys (state, events) live the store's ``ttl``, reset by every write and, with
  ``sliding_ttl``, by ``get_session``; ``user:`` and ``app:`` state live ``profile_ttl``
  (forever by default).
* State values must be JSON: anything pydantic cannot turn into JSON raises
  :class:`~agentmem.SerializationError` before anything is written (ADK's own services
  store a ``str()`` of it with a warning).

* ``list_sessions(user_id=None)`` finds the app's users with ``SCAN`` (a walk of the
  keyspace); with a ``user_id`` it reads that user's session index only. An index entry
  whose session expired is dropped when a listing meets it.
* Not journaled: with ``fallback="journal"`` every call here goes straight to Redis and
  raises :class:`~agentmem.MemoryUnavailableError` during an outage.
* Not done: ADK's ``StaleSessionError`` (a session object superseded by another writer) is
  never raised; two writers' events are both stored, their deltas merged per key.

Cluster slots: a session's keys, the user's ``user:`` state and the user's session index
share one hash tag per (app, user). The ``app:`` state is shared by all users of the app
and has its own tag. On a single server or a Sentinel-managed primary an event (or a
create) that writes ``app:`` keys runs one script over both, atomic. On a Redis Cluster,
which would refuse that with ``CROSSSLOT``, the event's script runs first and the ``app:``
delta in a second script on the app's slot: each atomic, not the pair. If the second one
fails (the call raises), the event is stored without its ``app:`` delta; calling
``append_event`` again with the same event stores nothing twice and applies the delta
(also when the first event script's reply was lost). Events without ``app:`` keys touch
one slot only.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

try:
    from google.adk.errors.already_exists_error import AlreadyExistsError
    from google.adk.errors.session_not_found_error import SessionNotFoundError
    from google.adk.events.event import Event
    from google.adk.sessions.base_session_service import (
        BaseSessionService,
        GetSessionConfig,
        ListSessionsResponse,
    )
    from google.adk.sessions.session import Session
    from google.adk.sessions.state import State
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "agentmem.integrations.adk needs Google ADK: pip install 'agentmem-redis[adk]'"
    ) from exc
from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, to_jsonable_python

from agentmem.calls import Call
from agentmem.codec import decode_fields, decode_messages, encode_fields, encode_messages
from agentmem.errors import InvalidArgumentError, MemoryCorruptedError, SerializationError
from agentmem.integrations.adk_scripts import (
    ADK_APP_STATE,
    ADK_APPEND,
    ADK_CREATE,
    ADK_DELETE,
    ADK_PRUNE,
    ADK_READ,
)
from agentmem.keys import AdkSessionKeys
from agentmem.scripts import MAX_EXACT, READ_HASH
from agentmem.store import AgentMemoryStore

__all__ = ["AgentMemorySessionService"]

#: Keys per SCAN page when listing every user's sessions of an app.
SCAN_COUNT = 1000


def _split_state(state: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(session, user, app) deltas of an ADK state dict; ``temp:`` keys are dropped."""
    session: dict[str, Any] = {}
    user: dict[str, Any] = {}
    app: dict[str, Any] = {}
    for key, value in (state or {}).items():
        if key.startswith(State.APP_PREFIX):
            app[key.removeprefix(State.APP_PREFIX)] = value
        elif key.startswith(State.USER_PREFIX):
            user[key.removeprefix(State.USER_PREFIX)] = value
        elif not key.startswith(State.TEMP_PREFIX):
            session[key] = value
    return session, user, app


def _jsonable(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    try:
        converted = to_jsonable_python(dict(values))
    except PydanticSerializationError as exc:
        raise SerializationError(f"{what} holds a value that is not JSON: {exc}") from exc
    if not isinstance(converted, dict):  # pragma: no cover - a dict stays a dict
        raise SerializationError(f"{what} must be a dict")
    return converted


def _timestamp(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(f"an event timestamp must be a finite number, got {value!r}")
    return repr(float(value))


def _decode_events(raw: Sequence[bytes], session_id: str) -> list[Event]:
    events: list[Event] = []
    for index, data in enumerate(decode_messages(raw)):
        try:
            events.append(Event.model_validate(data))
        except ValidationError as exc:
            raise MemoryCorruptedError(
                f"event {index} of session {session_id!r} is not an ADK event: {exc}"
            ) from exc
    return events


def _after(events: list[Event], after_timestamp: float) -> list[Event]:
    """The events from the first one at or after ``after_timestamp`` that follows the
    last one before it, as ADK's own services filter."""
    index = len(events) - 1
    while index >= 0 and events[index].timestamp >= after_timestamp:
        index -= 1
    return events[index + 1 :]


class AgentMemorySessionService(BaseSessionService):
    """A Google ADK session service whose sessions, events and state live in agentmem.

    The store is not owned: close it yourself (``await store.aclose()``).
    """

    def __init__(self, store: AgentMemoryStore) -> None:
        if not isinstance(store, AgentMemoryStore):
            raise TypeError(f"store must be an AgentMemoryStore, not {type(store).__name__}")
        self._store = store

    @property
    def store(self) -> AgentMemoryStore:
        return self._store

    # -- encoding --------------------------------------------------------------------

    def _encode_deltas(self, state: Mapping[str, Any] | None, what: str) -> tuple[list[bytes], ...]:
        limit = self._store.config.max_value_bytes
        session, user, app = _split_state(state)
        return (
            encode_fields(_jsonable(session, what), limit=limit, what=what),
            encode_fields(_jsonable(user, what), limit=limit, what=f"{what} (user:)"),
            encode_fields(_jsonable(app, what), limit=limit, what=f"{what} (app:)"),
        )

    async def _session_script_scope(
        self, app_name: str, keys: AdkSessionKeys, app_items: list[bytes]
    ) -> tuple[tuple[str, ...], list[bytes]]:
        """The keys and the ``app:`` items of the session's own script: with the app's state
        key and items, unless they must go in a script of their own after it (then ``[]``):
        on a Redis Cluster, where the app's state is in another slot (one script over both
        would be refused with ``CROSSSLOT``)."""
        if not app_items:
            return keys.all(), []
        store = self._store
        if await store.engine.topology() == "cluster":
            return keys.all(), []
        return (*keys.all(), store.engine.keys.adk_app_state(app_name)), app_items

    async def _write_app_state(self, operation: str, app_name: str, app_items: Sequence[bytes]) -> None:
        store = self._store
        key = store.engine.keys.adk_app_state(app_name)
        await store.engine.script(
            operation, ADK_APP_STATE, (key,), (store.engine.ttl_ms("profile"), *app_items)
        )

    def _keys(self, app_name: str, user_id: str, session_id: str) -> AdkSessionKeys:
        return self._store.engine.keys.adk_session(app_name, user_id, session_id)

    def _read_calls(self, app_name: str, keys: AdkSessionKeys, session_id: str, events: int) -> list[Call]:
        store = self._store
        return [
            Call(ADK_READ, keys.all(), (store.engine.ttl_ms("read"), session_id, events)),
            Call(READ_HASH, (store.engine.keys.adk_app_state(app_name),), (0,)),
        ]

    def _session_from(
        self,
        app_name: str,
        user_id: str,
        session_id: str,
        reply: Sequence[Any],
        app_state: Sequence[bytes],
    ) -> Session | None:
        if int(reply[0]) == 0:
            return None
        _, raw_state, raw_events, raw_user, updated = reply
        state = decode_fields(raw_state, what=f"state of session {session_id!r}")
        for key, value in decode_fields(app_state, what=f"app: state of {app_name!r}").items():
            state[State.APP_PREFIX + key] = value
        for key, value in decode_fields(raw_user, what=f"user: state of {user_id!r}").items():
            state[State.USER_PREFIX + key] = value
        return Session(
            id=session_id,
            app_name=app_name,
            user_id=user_id,
            state=state,
            events=_decode_events(raw_events, session_id),
            last_update_time=float(updated),
        )

    # -- BaseSessionService ------------------------------------------------------------

    async def create_session(
        self,
        *,
        app_name: str,
        user_id: str,
        state: dict[str, Any] | None = None,
        session_id: str | None = None,
    ) -> Session:
        """Create a session (``AlreadyExistsError`` if its id is taken), writing its initial
        session, ``user:`` and ``app:`` state in the same script."""
        session_id = (session_id.strip() if session_id else None) or uuid.uuid4().hex
        keys = self._keys(app_name, user_id, session_id)
        session_items, user_items, app_items = self._encode_deltas(state, "session state")
        store = self._store
        script_keys, together = await self._session_script_scope(app_name, keys, app_items)
        args = (
            store.engine.ttl_ms("session"),
            store.engine.ttl_ms("profile"),
            uuid.uuid4().hex,
            session_id,
            repr(time.time()),
            len(session_items),
            len(user_items),
            *session_items,
            *user_items,
            *together,
        )
        created = await store.engine.script("adk_create_session", ADK_CREATE, script_keys, args)
        if int(created) == 0:
            raise AlreadyExistsError(f"Session with id {session_id} already exists.")
        if app_items and not together:
            await self._write_app_state("adk_create_session", app_name, app_items)
        # A second round trip, not a read queued behind the create in one operation: calls
        # of one operation can run out of order when some of them must be resent after
        # NOSCRIPT, so a read there could miss the create.
        read, app_state = await store.engine.send(
            "adk_create_session", self._read_calls(app_name, keys, session_id, 0)
        )
        session = self._session_from(app_name, user_id, session_id, read, app_state)
        if session is None:  # deleted or expired in between
            raise SessionNotFoundError(f"Session {session_id} was deleted right after its creation.")
        return session

    async def get_session(
        self,
        *,
        app_name: str,
        user_id: str,
        session_id: str,
        config: GetSessionConfig | None = None,
    ) -> Session | None:
        """The session with its events and merged ``app:``/``user:`` state, or ``None``."""
        session_id = session_id.strip() if session_id else session_id
        keys = self._keys(app_name, user_id, session_id)
        count = MAX_EXACT
        if config is not None and config.num_recent_events is not None:
            count = config.num_recent_events
        read, app_state = await self._store.engine.send(
            "adk_get_session", self._read_calls(app_name, keys, session_id, count)
        )
        session = self._session_from(app_name, user_id, session_id, read, app_state)
        if session is not None and config is not None and config.after_timestamp is not None:
            session.events = _after(session.events, config.after_timestamp)
        return session

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """The sessions of a user (of every user when ``user_id`` is ``None``), without
        events, with merged state, oldest update first."""
        users = [user_id] if user_id is not None else await self._users_with_sessions(app_name)
        sessions: list[Session] = []
        for user in users:
            sessions += await self._list_user_sessions(app_name, user)
        sessions.sort(key=lambda s: (s.last_update_time, s.user_id, s.id))
        return ListSessionsResponse(sessions=sessions)

    async def _users_with_sessions(self, app_name: str) -> list[str]:
        schema = self._store.engine.keys
        pattern = schema.adk_match_indexes(app_name)
        users: set[str] = set()
        for key in await self._store.engine.scan("adk_list_sessions", pattern, count=SCAN_COUNT):
            user = schema.adk_user_of_index(app_name, key)
            if user is not None:
                users.add(user)
        return sorted(users)

    async def _list_user_sessions(self, app_name: str, user_id: str) -> list[Session]:
        store = self._store
        index, _ = store.engine.keys.adk_user(app_name, user_id)
        (flat,) = await store.engine.send(
            "adk_list_sessions", (Call(None, (index,), (0, -1), command="ZRANGE"),)
        )
        ids = [member.decode("utf-8") for member in flat]
        if not ids:
            return []
        calls = [Call(READ_HASH, (store.engine.keys.adk_app_state(app_name),), (0,))]
        calls += [Call(ADK_READ, self._keys(app_name, user_id, sid).all(), (0, sid, 0)) for sid in ids]
        app_state, *reads = await store.engine.send("adk_list_sessions", calls)
        sessions: list[Session] = []
        gone: list[Call] = []
        for sid, read in zip(ids, reads, strict=True):
            session = self._session_from(app_name, user_id, sid, read, app_state)
            if session is None:  # expired with its TTL; its index entry outlived it
                gone.append(Call(ADK_PRUNE, (index, self._keys(app_name, user_id, sid).state), (sid,)))
            else:
                sessions.append(session)
        if gone:
            await store.engine.send("adk_list_sessions", gone)
        return sessions

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        """Delete the session and its events; its ``user:``/``app:`` state stays."""
        session_id = session_id.strip() if session_id else session_id
        keys = self._keys(app_name, user_id, session_id)
        await self._store.engine.script("adk_delete_session", ADK_DELETE, keys.all()[:4], (session_id,))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        """The ``user:`` state of (app, user), keys without the prefix (``{}`` when none)."""
        _, user_state = self._store.engine.keys.adk_user(app_name, user_id)
        raw = await self._store.engine.script("adk_get_user_state", READ_HASH, (user_state,), (0,))
        return decode_fields(raw, what=f"user: state of {user_id!r}")

    async def append_event(self, session: Session, event: Event) -> Event:
        """Store the event with its state deltas in one script, then apply it to ``session``."""
        if event.partial:
            return event
        if not event.id:
            raise InvalidArgumentError("an event needs an id to be stored")
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        keys = self._keys(session.app_name, session.user_id, session.id)
        delta = event.actions.state_delta if event.actions else None
        session_items, user_items, app_items = self._encode_deltas(delta, "event state delta")
        data = event.model_dump(mode="json", exclude_none=True, by_alias=True)
        (encoded_event,) = encode_messages([data], limit=self._store.config.max_value_bytes)
        store = self._store
        script_keys, together = await self._session_script_scope(session.app_name, keys, app_items)
        args = (
            store.engine.ttl_ms("session"),
            store.engine.ttl_ms("profile"),
            session.id,
            event.id,
            _timestamp(event.timestamp),
            encoded_event,
            len(session_items),
            len(user_items),
            *session_items,
            *user_items,
            *together,
        )
        applied = int(await store.engine.script("adk_append_event", ADK_APPEND, script_keys, args))
        if applied < 0:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        if (
            app_items and not together
        ):  # also when the event was already there: its first try may have stopped here
            await self._write_app_state("adk_append_event", session.app_name, app_items)
        if not any(stored.id == event.id for stored in session.events):
            self._commit_event_to_session(session, event)
        session.last_update_time = event.timestamp
        return event
