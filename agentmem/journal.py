"""An opt-in, bounded, in-process write-behind journal (``fallback="journal"``).

While Redis is unreachable, writes that would have raised
:class:`~agentmem.MemoryUnavailableError` are kept here, in order, and acknowledged.
Loads in the same process see them merged over the last state this process saw in
Redis. When Redis answers again the journal is replayed in order, before any new
call; a replayed context or facts field never overwrites a newer value another
process wrote meanwhile (per-field versions, see ``WRITE_HASH``), and a replayed
append carries its original operation id, so it is applied at most once.

The journal is bounded in distinct sessions/users and in bytes; a write past either
bound raises instead of being dropped. It lives in process memory: a crash loses it,
which is why it is opt-in and why ``aclose()`` flushes it or raises naming what it
could not write.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from agentmem.errors import MemoryUnavailableError

__all__ = ["Journal", "JournalEntry", "LocalView"]

Kind = Literal["save", "update", "append", "remember"]


@dataclass(frozen=True, slots=True)
class JournalEntry:
    kind: Kind
    target: str  # session id (save/update/append) or user id (remember)
    encoded: tuple[bytes, ...]  # what goes on the wire: field/value pairs, or messages
    version: int  # writer clock in microseconds
    fields: dict[str, Any] | None = None  # save/update/remember
    messages: list[dict[str, Any]] | None = None  # append
    operation_id: str = ""

    @property
    def scope(self) -> tuple[str, str]:
        return ("user" if self.kind == "remember" else "session", self.target)

    @property
    def size(self) -> int:
        return sum(map(len, self.encoded)) + len(self.target)


class LocalView:
    """The last state of each session/user this process saw in Redis, LRU-bounded."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._items: OrderedDict[tuple[str, str], Any] = OrderedDict()

    def get(self, key: tuple[str, str]) -> Any:
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
        #: Snapshots for merged reads: ("ctx"|"hist"|"facts", id) -> value.
        self.seen = LocalView(max_targets)

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

    def history_view(
        self, session_id: str, base: list[dict[str, Any]] | None, max_history: int
    ) -> list[dict[str, Any]]:
        history = list(base or [])
        for entry in self.entries_for(("session", session_id)):
            if entry.kind == "append":
                history.extend(entry.messages or ())
        return history[-max_history:]

    def facts_view(self, user_id: str, base: dict[str, Any] | None) -> dict[str, Any]:
        facts = dict(base or {})
        for entry in self.entries_for(("user", user_id)):
            facts.update(entry.fields or {})
        return facts
