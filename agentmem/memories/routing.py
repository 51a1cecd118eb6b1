"""Where the memories index lives and how a search reaches it.

Single server (or Sentinel): one index, ``<prefix>:memidx``.

Redis Cluster: the open-source search module has no coordinator, so each primary indexes
only its own keys and needs an index of its own; and it routes ``FT.*`` by the index
name's slot (``MOVED`` otherwise). So each primary's index is named with a hash tag of the
first slot it serves (``<prefix>:memidx:{<tag>}``), learnt from ``CLUSTER SLOTS``. A user's
memories share the user's hash tag, so a per-user search goes to the one primary serving
that slot, under that primary's index name; a search of every user goes to every primary
and the hits are merged. An index is created where a call finds none (a new primary after
a failover or a reshard included): ``FT.CREATE`` is safe to race (``Index already
exists`` is success) and an existing index is never dropped; one of another shape raises
:class:`~agentmem.errors.IndexMismatchError`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.crc import key_slot

from agentmem.calls import Call
from agentmem.errors import AgentMemoryError, IndexMismatchError, SearchUnavailableError
from agentmem.memories.index import (
    IndexShape,
    create_args,
    is_missing_index,
    is_unknown_command,
    shape_of,
    wait_indexed,
)

if TYPE_CHECKING:
    from agentmem.engine import StoreEngine

__all__ = ["IndexRouter", "slot_tag"]

_NEEDED = (
    "store.memories needs a server with a query engine (FT.CREATE/FT.SEARCH): Redis 8, Redis Stack, "
    "a server with valkey-search, or a managed Redis with search; this server has none"
)


@functools.cache
def slot_tag(slot: int) -> str:
    """The shortest decimal string whose cluster slot is ``slot`` (a hash tag for it)."""
    n = 0
    while key_slot(str(n).encode()) != slot:
        n += 1
    return str(n)


class IndexRouter:
    """Creates the memories index where it is missing and sends searches to it."""

    def __init__(self, engine: StoreEngine) -> None:
        self.engine = engine
        #: The index's vector length once known (checked against every embedding).
        self.dims: int | None = None
        self._ready: set[str] = set()
        #: Whether the server has a query engine (None until asked).
        self._engine_seen: bool | None = None
        #: Cluster: (first slot, last slot, primary address) of every range, and the tag of
        #: each primary's first slot.
        self._ranges: list[tuple[int, int, str]] = []
        self._tags: dict[str, str] = {}
        #: Whether the store is on a cluster, once its transport knows (it never changes).
        self._on_cluster: bool | None = None

    def shape(self, dims: int) -> IndexShape:
        config = self.engine.config
        return IndexShape(self.engine.keys.memory_prefix(), dims, config.memory_index.upper())

    # -- names ---------------------------------------------------------------------------

    async def _cluster(self) -> bool:
        if self._on_cluster is None:
            self._on_cluster = await self.engine.topology() == "cluster"
        return self._on_cluster

    async def refresh(self, operation: str) -> None:
        """Read the slot map (``CLUSTER SLOTS``) and name each primary's index."""
        (reply,) = await self.engine.send(operation, (Call(None, (), ("SLOTS",), command="CLUSTER"),))
        ranges: list[tuple[int, int, str]] = []
        for entry in reply:
            host = entry[2][0].decode() if isinstance(entry[2][0], bytes) else str(entry[2][0])
            ranges.append((int(entry[0]), int(entry[1]), f"{host}:{int(entry[2][1])}"))
        ranges.sort()
        tags: dict[str, str] = {}
        for start, _, address in ranges:
            tags.setdefault(address, slot_tag(start))
        self._ranges, self._tags = ranges, tags

    def _primary_of(self, slot: int) -> str | None:
        for start, end, address in self._ranges:
            if start <= slot <= end:
                return address
        return None

    async def name_for(self, key: str, operation: str) -> str:
        """The index name on the primary that serves ``key``."""
        if not await self._cluster():
            return self.engine.keys.memory_index()
        slot = key_slot(key.encode())
        address = self._primary_of(slot)
        if address is None:
            await self.refresh(operation)
            address = self._primary_of(slot)
        if address is None:
            raise AgentMemoryError(f"{operation}: no primary serves slot {slot}")
        return self.engine.keys.memory_index(self._tags[address])

    async def all_names(self, operation: str) -> list[str]:
        """Every primary's index name (one on a single server)."""
        if not await self._cluster():
            return [self.engine.keys.memory_index()]
        await self.refresh(operation)
        return [self.engine.keys.memory_index(tag) for tag in self._tags.values()]

    # -- the index -----------------------------------------------------------------------

    async def _ft(self, operation: str, command: str, args: tuple[Any, ...], route: str) -> Any:
        try:
            (reply,) = await self.engine.send(
                operation, (Call(None, (), args, command=command, route=route),)
            )
        except AgentMemoryError as exc:
            if is_unknown_command(exc) or is_unknown_command(exc.__cause__ or exc):
                raise SearchUnavailableError(_NEEDED) from exc
            raise
        return reply

    async def check_engine(self, operation: str) -> None:
        """Raise :class:`SearchUnavailableError` unless the server has a query engine
        (asked once per store, by ``FT._LIST``)."""
        if self._engine_seen is None:
            try:
                await self._ft(operation, "FT._LIST", (), self.engine.keys.memory_index())
            except SearchUnavailableError:
                self._engine_seen = False
                raise
            self._engine_seen = True
        elif not self._engine_seen:
            raise SearchUnavailableError(_NEEDED)

    async def ensure(self, name: str, dims: int, operation: str, route: str | None = None) -> None:
        """The index ``name`` exists with this store's shape (created if missing) on the node
        of ``route`` (a key; default: the name's own slot)."""
        if name in self._ready:
            return
        route = route or name
        wanted = self.shape(dims)
        try:
            info = await self._ft(operation, "FT.INFO", (name,), route)
        except AgentMemoryError as exc:
            if not is_missing_index(exc):
                raise
            try:
                await self._ft(operation, "FT.CREATE", create_args(name, wanted), route)
            except AgentMemoryError as created:
                if "already exists" not in str(created).lower():
                    raise
            info = await self._indexed(name, operation, route)
        found = shape_of(info)
        if found != wanted:
            raise IndexMismatchError(
                f"the memories index {name} exists as {found} but this store needs {wanted} "
                "(another embedder's dimensions, or memory_index option); agentmem never drops an "
                "index: drop it with FT.DROPINDEX, or use another prefix"
            )
        self.dims = dims
        self._ready.add(name)

    async def _indexed(self, name: str, operation: str, route: str) -> Any:
        """``FT.INFO`` once the index has taken in the keys that were there before it (a new
        primary's index is built in the background)."""
        return await wait_indexed(
            lambda: self._ft(operation, "FT.INFO", (name,), route), self.engine.config.retry_deadline
        )

    async def ensure_for(self, key: str, dims: int, operation: str) -> None:
        try:
            await self.ensure(await self.name_for(key, operation), dims, operation, key)
        except AgentMemoryError as exc:
            if not _moved(exc):
                raise
            await self.refresh(operation)
            await self.ensure(await self.name_for(key, operation), dims, operation, key)

    # -- searches ------------------------------------------------------------------------

    async def search_user(self, key: str, operation: str, build: Callable[[str], tuple[Any, ...]]) -> Any:
        """``FT.SEARCH`` on the node serving ``key`` (the user's shard), under that node's
        index name; once more after re-reading the slot map (and creating the index there)
        when the name is not that node's (``MOVED``) or the index is missing."""
        on_cluster = await self._cluster()
        name = await self.name_for(key, operation)
        try:
            if on_cluster:
                # The node answers FT.SEARCH for any user (the command's only key is the index
                # name), so a stale slot map would search the old shard and miss the user's
                # moved memories silently. A keyed call first: a MOVED updates the map.
                await self.engine.send(operation, (Call(None, (key,), (), command="EXISTS"),))
            if self.dims is not None:
                await self.ensure(name, self.dims, operation, key)
            return await self._ft(operation, "FT.SEARCH", build(name), key)
        except AgentMemoryError as exc:
            if not (is_missing_index(exc) or _moved(exc)):
                raise
            if self.dims is None and is_missing_index(exc):
                return [0]  # no memory was ever added through this store: none to find
        self._ready.discard(name)
        if await self._cluster():
            await self.refresh(operation)
        name = await self.name_for(key, operation)
        if self.dims is not None:
            await self.ensure(name, self.dims, operation, key)
        return await self._ft(operation, "FT.SEARCH", build(name), key)

    async def search_all(
        self, dims: int, operation: str, build: Callable[[str], tuple[Any, ...]]
    ) -> list[Any]:
        """The same search on every primary's index; the replies."""
        replies: list[Any] = []
        for name in await self.all_names(operation):
            await self.ensure(name, dims, operation)
            replies.append(await self._ft(operation, "FT.SEARCH", build(name), name))
        return replies


def _moved(exc: BaseException) -> bool:
    """The node does not serve the index name's slot (the name is from an older slot map)."""
    return "moved" in str(exc).lower() or "moved" in str(exc.__cause__ or "").lower()
