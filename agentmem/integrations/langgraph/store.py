"""LangGraphStore: LangGraph's long-term memory (``BaseStore``) over an AgentMemoryStore.

Items are JSON documents (orjson), one Redis hash each, indexed by namespace and key in
one sorted set. Writes of one item are one atomic script; TTLs follow LangGraph's
``TTLConfig`` (minutes) and are Redis's own key expiry, so an expired item is gone from
every read at once (no sweeper needed: ``sweep_interval_minutes`` is ignored).

There is no vector index: ``search(..., query=...)`` raises
:class:`~agentmem.InvalidArgumentError` rather than return unranked results as if
they were ranked; search with ``filter=`` instead. A put's ``index=`` is accepted and
ignored (nothing is embedded).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
    TTLConfig,
    validate_op_namespace,
)

from agentmem.calls import Call
from agentmem.errors import (
    ContextTooLargeError,
    InvalidArgumentError,
    MemoryCorruptedError,
    SerializationError,
)
from agentmem.integrations.langgraph._keys import store_index_key, store_item_key
from agentmem.integrations.langgraph._store_scripts import (
    ITEM_DELETE,
    ITEM_FETCH,
    ITEM_PUT,
    ITEM_TOUCH,
    MEMBERS,
)
from agentmem.store import AgentMemoryStore

__all__ = ["LangGraphStore"]

_SEP = "\0"
#: Index members read per round trip while searching or listing namespaces.
_SCAN_BATCH = 200
_TTL_KEYS = frozenset({"default_ttl", "refresh_on_read", "sweep_interval_minutes", "omit_expired"})


def _minutes_to_ms(minutes: float | None, what: str) -> int:
    if minutes is None:
        return 0
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes):
        raise InvalidArgumentError(f"{what} must be minutes (a finite number) or None, got {minutes!r}")
    if minutes <= 0:
        raise InvalidArgumentError(f"{what} must be > 0 minutes, got {minutes!r}")
    return max(1, int(minutes * 60_000))


def _check_ttl_config(ttl: TTLConfig | None) -> TTLConfig | None:
    if ttl is None:
        return None
    if not isinstance(ttl, Mapping):
        raise InvalidArgumentError(f"ttl must be a LangGraph TTLConfig dict, not {type(ttl).__name__}")
    unknown = set(ttl) - _TTL_KEYS
    if unknown:
        raise InvalidArgumentError(f"unknown TTLConfig keys: {sorted(unknown)}")
    _minutes_to_ms(ttl.get("default_ttl"), "ttl['default_ttl']")
    return ttl


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(item) for item in value)
    return False


def _namespace(labels: Sequence[str], *, allow_empty: bool = False) -> str:
    """The labels joined with ``.`` (LangGraph forbids ``.`` and NUL in a label)."""
    if not labels and not allow_empty:
        raise InvalidArgumentError("a namespace needs at least one label")
    return ".".join(labels)


def _item_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidArgumentError(f"an item key must be a str, not {type(key).__name__}")
    if _SEP in key:
        raise InvalidArgumentError(f"an item key must not contain a NUL character: {key!r}")
    return key


def _matches(value: Any, wanted: Any) -> bool:
    """LangGraph's filter semantics: nested dicts match field by field, ``$eq``/``$ne``/
    ``$gt``/``$gte``/``$lt``/``$lte`` compare, lists match element by element."""
    if isinstance(wanted, dict):
        if any(isinstance(name, str) and name.startswith("$") for name in wanted):
            return all(_compare(value, operator, operand) for operator, operand in wanted.items())
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, (list, tuple)):
        return (
            isinstance(value, (list, tuple))
            and len(value) == len(wanted)
            and all(_matches(a, b) for a, b in zip(value, wanted, strict=True))
        )
    return bool(value == wanted)


def _compare(value: Any, operator: str, operand: Any) -> bool:
    if operator == "$eq":
        return bool(value == operand)
    if operator == "$ne":
        return bool(value != operand)
    if operator not in ("$gt", "$gte", "$lt", "$lte"):
        raise InvalidArgumentError(f"unsupported filter operator {operator!r}")
    try:
        left, right = float(value), float(operand)
    except (TypeError, ValueError):
        return False
    if operator == "$gt":
        return left > right
    if operator == "$gte":
        return left >= right
    if operator == "$lt":
        return left < right
    return left <= right


def _condition_matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    if condition.match_type == "prefix":
        pairs = zip(namespace, path, strict=False)
    elif condition.match_type == "suffix":
        pairs = zip(reversed(namespace), reversed(path), strict=False)
    else:
        raise InvalidArgumentError(f"unsupported match type {condition.match_type!r}")
    return all(want == "*" or have == want for have, want in pairs)


class LangGraphStore(BaseStore):
    """A LangGraph ``BaseStore`` in the store's Redis, all keys under one hash tag.

    ``ttl`` is a LangGraph ``TTLConfig``: ``default_ttl`` (minutes) for puts that give
    none, ``refresh_on_read`` (default ``True``) for gets and searches that do not say.
    Items without a TTL never expire (the store's own ``ttl`` does not apply to them).
    Search results come in namespace, then key order. A search walks the index of the
    prefix from its start (200 members per round trip) until ``offset + limit`` items
    matched, and ``list_namespaces`` walks the whole index: their cost grows with the
    items they pass over. All keys share one hash tag, so on Redis Cluster the whole
    store is one slot. Only the async API is implemented.
    """

    supports_ttl = True

    def __init__(self, store: AgentMemoryStore, *, ttl: TTLConfig | None = None) -> None:
        self._store = store
        self._prefix = store.config.prefix
        self._index = store_index_key(self._prefix)
        self.ttl_config = _check_ttl_config(ttl)

    # -- encoding --------------------------------------------------------------------

    def _encode(self, value: Mapping[str, Any]) -> bytes:
        if not isinstance(value, Mapping):
            raise SerializationError(f"an item's value must be a dict, not {type(value).__name__}")
        try:
            encoded = orjson.dumps(dict(value))
        except (orjson.JSONEncodeError, TypeError) as exc:
            raise SerializationError(f"an item's value cannot be encoded as JSON: {exc}") from exc
        if b"null" in encoded and _non_finite(value):  # orjson writes NaN/inf as null, silently
            raise SerializationError("an item's value holds NaN or an infinity, which JSON cannot carry")
        limit = self._store.config.max_value_bytes
        if len(encoded) > limit:
            raise ContextTooLargeError(
                f"an item's value encodes to {len(encoded)} bytes, over max_value_bytes={limit}; "
                "nothing was written"
            )
        return encoded

    @staticmethod
    def _decode(namespace: tuple[str, ...], key: str, raw: Sequence[Any]) -> Item:
        what = f"item {key!r} in namespace {namespace!r}"
        try:
            value = orjson.loads(raw[0])
            created = datetime.fromisoformat(raw[1].decode())
            updated = datetime.fromisoformat(raw[2].decode())
        except (orjson.JSONDecodeError, ValueError, UnicodeDecodeError, AttributeError) as exc:
            raise MemoryCorruptedError(f"{what} is corrupted: {exc}") from exc
        if not isinstance(value, dict):
            raise MemoryCorruptedError(f"{what} is corrupted: its value is not a JSON object")
        return Item(value=value, key=key, namespace=namespace, created_at=created, updated_at=updated)

    def _refresh(self, requested: bool | None) -> bool:
        if requested is not None:
            return requested
        return bool((self.ttl_config or {}).get("refresh_on_read", True))

    # -- operations ------------------------------------------------------------------

    def _put_call(self, op: PutOp, now: str) -> Call:
        namespace = _namespace(op.namespace)
        key = _item_key(op.key)
        item = store_item_key(self._prefix, namespace, key)
        member = f"{namespace}{_SEP}{key}"
        if op.value is None:
            return Call(ITEM_DELETE, (self._index, item), (member,))
        ttl_ms = _minutes_to_ms(op.ttl, "ttl")
        return Call(ITEM_PUT, (self._index, item), (member, self._encode(op.value), now, ttl_ms))

    async def _get(self, op: GetOp) -> Item | None:
        namespace = _namespace(op.namespace)
        key = _item_key(op.key)
        item = store_item_key(self._prefix, namespace, key)
        refresh = "1" if self._refresh(op.refresh_ttl) else "0"
        (raw,) = await self._store.engine.script(
            "langgraph.store.get", ITEM_FETCH, (self._index, item), (refresh, f"{namespace}{_SEP}{key}")
        )
        return None if raw is None else self._decode(tuple(op.namespace), key, raw)

    async def _members(self, low: str, high: str) -> list[str]:
        reply = await self._store.engine.script(
            "langgraph.store.scan", MEMBERS, (self._index,), (low, high, _SCAN_BATCH)
        )
        return [member.decode() for member in reply]

    async def _fetch(self, members: Sequence[str]) -> list[Any]:
        keys = [store_item_key(self._prefix, *member.split(_SEP, 1)) for member in members]
        return list(
            await self._store.engine.script(
                "langgraph.store.search", ITEM_FETCH, (self._index, *keys), ("0", *members)
            )
        )

    async def _search(self, op: SearchOp) -> list[SearchItem]:
        if op.query is not None:
            raise InvalidArgumentError(
                "LangGraphStore has no vector index: search(query=...) is not supported; "
                "search with filter= (and namespace_prefix) instead"
            )
        for name, number in (("limit", op.limit), ("offset", op.offset)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise InvalidArgumentError(f"{name} must be an int >= 0, got {number!r}")
        prefix = _namespace(op.namespace_prefix, allow_empty=True)
        depth = len(op.namespace_prefix)
        low, high = (f"[{prefix}", f"({prefix}/") if depth else ("-", "+")
        wanted = op.offset + op.limit
        found: list[SearchItem] = []
        while len(found) < wanted:
            members = await self._members(low, high)
            if not members:
                break
            low = f"({members[-1]}"
            inside = [
                m for m in members if m.split(_SEP, 1)[0].split(".")[:depth] == list(op.namespace_prefix)
            ]
            for member, raw in zip(inside, await self._fetch(inside) if inside else [], strict=True):
                if raw is None:
                    continue
                labels, key = member.split(_SEP, 1)
                item = self._decode(tuple(labels.split(".")), key, raw)
                if op.filter and not all(_matches(item.value.get(k), v) for k, v in op.filter.items()):
                    continue
                found.append(
                    SearchItem(item.namespace, item.key, item.value, item.created_at, item.updated_at)
                )
            if len(members) < _SCAN_BATCH:
                break
        page = found[op.offset : wanted]
        if page and self._refresh(op.refresh_ttl):
            keys = [store_item_key(self._prefix, ".".join(i.namespace), i.key) for i in page]
            await self._store.engine.script("langgraph.store.search", ITEM_TOUCH, keys, ())
        return page

    async def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        for name, number in (("limit", op.limit), ("offset", op.offset)):
            if isinstance(number, bool) or not isinstance(number, int) or number < 0:
                raise InvalidArgumentError(f"{name} must be an int >= 0, got {number!r}")
        namespaces: set[tuple[str, ...]] = set()
        low = "-"
        while True:
            members = await self._members(low, "+")
            if not members:
                break
            low = f"({members[-1]}"
            for member, raw in zip(members, await self._fetch(members), strict=True):
                if raw is not None:
                    namespaces.add(tuple(member.split(_SEP, 1)[0].split(".")))
            if len(members) < _SCAN_BATCH:
                break
        kept = [ns for ns in namespaces if all(_condition_matches(c, ns) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            kept = list({ns[: op.max_depth] for ns in kept})
        return sorted(kept)[op.offset : op.offset + op.limit]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order: a read sees every put and delete before it.

        Every operation is checked (and every put encoded) before anything is sent, so a
        bad one fails the batch with nothing written. Each put or delete is one atomic
        script; consecutive ones travel in one round trip. A batch is not a transaction.
        """
        ops = list(ops)
        now = datetime.now(timezone.utc).isoformat()
        puts: dict[int, Call] = {}
        for position, op in enumerate(ops):
            validate_op_namespace(op)
            if isinstance(op, PutOp):
                puts[position] = self._put_call(op, now)
            elif not isinstance(op, (GetOp, SearchOp, ListNamespacesOp)):
                raise InvalidArgumentError(f"unknown LangGraph store operation: {type(op).__name__}")
        results: list[Result] = []
        pending: list[Call] = []
        for position, op in enumerate(ops):
            if position in puts:
                pending.append(puts[position])
                results.append(None)
                continue
            if pending:
                await self._store.engine.send("langgraph.store.put", pending)
                pending = []
            if isinstance(op, GetOp):
                results.append(await self._get(op))
            elif isinstance(op, SearchOp):
                results.append(await self._search(op))
            else:
                assert isinstance(op, ListNamespacesOp)
                results.append(await self._list_namespaces(op))
        if pending:
            await self._store.engine.send("langgraph.store.put", pending)
        return results

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Not supported: LangGraphStore is async-only (use ``abatch`` / the ``a*`` methods)."""
        raise NotImplementedError("LangGraphStore is async-only: use abatch() and the a* methods")
