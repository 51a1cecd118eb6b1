"""``fallback="journal"``: a layer over :class:`~agentmem.AgentMemoryStore` that keeps
writes through an outage in an in-process journal and writes them back after it.

:class:`JournaledStore` subclasses the core store and wraps its public calls; the core
knows nothing of it. The rules:

* **Only outages are journaled.** A write that meets :class:`~agentmem.MemoryUnavailableError`
  is kept and acknowledged; any other error reaches the caller as without a journal.
* **The journal is replayed, in order, before every call** while it holds entries. An entry
  Redis refuses for a reason that is not an outage (``WRONGTYPE``, ``MemoryFullError``...)
  is removed, logged as an error and listed in :attr:`JournaledStore.journal_dropped`, so it
  never blocks later writes. A replay that reached the primary but not ``wait_replicas``
  replicas (:class:`~agentmem.ReplicationTimeoutError`, or a refused ``WAIT``) is applied,
  so it counts as written back, never as dropped. While a replay meets an outage, new writes queue behind it,
  so a session's writes reach Redis in the order they were made.
* **A replay never undoes a newer write.** It carries the write's original version (and
  an append its operation id): fields written later, a later ``save_context`` (replace)
  and a later ``delete_session``/``forget_user`` (tombstone) all win; see ``WRITE_CONTEXT``,
  ``WRITE_FACTS``, ``REPLAY_APPEND`` and ``DELETE`` in :mod:`agentmem.scripts`.
* **Reads while Redis is down answer only from what this process knows**: the last state
  it read from Redis or wrote there itself, with the journal merged over it. A session or
  user it does not know (for ``load_history``: not at least the ``last`` messages asked
  for) raises :class:`~agentmem.MemoryUnavailableError`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from redis.asyncio import Redis

from agentmem.config import StoreConfig
from agentmem.engine import append_window
from agentmem.errors import (
    AgentMemoryError,
    MemoryPermissionError,
    MemoryUnavailableError,
    ReplicationTimeoutError,
    StoreClosedError,
    UnflushedJournalError,
)
from agentmem.health import Health
from agentmem.journal import DroppedWrite, Journal, JournalEntry, KnownHistory
from agentmem.store import AgentMemoryStore, Turn
from agentmem.writes import (
    apply,
    prepare_append,
    prepare_remember,
    prepare_save,
    prepare_update,
    write_version,
)

__all__ = ["JournaledStore"]

log = logging.getLogger("agentmem")

#: ``append_messages`` returns this when it journaled the append and this process does
#: not know the session's whole history, so it cannot know the new length.
UNKNOWN_LENGTH = -1


class JournaledStore(AgentMemoryStore):
    """An :class:`~agentmem.AgentMemoryStore` whose writes survive an outage in process memory.

    Made by ``JournaledStore.from_url(url, **options)`` or ``JournaledStore(client,
    **options)`` (or ``agentmem.open_store(..., fallback="journal")``); same calls and
    errors as the core store, plus :attr:`journal_backlog`, :attr:`journal_dropped` and
    :meth:`flush_journal`.
    """

    fallback: ClassVar[str] = "journal"

    def __init__(self, client: Redis, *, config: StoreConfig | None = None, **options: Any) -> None:
        super().__init__(client, config=config, **options)
        self._journal = Journal(
            max_targets=self.config.journal_max_sessions, max_bytes=self.config.journal_max_bytes
        )
        self._known = self._journal.known
        self.engine.journal_backlog = lambda: len(self._journal)
        self._replay_lock = asyncio.Lock()
        self._closing = False
        #: Journaled writes Redis refused on replay (not for an outage): removed from the
        #: journal, never written. Remove what you have handled; ``aclose()`` raises
        #: :class:`~agentmem.UnflushedJournalError` naming any still listed.
        self.journal_dropped: list[DroppedWrite] = []
        #: Entries written back to Redis, and entries a newer replace/delete made moot.
        self.replayed = 0
        self.superseded = 0

    @classmethod
    def _configure(cls, config: StoreConfig) -> StoreConfig:
        """Always ``fallback="journal"``, whatever the options said."""
        return config if config.fallback == cls.fallback else dataclasses.replace(config, fallback="journal")

    @classmethod
    def _append_window(cls, config: StoreConfig) -> float | None:
        """A journaled append is replayed after the outage, however long it lasted, with the
        operation id of an attempt the server may have applied: keep append ids for the
        session's whole TTL, not only for the retry window."""
        return max(append_window(config), config.ttl)

    # -- journal state -----------------------------------------------------------------

    @property
    def journal_backlog(self) -> int:
        """Writes kept locally that Redis has not received yet."""
        return len(self._journal)

    def forget_local_history(self, session_id: str) -> None:
        """Forget what this process knows of the session's history (an adapter changed it
        in Redis behind the store's back, e.g. popped an item): later reads while Redis is
        unreachable raise instead of answering from it."""
        self._known.drop(("hist", session_id))

    async def flush_journal(self) -> list[tuple[str, str]]:
        """Replay the journal now; return ``(kind, id)`` of every write still pending.

        While the breaker is open it probes the server first, so a flush as the network
        returns replays at once instead of waiting for the breaker's next probe."""
        self._refuse_if_closing()
        if len(self._journal) and self.breaker.is_open:
            await self.breaker.probe_now()
        await self._replay_pending()
        return self._journal.pending()

    async def aclose(self) -> None:
        """Write the journal back, then release the connections; afterwards every call
        raises :class:`~agentmem.StoreClosedError`.

        Raises :class:`~agentmem.UnflushedJournalError` when writes are lost: ``.pending``
        could not be written back (Redis still unreachable), ``.dropped`` were refused by
        Redis on replay and are still listed in :attr:`journal_dropped`.
        """
        if self._closing:
            return
        self._closing = True
        try:
            await self._replay_pending()
        finally:
            await super().aclose()
        pending = self._journal.pending()
        dropped: list[tuple[str, str]] = [(d.kind, d.target) for d in self.journal_dropped]
        if pending or dropped:
            log.error(
                "agentmem: closing with journaled writes Redis never received: pending %s, dropped %s",
                pending,
                dropped,
            )
            raise UnflushedJournalError(
                f"{len(pending) + len(dropped)} journaled writes never reached Redis and are lost: "
                f"pending (Redis unreachable) {pending}, dropped (refused on replay) {dropped}",
                pending,
                dropped,
            )

    async def health(self) -> Health:
        self._refuse_if_closing()
        return dataclasses.replace(await super().health(), journal_backlog=len(self._journal))

    def _refuse_if_closing(self) -> None:
        if self._closing:
            raise StoreClosedError("the store was closed by aclose(); it sends and journals nothing")

    # -- writes ------------------------------------------------------------------------

    async def save_context(self, session_id: str, context: Mapping[str, Any]) -> None:
        self._refuse_if_closing()
        write = prepare_save(self.engine, session_id, context)
        await self._send_or_keep("save_context", JournalEntry(write, fields=dict(context)))

    async def update_context(self, session_id: str, fields: Mapping[str, Any]) -> None:
        self._refuse_if_closing()
        write = prepare_update(self.engine, session_id, fields)
        await self._send_or_keep("update_context", JournalEntry(write, fields=dict(fields)))

    async def remember(self, user_id: str, facts: Mapping[str, Any]) -> None:
        self._refuse_if_closing()
        write = prepare_remember(self.engine, user_id, facts)
        await self._send_or_keep("remember", JournalEntry(write, fields=dict(facts)))

    async def append_messages(self, session_id: str, messages: Iterable[Mapping[str, Any]]) -> int:
        """As the core store; when the append was journaled, the length of the history
        this process knows in full, or ``-1`` when it knows only part of it (or none)."""
        self._refuse_if_closing()
        write, batch = prepare_append(self.engine, session_id, messages)
        entry = JournalEntry(write, messages=[dict(m) for m in batch])
        sent, length = await self._send_or_keep("append_messages", entry)
        if sent and length is not None:
            return length
        history = self._local_history(session_id)
        return len(history.messages) if history is not None and history.complete else UNKNOWN_LENGTH

    async def _send_or_keep(self, operation: str, entry: JournalEntry) -> tuple[bool, int | None]:
        """``(True, result)`` when Redis took the write, ``(False, None)`` when it was journaled
        (one observed operation: its span says ``agentmem.journaled``)."""
        async with self.engine.observe(operation) as scope:
            sent, result = await self._write_or_keep(operation, entry)
            scope.annotate(**{"agentmem.journaled": not sent})
        return sent, result

    async def _write_or_keep(self, operation: str, entry: JournalEntry) -> tuple[bool, int | None]:
        if len(self._journal) and not await self._replay():
            # The replay just met an outage: keep this write behind the older ones.
            self._keep(operation, entry, None)
            return False, None
        try:
            result = await self._send_entry(operation, entry, replay=False)
        except MemoryUnavailableError as exc:
            self._keep(operation, entry, exc)
            return False, None
        self._absorb(entry, result)
        return True, result

    async def _send_entry(self, operation: str, entry: JournalEntry, *, replay: bool) -> int | None:
        """Send one write as the core store does: the length for an append, 1 for another
        write; ``None`` when a replay was superseded by a newer replace or delete."""
        return await apply(self.engine, operation, entry.write, replay=replay)

    def _keep(self, operation: str, entry: JournalEntry, cause: MemoryUnavailableError | None) -> None:
        if self._closing:  # a call that began before aclose(): nothing would ever flush it
            if cause is not None:
                raise cause
            raise StoreClosedError("the store was closed by aclose() while this write waited; not kept")
        self._journal.add(entry, cause=cause)  # raises when a bound would be passed
        log.warning(
            "agentmem %s: Redis unavailable, journaled locally (backlog %d entries, %d bytes)",
            operation,
            len(self._journal),
            self._journal.bytes,
        )

    # -- replay ------------------------------------------------------------------------

    async def _replay_pending(self) -> None:
        if len(self._journal):
            await self._replay()

    async def _replay(self) -> bool:
        """Write entries back in order; ``True`` when the journal is empty, ``False`` when
        an outage stopped it (the entry stays at the head)."""
        async with self._replay_lock:
            while (entry := self._journal.first()) is not None:
                try:
                    result = await self._send_entry(f"replay {entry.kind}", entry, replay=True)
                except (MemoryUnavailableError, StoreClosedError) as exc:
                    log.warning(
                        "agentmem journal: replay of %s %r failed, kept (%d pending): %s",
                        entry.kind,
                        entry.target,
                        len(self._journal),
                        exc,
                    )
                    return False
                except (ReplicationTimeoutError, MemoryPermissionError) as exc:
                    if isinstance(exc, MemoryPermissionError) and not exc.applied:
                        self._drop(entry, exc)
                        continue
                    # The primary applied it (WAIT comes after the write): written back, not
                    # lost; what it left on the server is not known for certain (a newer write
                    # may have superseded it), so this process forgets what it knew.
                    self._journal.pop_first()
                    self.replayed += 1
                    self._forget_known(entry)
                    log.warning(
                        "agentmem journal: replay of %s %r applied on the primary, not yet on "
                        "wait_replicas replicas: %s",
                        entry.kind,
                        entry.target,
                        exc,
                    )
                    continue
                except AgentMemoryError as exc:
                    self._drop(entry, exc)
                    continue
                self._journal.pop_first()
                if result is None:
                    self.superseded += 1
                    log.info(
                        "agentmem journal: %s %r superseded by a newer replace or delete, not replayed",
                        entry.kind,
                        entry.target,
                    )
                else:
                    self.replayed += 1
                self._absorb(entry, result)
            return True

    def _drop(self, entry: JournalEntry, exc: AgentMemoryError) -> None:
        """Redis refused the replay of ``entry`` (not an outage): out of the journal, listed."""
        self._journal.pop_first()
        self.journal_dropped.append(DroppedWrite(entry.kind, entry.target, exc, entry.fields, entry.messages))
        self._forget_known(entry)
        log.error(
            "agentmem journal: Redis refused the replay of %s %r, which is dropped "
            "(listed in store.journal_dropped): %s",
            entry.kind,
            entry.target,
            exc,
        )

    # -- what this process knows ---------------------------------------------------------

    def _absorb(self, entry: JournalEntry, result: int | None) -> None:
        """Fold a write Redis took into what this process knows; a superseded one makes
        it unknown (a newer replace or delete happened that this process did not see)."""
        if result is None:
            self._forget_known(entry)
            return
        known, target = self._known, entry.target
        if entry.kind == "save":
            known.put(("ctx", target), dict(entry.fields or {}))
        elif entry.kind == "update":
            if known.known(("ctx", target)):
                known.put(("ctx", target), {**(known.get(("ctx", target)) or {}), **(entry.fields or {})})
        elif entry.kind == "remember":
            if known.known(("facts", target)):
                known.put(("facts", target), {**known.get(("facts", target)), **(entry.fields or {})})
        elif (history := known.get(("hist", target))) is not None:
            limit = self.config.max_history
            messages = [*history.messages, *(entry.messages or ())][-limit:]
            whole = history.complete and result == len(messages)
            if history.complete and not whole:  # another process appended meanwhile
                known.drop(("hist", target))
            else:
                known.put(("hist", target), KnownHistory(messages, whole))

    def _forget_known(self, entry: JournalEntry) -> None:
        kind = {"save": "ctx", "update": "ctx", "append": "hist", "remember": "facts"}[entry.kind]
        self._known.drop((kind, entry.target))

    def _local_context(self, session_id: str) -> tuple[bool, dict[str, Any] | None]:
        known = self._known.known(("ctx", session_id)) or self._journal.has_save(session_id)
        return known, self._journal.context_view(session_id, self._known.get(("ctx", session_id)))

    def _local_history(self, session_id: str) -> KnownHistory | None:
        history = self._known.get(("hist", session_id))
        if history is None:
            return None
        return self._journal.history_view(session_id, history, self.config.max_history)

    def _local_facts(self, user_id: str) -> tuple[bool, dict[str, Any]]:
        known = self._known.known(("facts", user_id))
        return known, self._journal.facts_view(user_id, self._known.get(("facts", user_id)))

    def _served_locally(self, what: str) -> None:
        log.warning("agentmem %s: Redis unavailable, answered from this process's journal view", what)

    # -- reads ---------------------------------------------------------------------------

    async def load_context(self, session_id: str) -> dict[str, Any] | None:
        self._refuse_if_closing()
        await self._replay_pending()
        try:
            context = await super().load_context(session_id)
        except MemoryUnavailableError:
            known, local = self._local_context(session_id)
            if not known:
                raise
            self._served_locally("load_context")
            return local
        self._known.put(("ctx", session_id), context)
        return self._journal.context_view(session_id, context)

    async def load_history(self, session_id: str, *, last: int = 20) -> list[dict[str, Any]]:
        self._refuse_if_closing()
        await self._replay_pending()
        try:
            history = await super().load_history(session_id, last=last)
        except MemoryUnavailableError:
            local = self._local_history(session_id)
            if local is None or not local.covers(last):
                raise
            self._served_locally("load_history")
            return local.messages[-last:]
        fetched = KnownHistory(history, complete=len(history) < last)
        self._known.put(("hist", session_id), fetched)
        return self._journal.history_view(session_id, fetched, self.config.max_history).messages[-last:]

    async def recall(self, user_id: str) -> dict[str, Any]:
        self._refuse_if_closing()
        await self._replay_pending()
        try:
            facts = await super().recall(user_id)
        except MemoryUnavailableError:
            known, local = self._local_facts(user_id)
            if not known:
                raise
            self._served_locally("recall")
            return local
        self._known.put(("facts", user_id), facts)
        return self._journal.facts_view(user_id, facts)

    async def load_turn(self, session_id: str, *, user_id: str | None = None, last: int = 20) -> Turn:
        self._refuse_if_closing()
        await self._replay_pending()
        try:
            turn = await super().load_turn(session_id, user_id=user_id, last=last)
        except MemoryUnavailableError:
            context_known, context = self._local_context(session_id)
            history = self._local_history(session_id)
            facts_known, facts = self._local_facts(user_id) if user_id is not None else (True, {})
            if not (context_known and facts_known and history is not None and history.covers(last)):
                raise
            self._served_locally("load_turn")
            return Turn(context=context, history=history.messages[-last:], profile=facts)
        fetched = KnownHistory(turn.history, complete=len(turn.history) < last)
        self._known.put(("ctx", session_id), turn.context)
        self._known.put(("hist", session_id), fetched)
        if user_id is not None:
            self._known.put(("facts", user_id), turn.profile)
        return Turn(
            context=self._journal.context_view(session_id, turn.context),
            history=self._journal.history_view(session_id, fetched, self.config.max_history).messages[-last:],
            profile=self._journal.facts_view(user_id, turn.profile) if user_id is not None else {},
        )

    # -- erasure -------------------------------------------------------------------------

    async def delete_session(self, session_id: str) -> bool:
        """As the core store; journaled writes of the session made before it are discarded.
        Not journaled: while Redis is unreachable it raises, and what this process knows
        of the session is left as it was."""
        self._refuse_if_closing()
        await self._replay_pending()
        started = write_version()
        removed = await super().delete_session(session_id)
        async with self._replay_lock:
            self._journal.discard_older(("session", session_id), started)
        self._known.put(("ctx", session_id), None)
        self._known.put(("hist", session_id), KnownHistory([], complete=True))
        return removed

    async def forget_user(self, user_id: str) -> bool:
        """As the core store; journaled facts of the user made before it are discarded.
        Not journaled: while Redis is unreachable it raises."""
        self._refuse_if_closing()
        await self._replay_pending()
        started = write_version()
        removed = await super().forget_user(user_id)
        async with self._replay_lock:
            self._journal.discard_older(("user", user_id), started)
        self._known.put(("facts", user_id), {})
        return removed
