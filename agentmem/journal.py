"""The data of the opt-in write-behind journal (``fallback="journal"``); the store
layer that uses it is :mod:`agentmem.journaled`.

:class:`Journal` keeps, in order, the writes that met an outage, bounded in distinct
sessions/users and in bytes (a write past either bound raises instead of being
dropped). :class:`LocalView` keeps what this process knows for certain of a session
or user: the last state it read from Redis or wrote there itself. A read while Redis
is down is the local view with the journal merged over it, and only when the view
covers what was asked. It all lives in process memory: a crash loses it.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agentmem.errors import AgentMemoryError, MemoryUnavailableError
from agentmem.writes import Write, WriteKind

__all__ = ["DroppedWrite", "Journal", "JournalEntry", "KnownHistory", "LocalView"]

Kind = WriteKind


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A prepared write (sent as it is on replay) and what it wrote, for the local view."""

    write: Write
    fields: dict[str, Any] | None = None  # save/update/remember
    messages: list[dict[str, Any]] | None = None  # append

    @property
    def kind(self) -> Kind:
        return self.write.kind

    @property
    def target(self) -> str:
        """The session id (save/update/append) or user id (remember)."""
        return self.write.target

    @property
    def encoded(self) -> tuple[bytes, ...]:
        return self.write.encoded

    @property
    def version(self) -> int:
        return self.write.version

    @property
    def scope(self) -> tuple[str, str]:
        return ("user" if self.kind == "remember" else "session", self.target)

    @property
    def size(self) -> int:
        return sum(map(len, self.encoded)) + len(self.target)


@dataclass(frozen=True, slots=True)
class DroppedWrite:
    """A journaled (acknowledged) write that Redis refused on replay for a reason that is
    not an outage (``WRONGTYPE``, ``MemoryFullError``, a permission error...). It was
    removed from the journal so it blocks nothing; it never reached Redis."""

    kind: Kind
    target: str
    error: AgentMemoryError
    fields: dict[str, Any] | None = None
    messages: list[dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class KnownHistory:
    """The newest messages of a session as this process knows them: the whole history
    (``complete``) or only its tail."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = False

    def covers(self, last: int) -> bool:
        return self.complete or len(self.messages) >= last


class LocalView:
    """What this process knows of each session/user, LRU-bounded: keys are
    ``("ctx", session)`` (a context, ``None`` for none), ``("hist", session)``
    (a :class:`KnownHistory`) and ``("facts", user)``. Absent means unknown."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def known(self, key: tuple[str, str]) -> bool:
        return key in self._items

    def get(self, key: tuple[str, str]) -> Any:
        """The known value, or ``None`` when unknown (check :meth:`known` first where it matters)."""
        if key in self._items:
            self._items.move_to_end(key)
        return self._items.get(key)

    def put(self, key: tuple[str, str], value: Any) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def drop(self, key: tuple[str, str]) -> None:
        self._items.pop(key, None)


class Journal:
    def __init__(self, *, max_targets: int, max_bytes: int) -> None:
        self.max_targets = max_targets
        self.max_bytes = max_bytes
        self._entries: deque[JournalEntry] = deque()
        self._bytes = 0
        self._per_scope: dict[tuple[str, str], int] = {}
        #: What this process knows of each session/user, for reads while Redis is down.
        self.known = LocalView(max_targets)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def add(self, entry: JournalEntry, *, cause: BaseException | None = None) -> None:
        """Keep ``entry``; raise :class:`MemoryUnavailableError` if a bound would be passed."""
        new_scope = entry.scope not in self._per_scope
        if new_scope and len(self._per_scope) >= self.max_targets:
            raise MemoryUnavailableError(
                f"Redis is unavailable and the journal already holds {len(self._per_scope)} "
                f"sessions/users (journal_max_sessions); this write was not kept"
            ) from cause
        if self._bytes + entry.size > self.max_bytes:
            raise MemoryUnavailableError(
                f"Redis is unavailable and the journal is full ({self._bytes} of "
                f"{self.max_bytes} bytes, journal_max_bytes); this write was not kept"
            ) from cause
        self._entries.append(entry)
        self._bytes += entry.size
        self._per_scope[entry.scope] = self._per_scope.get(entry.scope, 0) + 1

    def first(self) -> JournalEntry | None:
        return self._entries[0] if self._entries else None

    def pop_first(self) -> None:
        entry = self._entries.popleft()
        self._bytes -= entry.size
        left = self._per_scope[entry.scope] - 1
        if left:
            self._per_scope[entry.scope] = left
        else:
            del self._per_scope[entry.scope]

    def has(self, scope: tuple[str, str]) -> bool:
        return scope in self._per_scope

    def has_save(self, session_id: str) -> bool:
        """Whether a journaled ``save_context`` sets the session's whole context."""
        return any(e.kind == "save" for e in self.entries_for(("session", session_id)))

    def discard_older(self, scope: tuple[str, str], version: int) -> int:
        """Remove the scope's entries made before ``version`` (a delete made them moot)."""
        kept: deque[JournalEntry] = deque()
        removed = 0
        for entry in self._entries:
            if entry.scope == scope and entry.version < version:
                removed += 1
                self._bytes -= entry.size
                self._per_scope[entry.scope] -= 1
            else:
                kept.append(entry)
        if removed:
            self._entries = kept
            if not self._per_scope[scope]:
                del self._per_scope[scope]
        return removed

    def entries_for(self, scope: tuple[str, str]) -> Iterable[JournalEntry]:
        return [e for e in self._entries if e.scope == scope]

    def pending(self) -> list[tuple[str, str]]:
        return [(e.kind, e.target) for e in self._entries]

    # -- merged views --------------------------------------------------------------------

    def context_view(self, session_id: str, base: dict[str, Any] | None) -> dict[str, Any] | None:
        context = None if base is None else dict(base)
        for entry in self.entries_for(("session", session_id)):
            if entry.kind == "save":
                context = dict(entry.fields or {})
            elif entry.kind == "update":
                context = {**(context or {}), **(entry.fields or {})}
        return context

    def history_view(self, session_id: str, base: KnownHistory, max_history: int) -> KnownHistory:
        history = list(base.messages)
        for entry in self.entries_for(("session", session_id)):
            if entry.kind == "append":
                history.extend(entry.messages or ())
        return KnownHistory(history[-max_history:], base.complete)

    def facts_view(self, user_id: str, base: dict[str, Any] | None) -> dict[str, Any]:
        facts = dict(base or {})
        for entry in self.entries_for(("user", user_id)):
            facts.update(entry.fields or {})
        return facts
