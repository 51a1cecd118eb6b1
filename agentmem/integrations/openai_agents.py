"""agentmem as the session memory of an OpenAI Agents SDK agent.

``AgentMemorySession(session_id, store)`` is an ``agents.memory.SessionABC`` over an
existing :class:`~agentmem.AgentMemoryStore`: it shares the store's pool, auto-pipeliner,
retries, circuit breaker and typed errors. The session's items *are* the store session's
history, so ``store.load_turn(session_id)`` sees the same conversation, ``max_history``
bounds it (the oldest items leave first) and ``ttl`` expires it.

* ``add_items`` is the store's ``append_messages``: one atomic script, never applied twice
  by a retry.
* ``get_items(limit)`` returns the newest ``limit`` items (all when ``None``), oldest first.
  An item that does not decode raises :class:`~agentmem.MemoryCorruptedError`; it is never
  skipped.
* ``pop_item`` is one script (:data:`POP_LAST`): it removes the newest item and returns it,
  so two concurrent pops never return the same item, and a retry after a lost reply gets
  the item the first attempt removed instead of removing a second one. A newest item that
  does not decode is left in place and raises ``MemoryCorruptedError``. Under
  ``wait_replicas``, a pop the replicas did not acknowledge raises
  :class:`~agentmem.ReplicationTimeoutError` whose ``.reply`` is the popped item, and the
  next ``pop_item`` of the session object returns that item again instead of popping another.
* ``clear_session`` is the store's ``delete_session`` (history and context).

With ``fallback="journal"`` ``add_items``, ``get_items`` and ``clear_session`` behave as the
journaled store's ``append_messages``, ``load_history`` and ``delete_session`` (an add
during an outage is kept and replayed). ``pop_item`` first replays the journal and raises
:class:`~agentmem.MemoryUnavailableError`, popping nothing, while an add of the session is
still journaled: the newest item is not known until it is in Redis.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, cast

try:
    from agents.memory import SessionABC
    from agents.memory.session_settings import (
        SessionSettings,
        coerce_session_settings,
        resolve_session_limit,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "agentmem.integrations.openai_agents needs the OpenAI Agents SDK: "
        "pip install 'agentmem-redis[openai-agents]'"
    ) from exc

from agentmem.codec import decode_messages
from agentmem.errors import (
    InvalidArgumentError,
    MemoryCorruptedError,
    MemoryUnavailableError,
    ReplicationTimeoutError,
)
from agentmem.journaled import JournaledStore
from agentmem.scripts import MAX_EXACT, Script, load
from agentmem.store import AgentMemoryStore

if TYPE_CHECKING:
    from agents.items import TResponseInputItem

__all__ = ["POP_LAST", "AgentMemorySession"]

#: Pops a session's newest item, once per operation id (``lua/openai_agents/pop_last.lua`` under
#: ``agentmem/integrations``: what it takes and returns is at the top of the file).
POP_LAST = Script(
    "openai_agents_pop", load("openai_agents/pop_last", package="agentmem.integrations"), flags=""
)


class AgentMemorySession(SessionABC):
    """An OpenAI Agents SDK session whose items live in an agentmem store session.

    ``session_settings`` (a ``SessionSettings`` or a dict such as ``{"limit": 50}``) gives
    the default ``limit`` of :meth:`get_items`, as for the SDK's own sessions. The store
    is not owned: close it yourself (``await store.aclose()``).
    """

    def __init__(
        self,
        session_id: str,
        store: AgentMemoryStore,
        *,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(store, AgentMemoryStore):
            raise TypeError(f"store must be an AgentMemoryStore, not {type(store).__name__}")
        self._keys = store.engine.keys.session(session_id)  # validates the id: InvalidKeyError
        self.session_id = session_id
        self.session_settings = (
            coerce_session_settings(session_settings) if session_settings is not None else SessionSettings()
        )
        self._store = store
        #: The operation id of a pop the primary applied but too few replicas acknowledged:
        #: the next pop_item sends it again, and so returns that item instead of popping another.
        self._unacknowledged_pop: str | None = None

    @property
    def store(self) -> AgentMemoryStore:
        return self._store

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The newest ``limit`` items, oldest first; all when ``limit`` (and the settings'
        ``limit``) is ``None``; ``[]`` for ``limit=0``."""
        resolved = resolve_session_limit(limit, self.session_settings)
        if resolved is None:
            last = MAX_EXACT
        elif isinstance(resolved, bool) or not isinstance(resolved, int) or resolved < 0:
            raise InvalidArgumentError(f"limit must be None or an int >= 0, got {resolved!r}")
        elif resolved == 0:
            return []
        else:
            last = min(resolved, MAX_EXACT)
        items = await self._store.load_history(self.session_id, last=last)
        return cast("list[TResponseInputItem]", items)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` in order, atomically (all or none), resetting the session TTL."""
        if isinstance(items, list) and not items:
            return
        await self._store.append_messages(self.session_id, cast("list[dict[str, Any]]", items))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the newest item; ``None`` when the session has none."""
        store = self._store
        if isinstance(store, JournaledStore):
            await self._flush_appends(store)
        operation_id, self._unacknowledged_pop = self._unacknowledged_pop or uuid.uuid4().hex, None
        args = (store.engine.ttl_ms("session"), operation_id, store.engine.append_window_ms)
        try:
            keys = self._keys
            script_keys = (keys.context, keys.base, keys.history, keys.pops, keys.deleted)
            reply = await store.engine.script("pop_item", POP_LAST, script_keys, args)
        except ReplicationTimeoutError as exc:
            popped = exc.reply
            if not (isinstance(popped, list) and popped and int(popped[0]) == 1):
                raise
            self._unacknowledged_pop = operation_id
            (item,) = decode_messages([popped[1]])
            raise ReplicationTimeoutError(
                f"pop_item: {exc}; the popped item is this error's .reply, and pop_item() again on "
                f"this session returns the same item (within {store.engine.append_window_ms // 1000} s) "
                "instead of popping another",
                replicas=exc.replicas,
                reply=item,
            ) from exc
        finally:
            if isinstance(store, JournaledStore):
                store.forget_local_history(self.session_id)  # what it knew may hold the popped item
        code = int(reply[0])
        if code == 0:
            return None
        if code == 2:
            raise MemoryCorruptedError(
                f"the newest item of session {self.session_id!r} is not a JSON object; "
                f"it was left in place: {bytes(reply[1])[:80]!r}"
            )
        (item,) = decode_messages([reply[1]])
        return cast("TResponseInputItem", item)

    async def _flush_appends(self, store: JournaledStore) -> None:
        """The newest item is only known once every journaled append of the session is in
        Redis: pop nothing while one is still pending."""
        if ("append", self.session_id) in await store.flush_journal():
            raise MemoryUnavailableError(
                f"pop_item: appends to session {self.session_id!r} are still journaled (Redis is "
                "unreachable), so its newest item is not known; nothing was popped"
            )

    async def clear_session(self) -> None:
        """Delete the session's items (and the store session's context)."""
        await self._store.delete_session(self.session_id)
