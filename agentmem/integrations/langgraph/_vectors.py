"""The search index of a :class:`LangGraphStore` made with ``index=`` (LangGraph's ``IndexConfig``).

Each indexed text of an item (``fields``, or a put's ``index=[paths]``) is embedded into
one vector document (see :mod:`._store_scripts`), indexed by a FLAT (exact) cosine index
created on first use under the store's hash tag ``{lgs}``: on a Redis Cluster the index
and every document it covers live on the one shard that owns that slot, which every
search is routed to. A search is one ``FT.SEARCH`` whose query holds the namespace prefix
and the filter (as tags, :mod:`._filters`) before the KNN, so the ``k`` nearest are taken
among the items that match; an item with several vectors counts once, at its nearest.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

from langgraph.store.base import IndexConfig
from langgraph.store.base.embed import ensure_embeddings, get_text_at_path, tokenize_path

from agentmem.calls import Call
from agentmem.engine import StoreEngine
from agentmem.errors import (
    AgentMemoryError,
    IndexMismatchError,
    InvalidArgumentError,
    SearchUnavailableError,
)
from agentmem.integrations.langgraph._filters import FIELD
from agentmem.integrations.langgraph._keys import (
    store_index_key,
    store_search_index,
    store_vector_prefix,
)
from agentmem.memories.embedder import ResolvedEmbedder, embed_texts
from agentmem.memories.index import (
    IndexShape,
    is_missing_index,
    is_unknown_command,
    parse_search,
    shape_of,
    wait_indexed,
)

__all__ = ["VectorIndex"]

_VECTOR = "vec"
_DISTANCE = "d"
_MEMBER = "m"
_INDEX_KEYS = frozenset({"dims", "embed", "fields"})
#: Extra keys of other stores' IndexConfig (Postgres: pgvector options) accepted and unused.
_FOREIGN_KEYS = frozenset({"ann_index_config", "distance_type", "text_fields"})


def _check_config(config: Any) -> tuple[int, Any, list[str]]:
    if not isinstance(config, Mapping):
        raise InvalidArgumentError(f"index must be a LangGraph IndexConfig dict, not {type(config).__name__}")
    unknown = set(config) - _INDEX_KEYS - _FOREIGN_KEYS
    if unknown:
        raise InvalidArgumentError(f"unknown IndexConfig keys: {sorted(unknown)}")
    dims = config.get("dims")
    if isinstance(dims, bool) or not isinstance(dims, int) or not 1 <= dims <= 32_768:
        raise InvalidArgumentError(f"index['dims'] must be an int in 1..32768, got {dims!r}")
    distance = config.get("distance_type", "cosine")
    if distance != "cosine":
        raise InvalidArgumentError(
            f"index['distance_type'] {distance!r}: LangGraphStore ranks by cosine only"
        )
    if config.get("embed") is None:
        raise InvalidArgumentError(
            "index['embed'] is required: an Embeddings, a function, or 'provider:model'"
        )
    fields = config.get("fields") or ["$"]
    if not isinstance(fields, (list, tuple)) or not all(isinstance(f, str) and f for f in fields):
        raise InvalidArgumentError(f"index['fields'] must be a list of JSON paths, got {fields!r}")
    try:
        embeddings = ensure_embeddings(config["embed"])
    except (ValueError, ImportError) as exc:  # a "provider:model" LangChain cannot load
        raise InvalidArgumentError(f"index['embed'] {config['embed']!r}: {exc}") from exc
    return dims, embeddings, list(fields)


class VectorIndex:
    """Embedding, index creation and ranked search for one LangGraphStore."""

    def __init__(self, engine: StoreEngine, prefix: str, config: IndexConfig) -> None:
        self.dims, embeddings, self.fields = _check_config(config)
        self._embeddings = ResolvedEmbedder(embeddings)
        self._paths = {path: self._tokens(path) for path in self.fields}
        self._engine = engine
        self.name = store_search_index(prefix)
        self._prefix = prefix
        self._route = store_index_key(prefix)
        self._ready = False
        self._creating: asyncio.Lock | None = None

    @staticmethod
    def _tokens(path: str) -> list[str] | str:
        if path == "$":
            return "$"
        try:
            return tokenize_path(path)
        except Exception as exc:  # LangGraph's own parser: a malformed path
            raise InvalidArgumentError(f"bad index path {path!r}: {exc}") from exc

    # -- embedding ---------------------------------------------------------------

    def texts(self, value: Mapping[str, Any], paths: Sequence[str] | None) -> list[str]:
        """The texts of ``value`` to embed: at ``paths`` (a put's ``index=``) or the config's
        ``fields``; a path the value lacks gives none."""
        chosen = self._paths if paths is None else {path: self._tokens(path) for path in paths}
        texts: list[str] = []
        for tokens in chosen.values():
            texts.extend(text for text in get_text_at_path(dict(value), tokens) if text)
        return texts

    async def embed_documents(self, texts: Sequence[str]) -> list[bytes]:
        if not texts:
            return []
        return await embed_texts(self._embeddings, texts, "document", dims=self.dims)

    async def embed_query(self, text: str) -> bytes:
        (blob,) = await embed_texts(self._embeddings, [text], "query", dims=self.dims)
        return blob

    # -- the index ---------------------------------------------------------------

    def _call(self, command: str, *args: Any) -> Call:
        return Call(None, (), (self.name, *args), command=command, route=self._route)

    async def ensure(self) -> None:
        """Create the index on first use (safe when several processes race to); raise
        :class:`SearchUnavailableError` on a server without a query engine and
        :class:`IndexMismatchError` when an index of another shape has the name."""
        if self._ready:
            return
        if self._creating is None:
            self._creating = asyncio.Lock()
        async with self._creating:
            if not self._ready:
                await self._create()
                self._ready = True

    async def _create(self) -> None:
        schema = (
            "ON", "HASH", "PREFIX", "1", store_vector_prefix(self._prefix), "SCHEMA",
            FIELD, "TAG", "CASESENSITIVE",
            _VECTOR, "VECTOR", "FLAT", "6",
            "TYPE", "FLOAT32", "DIM", str(self.dims), "DISTANCE_METRIC", "COSINE",
        )  # fmt: skip
        try:
            await self._engine.send("langgraph.store.index", (self._call("FT.CREATE", *schema),))
        except AgentMemoryError as exc:
            if "already exists" not in str(exc).lower():
                raise self._unavailable(exc) from exc
            await self._check_existing()

    def _unavailable(self, exc: AgentMemoryError) -> AgentMemoryError:
        if is_unknown_command(exc):
            return SearchUnavailableError(
                "LangGraphStore(index=...) needs a query engine (FT.CREATE/FT.SEARCH) and this server "
                "has none: use Redis 8, Redis Stack, valkey-search or a managed Redis with search "
                f"(every call without a query keeps working): {exc}"
            )
        return exc

    async def _check_existing(self) -> None:
        info = await self._info()
        wanted = IndexShape(store_vector_prefix(self._prefix), self.dims, "FLAT")
        found = shape_of(info)
        if found != wanted:
            raise IndexMismatchError(
                f"search index {self.name!r} exists as {found} where this LangGraphStore needs "
                f"{wanted} (another embedder's dimensions?); agentmem never drops an index: drop it "
                "(FT.DROPINDEX) or use another prefix"
            )

    async def _indexed(self) -> None:
        """Wait (up to ``retry_deadline``) until an index made over existing documents (a
        reshard moved them here) has taken them in: the module builds it in the background."""
        await wait_indexed(self._info, self._engine.config.retry_deadline)

    async def _info(self) -> Any:
        (info,) = await self._engine.send("langgraph.store.index", (self._call("FT.INFO"),))
        return info

    # -- search ------------------------------------------------------------------

    async def nearest(self, vector: bytes, clauses: Sequence[str], k: int) -> list[tuple[str, float]]:
        """Up to ``k`` vector documents nearest ``vector`` among those ``clauses`` admit, as
        (item member, cosine distance), nearest first."""
        await self.ensure()
        where = f"({' '.join(clauses)})" if clauses else "*"
        args = (
            f"{where}=>[KNN {k} @{_VECTOR} $B AS {_DISTANCE}]", "PARAMS", "2", "B", vector,
            "SORTBY", _DISTANCE, "ASC", "LIMIT", "0", str(k), "RETURN", "2", _DISTANCE, _MEMBER,
            "TIMEOUT", "0", "DIALECT", "2",
        )  # fmt: skip
        try:
            (reply,) = await self._engine.send("langgraph.store.search", (self._call("FT.SEARCH", *args),))
        except AgentMemoryError as exc:
            if not is_missing_index(exc):
                raise self._unavailable(exc) from exc
            self._ready = False  # dropped, or its slot moved to a node without it: make it again
            await self.ensure()
            await self._indexed()
            (reply,) = await self._engine.send("langgraph.store.search", (self._call("FT.SEARCH", *args),))
        return _hits(reply)


def _hits(reply: Any) -> list[tuple[str, float]]:
    """(item member, distance) of each hit of an FT.SEARCH reply."""
    hits: list[tuple[str, float]] = []
    for key, fields in parse_search(reply):
        member, distance = fields.get(_MEMBER), fields.get(_DISTANCE)
        if member is None or distance is None:
            raise AgentMemoryError(f"search hit {key!r} came back without its fields")
        value = float(distance)
        hits.append((member.decode(), value if math.isfinite(value) else 2.0))
    return hits
