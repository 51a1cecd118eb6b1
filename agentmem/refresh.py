"""Coalesced TTL refreshes of sliding reads: a session (or a user's facts) that this store's
reads refreshed less than :func:`refresh_bound` ago is read without refreshing its TTLs again.

Each refresh is a ``PEXPIRE`` per key on the server (a ``GETEX`` for the base), and an
agent reads its session every turn: most of those refreshes moved an expiry by a few
milliseconds. Writes consult the same record but never add to it: a ``save_context`` or
``update_context`` within the bound of a refreshing read sets only the TTLs of the keys it
may create (the base and the merged-fields hash, so a key a write creates always gets its
TTL), not the history's or the tombstone's (:func:`agentmem.writes.apply`); a journal
replay, any write outside the bound, and every write with ``sliding_ttl=False`` set every
key's TTL (so there the TTL counts from the last write).

What the sliding TTL promises, with the bound ``b = refresh_bound(ttl)``:

* a session read (or written) at least every ``ttl - b`` never expires;
* after its last read or write it expires within ``ttl`` (never later than without
  coalescing), and not before ``ttl - b``.

The bookkeeping is per store, in memory, for the :data:`REFRESH_CACHE_SIZE` most recently
refreshed sessions and users (least recently refreshed first out: one that falls out is
refreshed by its next read, as without coalescing). A refresh is recorded only after the
server answered, so a failed read never suppresses the next one's refresh.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Hashable

__all__ = ["MAX_REFRESH_BOUND", "REFRESH_CACHE_SIZE", "REFRESH_FRACTION", "RefreshCoalescer", "refresh_bound"]

#: A read refreshes a key again once this fraction of the TTL has passed since its last refresh...
REFRESH_FRACTION = 0.1
#: ...or this many seconds, whichever is less.
MAX_REFRESH_BOUND = 60.0
#: Sessions and users whose last refresh a store remembers.
REFRESH_CACHE_SIZE = 4096


def refresh_bound(ttl: float) -> float:
    """Seconds within which a read does not refresh a TTL of ``ttl`` seconds again:
    ``min(ttl * REFRESH_FRACTION, MAX_REFRESH_BOUND)``."""
    return min(ttl * REFRESH_FRACTION, MAX_REFRESH_BOUND)


class RefreshCoalescer:
    """When the reads of one store last refreshed each session's (or user's) TTL."""

    def __init__(self, *, size: int = REFRESH_CACHE_SIZE) -> None:
        self._size = size
        self._refreshed: OrderedDict[Hashable, float] = OrderedDict()

    def due(self, key: Hashable, ttl: float) -> bool:
        """Whether a read of ``key`` (with TTL ``ttl`` seconds) should refresh its TTLs."""
        at = self._refreshed.get(key)
        return at is None or time.monotonic() - at >= refresh_bound(ttl)

    def refreshed(self, key: Hashable, at: float) -> None:
        """Record that a read sent at ``at`` (``time.monotonic()``) refreshed ``key``'s TTLs."""
        self._refreshed[key] = at
        self._refreshed.move_to_end(key)
        if len(self._refreshed) > self._size:
            self._refreshed.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        """Drop ``key``'s record (its keys were deleted): its next read refreshes."""
        self._refreshed.pop(key, None)

    def __len__(self) -> int:
        return len(self._refreshed)
