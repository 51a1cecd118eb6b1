"""LangGraphStore: LangGraph's long-term memory (``BaseStore``) over an AgentMemoryStore.

Items are JSON documents (orjson), one Redis hash each, indexed by namespace and key in
one sorted set. Writes of one item are one atomic script; TTLs follow LangGraph's
``TTLConfig`` (minutes) and are Redis's own key expiry, so an expired item is gone from
every read at once (no sweeper needed: ``sweep_interval_minutes`` is ignored).

With ``index=`` (LangGraph's ``IndexConfig``) items are also embedded and
``search(..., query=...)`` ranks by cosine similarity in a search index (see
:mod:`._vectors`). Without it, as LangGraph's contract says, ``query`` is ignored (results
come unranked, ``score=None``) and a put's ``index=`` is ignored. The sync methods run
the async ones on the loop the store was made on (or first used on), from other threads
only.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar, cast

from langgraph.store.base import (
    BaseStore,
    GetOp,
    IndexConfig,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from agentmem.calls import Call
from agentmem.errors import AgentMemoryError, InvalidArgumentError
from agentmem.integrations.langgraph._filters import (
    check_filter,
    filter_query,
    matches,
    namespace_tags,
    prefix_query,
    value_tags,
)
from agentmem.integrations.langgraph._items import (
    SEP,
    check_page,
    check_ttl_config,
    condition_matches,
    decode_item,
    encode_value,
    item_key,
    minutes_to_ms,
    namespace_text,
)
from agentmem.integrations.langgraph._keys import store_index_key, store_item_key, store_vector_key
from agentmem.integrations.langgraph._store_scripts import (
    ITEM_DELETE,
    ITEM_FETCH,
    ITEM_PUT,
    ITEM_TOUCH,
    MEMBERS,
)
from agentmem.integrations.langgraph._vectors import VectorIndex
from agentmem.store import AgentMemoryStore

__all__ = ["LangGraphStore"]

_F = TypeVar("_F", bound=Callable[..., Any])
#: Index members read per round trip while searching or listing namespaces.
_SCAN_BATCH = 200
#: Rounds of "the item has more vectors than declared" before a write gives up.
_WRITE_ROUNDS = 8


@dataclass(slots=True)
class _Write:
    """One put or delete, checked and encoded, waiting to be sent."""

    namespace: tuple[str, ...]
    key: str
    value: bytes | None  # None: a delete
    ttl_ms: int
    texts: list[str]
    tags: str = ""
    vectors: list[bytes] = field(default_factory=list)
    declared: int = 0  # vector keys to pass: at least the item's current vector count

    @property
    def member(self) -> str:
        return f"{namespace_text(self.namespace)}{SEP}{self.key}"


def _off_loop(base: _F) -> _F:
    """BaseStore's sync method ``base``, refused on the store's own loop thread."""
    name = base.__name__

    @functools.wraps(base)
    def method(self: LangGraphStore, *args: Any, **kwargs: Any) -> Any:
        self._sync_loop(name)
        return base(self, *args, **kwargs)

    return cast(_F, method)


def _labels(member: str) -> tuple[tuple[str, ...], str]:
    labels, key = member.split(SEP, 1)
    return tuple(labels.split(".")), key


class LangGraphStore(BaseStore):
    """A LangGraph ``BaseStore`` in the store's Redis, all keys under one hash tag.

    ``ttl`` is a LangGraph ``TTLConfig``: ``default_ttl`` (minutes) for puts that give
    none, ``refresh_on_read`` (default ``True``) for gets and searches that do not say.
    Items without a TTL never expire (the store's own ``ttl`` does not apply to them).
    A search without a query returns items in namespace, then key order: it walks the
    index of the prefix from its start (200 members per round trip) until ``offset +
    limit`` items matched, and ``list_namespaces`` walks the whole index: their cost
    grows with the items they pass over. All keys share one hash tag, so on Redis
    Cluster the whole store is one slot.

    ``index`` (LangGraph's ``IndexConfig``: ``dims``, ``embed``, ``fields``) adds ranked
    search: every put embeds the item's ``fields`` (or its own ``index=[paths]``;
    ``index=False`` embeds nothing), and ``search(prefix, query=...)`` returns the
    nearest items by cosine similarity (``SearchItem.score``, higher is closer), the
    namespace prefix and ``filter`` applied inside the query. It needs a server with a
    query engine (:class:`~agentmem.SearchUnavailableError` otherwise, at the first put
    that embeds or search that ranks).

    The sync methods (``batch``, ``get``, ``put``, ``search``, ``delete``,
    ``list_namespaces``) are for other threads (a sync graph run in a worker thread, a
    thread pool): each one runs its async twin on the event loop the store was made on
    (or first used on) and blocks until it is done. Called on that loop's own thread
    they would block it forever, so they raise :class:`asyncio.InvalidStateError`, as
    LangGraph's async stores do.
    """

    supports_ttl = True

    def __init__(
        self, store: AgentMemoryStore, *, ttl: TTLConfig | None = None, index: IndexConfig | None = None
    ) -> None:
        self._store = store
        self._engine = store.engine
        self._prefix = store.config.prefix
        self._index = store_index_key(self._prefix)
        self.ttl_config = check_ttl_config(ttl)
        self.index_config = index
        self._vectors = None if index is None else VectorIndex(store.engine, self._prefix, index)
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made outside a loop: the first async call tells which
            self._loop = None

    def _refresh(self, requested: bool | None) -> bool:
        if requested is not None:
            return requested
        return bool((self.ttl_config or {}).get("refresh_on_read", True))

    def _item(self, namespace: Sequence[str], key: str) -> str:
        return store_item_key(self._prefix, namespace_text(namespace), key)

    def _vector_keys(self, namespace: Sequence[str], key: str, count: int) -> list[str]:
        text = namespace_text(namespace)
        return [store_vector_key(self._prefix, text, key, number) for number in range(1, count + 1)]

    # -- writes ----------------------------------------------------------------------

    def _plan(self, op: PutOp) -> _Write:
        namespace_text(op.namespace)
        key = item_key(op.key)
        if op.value is None:
            return _Write(tuple(op.namespace), key, None, 0, [])
        ttl_ms = minutes_to_ms(op.ttl, "ttl")
        encoded = encode_value(op.value, self._store.config.max_value_bytes)
        texts: list[str] = []
        if self._vectors is not None and op.index is not False:
            if op.index is not None and not isinstance(op.index, list):
                raise InvalidArgumentError(f"index= must be False, None or a list of paths, got {op.index!r}")
            texts = self._vectors.texts(op.value, op.index)
        write = _Write(tuple(op.namespace), key, encoded, ttl_ms, texts)
        if texts:
            write.tags = ",".join([*namespace_tags(op.namespace), *value_tags(op.value)])
        return write

    async def _embed(self, writes: Iterable[_Write]) -> None:
        """Embed every write's texts in one call (before anything is sent)."""
        pending = [write for write in writes if write.texts]
        if not pending or self._vectors is None:
            return
        vectors = await self._vectors.embed_documents([text for w in pending for text in w.texts])
        start = 0
        for write in pending:
            write.vectors = vectors[start : start + len(write.texts)]
            start += len(write.texts)
        await self._vectors.ensure()

    def _write_call(self, write: _Write, now: str) -> Call:
        count = max(len(write.vectors), write.declared)
        keys = (
            self._index,
            self._item(write.namespace, write.key),
            *self._vector_keys(write.namespace, write.key, count),
        )
        if write.value is None:
            return Call(ITEM_DELETE, keys, (write.member,))
        args = (write.member, write.value, now, write.ttl_ms, len(write.vectors), write.tags, *write.vectors)
        return Call(ITEM_PUT, keys, args)

    async def _send_writes(self, writes: Sequence[_Write], now: str) -> None:
        """Send the writes (the last one per item: LangGraph's stores dedupe a batch the
        same way); a write that met more vectors than it declared is sent again."""
        pending = list({(w.namespace, w.key): w for w in writes}.values())
        for _ in range(_WRITE_ROUNDS):
            calls = [self._write_call(write, now) for write in pending]
            replies = await self._engine.send("langgraph.store.put", calls)
            stale = []
            for write, reply in zip(pending, replies, strict=True):
                if isinstance(reply, int) and reply < 0:
                    write.declared = -reply
                    stale.append(write)
            if not stale:
                return
            pending = stale
        raise AgentMemoryError(
            f"langgraph.store.put: {len(pending)} item(s) kept gaining vectors from other writers "
            f"over {_WRITE_ROUNDS} rounds; not written"
        )

    # -- reads -----------------------------------------------------------------------

    def _vectors_of(self, found: Sequence[tuple[str, Sequence[Any]]]) -> list[str]:
        """The vector documents whose TTL a read of these (member, raw item) pairs renews."""
        keys: list[str] = []
        for member, raw in found:
            if raw[3] not in (b"0", "0") and int(raw[4]) > 0:
                keys.extend(self._vector_keys(*_labels(member), int(raw[4])))
        return keys

    async def _get(self, op: GetOp) -> Any:
        namespace = namespace_text(op.namespace)
        key = item_key(op.key)
        member = f"{namespace}{SEP}{key}"
        refresh = self._refresh(op.refresh_ttl)
        (raw,) = await self._engine.script(
            "langgraph.store.get",
            ITEM_FETCH,
            (self._index, self._item(op.namespace, key)),
            ("1" if refresh else "0", member),
        )
        if raw is None:
            return None
        item = decode_item(tuple(op.namespace), key, raw)
        vectors = self._vectors_of([(member, raw)]) if refresh else []
        if vectors:  # the item's own TTL was renewed by the fetch
            await self._engine.script("langgraph.store.get", ITEM_TOUCH, vectors, ())
        return item

    async def _members(self, low: str, high: str) -> list[str]:
        reply = await self._engine.script(
            "langgraph.store.scan", MEMBERS, (self._index,), (low, high, _SCAN_BATCH)
        )
        return [member.decode() for member in reply]

    async def _fetch(self, members: Sequence[str]) -> list[Any]:
        if not members:
            return []
        keys = [self._item(*_labels(member)) for member in members]
        return list(
            await self._engine.script(
                "langgraph.store.search", ITEM_FETCH, (self._index, *keys), ("0", *members)
            )
        )

    async def _refresh_page(self, found: Sequence[tuple[str, Sequence[Any]]]) -> None:
        keys = [self._item(*_labels(member)) for member, _ in found] + self._vectors_of(found)
        await self._engine.script("langgraph.store.search", ITEM_TOUCH, keys, ())

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        check_page(op.limit, op.offset)
        check_filter(op.filter)
        if op.query and self._vectors is not None:
            return await self._ranked(op, self._vectors)
        prefix = namespace_text(op.namespace_prefix, allow_empty=True)
        depth = len(op.namespace_prefix)
        low, high = (f"[{prefix}", f"({prefix}/") if depth else ("-", "+")
        wanted = op.offset + op.limit
        found: list[tuple[str, Any, SearchItem]] = []
        while len(found) < wanted:
            members = await self._members(low, high)
            if not members:
                break
            low = f"({members[-1]}"
            inside = [m for m in members if _labels(m)[0][:depth] == tuple(op.namespace_prefix)]
            for member, raw in zip(inside, await self._fetch(inside), strict=True):
                if raw is None:
                    continue
                item = decode_item(*_labels(member), raw)
                if op.filter and not matches(item.value, op.filter):
                    continue
                found.append(
                    (
                        member,
                        raw,
                        SearchItem(item.namespace, item.key, item.value, item.created_at, item.updated_at),
                    )
                )
            if len(members) < _SCAN_BATCH:
                break
        page = found[op.offset : wanted]
        if page and self._refresh(op.refresh_ttl):
            await self._refresh_page([(member, raw) for member, raw, _ in page])
        return [item for _, _, item in page]

    async def _ranked(self, op: SearchOp, vectors: VectorIndex) -> list[SearchItem]:
        """The ``offset + limit`` nearest items: KNN over vector documents (filtered inside
        the query), each item at its nearest vector; asks for more vectors while items
        with several vectors (or that just expired) leave the page short."""
        assert op.query is not None
        clauses = [*prefix_query(op.namespace_prefix), *(filter_query(op.filter) if op.filter else [])]
        query = await vectors.embed_query(op.query)
        wanted = op.offset + op.limit
        if op.limit == 0:
            return []
        k = wanted * max(1, len(vectors.fields))
        while True:
            hits = await vectors.nearest(query, clauses, k)
            nearest: dict[str, float] = {}
            for member, distance in hits:
                nearest.setdefault(member, distance)
            members = list(nearest)
            found = [
                (member, raw)
                for member, raw in zip(members, await self._fetch(members), strict=True)
                if raw is not None
            ]
            if len(found) >= wanted or len(hits) < k:
                break
            k *= 2
        page = found[op.offset : wanted]
        items = []
        for member, raw in page:
            item = decode_item(*_labels(member), raw)
            score = 1.0 - nearest[member]
            items.append(
                SearchItem(item.namespace, item.key, item.value, item.created_at, item.updated_at, score)
            )
        if page and self._refresh(op.refresh_ttl):
            await self._refresh_page(page)
        return items

    async def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        check_page(op.limit, op.offset)
        namespaces: set[tuple[str, ...]] = set()
        low = "-"
        while True:
            members = await self._members(low, "+")
            if not members:
                break
            low = f"({members[-1]}"
            for member, raw in zip(members, await self._fetch(members), strict=True):
                if raw is not None:
                    namespaces.add(_labels(member)[0])
            if len(members) < _SCAN_BATCH:
                break
        kept = [ns for ns in namespaces if all(condition_matches(c, ns) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            kept = list({ns[: op.max_depth] for ns in kept})
        return sorted(kept)[op.offset : op.offset + op.limit]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order: a read sees every put and delete before it.

        Every operation is checked (every put encoded, its texts embedded) before
        anything is sent, so a bad one fails the batch with nothing written. Each put or
        delete is one atomic script (the item, its index entry and its vectors);
        consecutive ones travel in one round trip. A batch is not a transaction.
        """
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        ops = list(ops)
        now = datetime.now(timezone.utc).isoformat()
        writes: dict[int, _Write] = {}
        for position, op in enumerate(ops):
            validate_op_namespace(op)
            if isinstance(op, PutOp):
                writes[position] = self._plan(op)
            elif isinstance(op, SearchOp):
                check_page(op.limit, op.offset)
                check_filter(op.filter)
            elif not isinstance(op, (GetOp, ListNamespacesOp)):
                raise InvalidArgumentError(f"unknown LangGraph store operation: {type(op).__name__}")
        await self._embed(writes.values())
        results: list[Result] = []
        pending: list[_Write] = []
        for position, op in enumerate(ops):
            if position in writes:
                pending.append(writes[position])
                results.append(None)
                continue
            if pending:
                await self._send_writes(pending, now)
                pending = []
            if isinstance(op, GetOp):
                results.append(await self._get(op))
            elif isinstance(op, SearchOp):
                results.append(await self._search(op))
            else:
                assert isinstance(op, ListNamespacesOp)
                results.append(await self._list_namespaces(op))
        if pending:
            await self._send_writes(pending, now)
        return results

    # -- the sync API: other threads only --------------------------------------------

    def _sync_loop(self, name: str) -> asyncio.AbstractEventLoop:
        """The loop to run a sync call on; refuses the call where it would deadlock."""
        loop = self._loop
        if loop is None:
            raise asyncio.InvalidStateError(
                f"LangGraphStore.{name}() needs the event loop its AgentMemoryStore runs on: make the "
                "LangGraphStore inside that loop (or await one of its a* methods first)"
            )
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise asyncio.InvalidStateError(
                f"LangGraphStore.{name}() was called on its own event loop's thread, where it would "
                f"block the loop it waits for: use `await store.a{name}(...)` there (the sync "
                "methods are for other threads)"
            )
        if loop.is_closed() or not loop.is_running():
            raise asyncio.InvalidStateError(
                f"LangGraphStore.{name}(): the event loop the store runs on is not running"
            )
        return loop

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """``abatch`` run on the store's loop from another thread (see the class docstring)."""
        loop = self._sync_loop("batch")
        return asyncio.run_coroutine_threadsafe(self.abatch(list(ops)), loop).result()

    get = _off_loop(BaseStore.get)
    search = _off_loop(BaseStore.search)
    put = _off_loop(BaseStore.put)
    delete = _off_loop(BaseStore.delete)
    list_namespaces = _off_loop(BaseStore.list_namespaces)
