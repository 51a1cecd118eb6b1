"""The memories index: its schema, the queries run on it, and what its replies mean.

Pure functions, no I/O: :mod:`agentmem.memories.api` sends what these build (and
:func:`wait_indexed` only awaits the ``FT.INFO`` reads its caller sends).

One hash per memory (see :meth:`agentmem.keys.KeySchema.memory`) with these fields, every
one written on every record (a record missing an indexed field would silently never be
found):

``user``     TAG, the percent-encoded user id (case-sensitive)
``tags``     TAG, the percent-encoded tags joined by ``,`` (``""`` for none; case-sensitive)
``created``  NUMERIC SORTABLE, ms since the epoch (UTC)
``vec``      VECTOR FLOAT32, cosine (FLAT by default: exact; HNSW on request)
``text``     the memory's text (not indexed)
``meta``     the metadata as JSON (not indexed)

Every value that goes into a query is escaped (:func:`escape_tag`), so no id or tag can
change the query's meaning, whatever characters it holds.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = [
    "FIELDS",
    "IndexShape",
    "create_args",
    "encode_tag",
    "escape_tag",
    "ids_args",
    "info_fields",
    "is_missing_index",
    "is_unknown_command",
    "knn_query",
    "list_args",
    "parse_search",
    "search_args",
    "shape_of",
    "wait_indexed",
]

#: The hash fields a search returns and a read takes, in this order.
FIELDS = ("user", "text", "tags", "meta", "created")
_NOT_PLAIN = re.compile(r"[^A-Za-z0-9_]")


@functools.lru_cache(maxsize=4096)  # the same few users and tags come back every call
def encode_tag(value: str) -> str:
    """A tag or id as stored in a TAG field: percent-encoded, so it holds no separator."""
    return quote(value, safe="", encoding="utf-8", errors="strict")


def escape_tag(value: str) -> str:
    """A stored TAG value escaped for a query (every character but ``[A-Za-z0-9_]``)."""
    return _NOT_PLAIN.sub(lambda m: "\\" + m.group(0), value)


@dataclass(frozen=True, slots=True)
class IndexShape:
    """What an index was built as: what a store checks before it uses an existing one."""

    prefix: str
    dims: int
    algorithm: str  # "FLAT" or "HNSW"


def create_args(name: str, shape: IndexShape) -> tuple[Any, ...]:
    """``FT.CREATE`` arguments (after the command name) for ``shape``."""
    return (
        name,
        "ON", "HASH",
        "PREFIX", 1, shape.prefix,
        "SCHEMA",
        "user", "TAG", "CASESENSITIVE",
        "tags", "TAG", "CASESENSITIVE",
        "created", "NUMERIC", "SORTABLE",
        "vec", "VECTOR", shape.algorithm, 6,
        "TYPE", "FLOAT32", "DIM", shape.dims, "DISTANCE_METRIC", "COSINE",
    )  # fmt: skip


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def wait_indexed(read_info: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    """``FT.INFO`` (read by ``read_info``) once the index has taken in the documents that were
    there before it was created (the module indexes them in the background), or the last
    reply after ``seconds``: what a search right after a (re)creation must wait for, or it
    misses them silently."""
    deadline = time.monotonic() + seconds
    while True:
        info = await read_info()
        if int(info_fields(info).get("indexing", 0) or 0) == 0 or time.monotonic() > deadline:
            return info
        await asyncio.sleep(0.01)


def info_fields(reply: Any) -> dict[str, Any]:
    """``FT.INFO``'s flat reply as a dict with str keys (values as sent)."""
    if isinstance(reply, dict):
        return {_text(k): v for k, v in reply.items()}
    items = list(reply)
    return {_text(items[i]): items[i + 1] for i in range(0, len(items) - 1, 2)}


def shape_of(reply: Any) -> IndexShape | None:
    """The shape ``FT.INFO`` describes, or ``None`` when it is not a memories index."""
    info = info_fields(reply)
    definition = info.get("index_definition") or []
    prefixes: Any = info_fields(definition).get("prefixes") or [b""]
    for attribute in info.get("attributes") or []:
        fields = info_fields(attribute)
        if _text(fields.get("identifier", "")) == "vec":
            return IndexShape(
                prefix=_text(prefixes[0]),
                dims=int(_text(fields.get("dim", 0))),
                algorithm=_text(fields.get("algorithm", "")).upper(),
            )
    return None


def is_unknown_command(exc: BaseException) -> bool:
    """The server has no query engine (``unknown command 'FT.SEARCH'``)."""
    text = str(exc).lower()
    return "unknown command" in text and "ft." in text


def is_missing_index(exc: BaseException) -> bool:
    """The index is not there (``no such index``, ``Unknown index name``)."""
    text = str(exc).lower()
    return "no such index" in text or "unknown index name" in text


def knn_query(
    *,
    user: str | None,
    tags: Sequence[str] | None,
    since_ms: int | None,
    until_ms: int | None,
    k: int,
) -> str:
    """The hybrid query: filters first (inside the query, so ``k`` come back whenever ``k``
    match), then the ``k`` nearest by cosine distance as ``dist``."""
    filters: list[str] = []
    if user is not None:
        filters.append(f"@user:{{{escape_tag(encode_tag(user))}}}")
    if tags:
        filters.append("@tags:{" + " | ".join(escape_tag(encode_tag(tag)) for tag in tags) + "}")
    if since_ms is not None or until_ms is not None:
        low = "-inf" if since_ms is None else str(since_ms)
        high = "+inf" if until_ms is None else str(until_ms)
        filters.append(f"@created:[{low} {high}]")
    where = "(" + " ".join(filters) + ")" if filters else "*"
    return f"{where}=>[KNN {k} @vec $vector AS dist]"


# Every ``FT.SEARCH`` agentmem sends carries ``TIMEOUT 0``: RediSearch's default query timeout
# (500 ms, ``ON_TIMEOUT RETURN``) would otherwise answer a slow search under load with the
# hits found so far, a partial result that looks complete. With 0 a search runs to the end
# (the store's ``socket_timeout`` still bounds the wait).
def search_args(name: str, query: str, vector: bytes, limit: int) -> tuple[Any, ...]:
    """``FT.SEARCH`` arguments: the hits' fields and distance, nearest first."""
    return (
        name, query,
        "PARAMS", 2, "vector", vector,
        "SORTBY", "dist", "ASC",
        "RETURN", len(FIELDS) + 1, "dist", *FIELDS,
        "LIMIT", 0, limit,
        "TIMEOUT", 0,
        "DIALECT", 2,
    )  # fmt: skip


def list_args(name: str, user: str, limit: int) -> tuple[Any, ...]:
    """``FT.SEARCH`` arguments for a user's memories, newest first."""
    return (
        name, f"@user:{{{escape_tag(encode_tag(user))}}}",
        "SORTBY", "created", "DESC",
        "RETURN", len(FIELDS), *FIELDS,
        "LIMIT", 0, limit,
        "TIMEOUT", 0,
        "DIALECT", 2,
    )  # fmt: skip


def _resp3_hit(hit: Any) -> tuple[str, dict[str, bytes]]:
    if b"id" in hit:  # the usual shape, bytes keys and values: no per-field conversion
        extra = hit.get(b"extra_attributes") or {}
        return hit[b"id"].decode(), {k.decode(): v for k, v in extra.items()}
    data = info_fields(hit)
    extra = data.get("extra_attributes") or {}
    fields = {_text(k): v if isinstance(v, bytes) else str(v).encode() for k, v in dict(extra).items()}
    return _text(data.get("id", "")), fields


def ids_args(name: str, user: str, limit: int) -> tuple[Any, ...]:
    """``FT.SEARCH`` arguments for the keys of a user's memories (no fields)."""
    return (
        name,
        f"@user:{{{escape_tag(encode_tag(user))}}}",
        "NOCONTENT",
        "LIMIT",
        0,
        limit,
        "TIMEOUT",
        0,
        "DIALECT",
        2,
    )


def parse_search(reply: Any) -> list[tuple[str, dict[str, bytes]]]:
    """``FT.SEARCH``'s reply (RESP2 list or RESP3 map) as ``(key, fields)`` pairs (fields may
    be missing: see ``Memories._complete``)."""
    if isinstance(reply, dict):
        results = reply.get(b"results", reply.get("results")) or []
        return [_resp3_hit(hit) for hit in results]
    items = list(reply)
    hits: list[tuple[str, dict[str, bytes]]] = []
    position = 1
    while position < len(items):
        key = _text(items[position])
        fields: dict[str, bytes] = {}
        if position + 1 < len(items) and isinstance(items[position + 1], list):
            raw = items[position + 1]
            for i in range(0, len(raw) - 1, 2):
                value = raw[i + 1]
                fields[_text(raw[i])] = value if isinstance(value, bytes) else str(value).encode()
            position += 2
        else:
            position += 1
        hits.append((key, fields))
    return hits
