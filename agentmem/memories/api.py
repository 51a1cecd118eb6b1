"""``store.memories``: add, search, get, delete and list a user's memories by meaning.

Built on the store's engine (:mod:`agentmem.engine`) only: every call is an engine
operation, so it goes through the store's retry deadline, breaker and typed errors.
Embedding happens before any Redis call. The index is created on first use and never
dropped; its routing on a cluster lives in :mod:`agentmem.memories.routing`.
"""

from __future__ import annotations

import builtins
import functools
import hashlib
import operator
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from urllib.parse import unquote

import orjson

from agentmem.calls import Call
from agentmem.errors import (
    InvalidArgumentError,
    MemoryCorruptedError,
    MemoryPermissionError,
    SearchUnavailableError,
    SerializationError,
)
from agentmem.keys import validate_id
from agentmem.memories.embedder import ResolvedEmbedder, embed_texts
from agentmem.memories.index import (
    FIELDS,
    encode_tag,
    ids_args,
    knn_query,
    list_args,
    parse_search,
    search_args,
)
from agentmem.memories.routing import IndexRouter
from agentmem.memories.types import Memory, MemoryHit
from agentmem.scripts import Script, load

if TYPE_CHECKING:
    from agentmem.engine import StoreEngine

__all__ = ["MAX_K", "MAX_TAG_BYTES", "MAX_TEXT_BYTES", "Memories"]

#: Longest memory text, in UTF-8 bytes.
MAX_TEXT_BYTES = 64 * 1024
#: Most hits one search returns.
MAX_K = 1000
#: Longest tag, in UTF-8 bytes: percent-encoded (at most 3x) it stays within the 4096
#: bytes the search module matches a TAG value up to (a longer one is stored but never found).
MAX_TAG_BYTES = 1024
#: Most neighbours one query asks for while it widens past ties at the k-th distance.
_MAX_LIMIT = 4 * MAX_K
_FORGET_BATCH = 500
#: Search hits as ``(key, fields)`` (named here: ``Memories.list`` shadows ``list`` in the class).
Hits = list[tuple[str, dict[str, bytes]]]
_ID = re.compile(r"[0-9a-f]{32}")
_FIELD_SET = frozenset(FIELDS)
_SPACE = re.compile(r"\s+")

#: Stores a memory unless its key exists (the same text for the same user, or a retry of
#: this very add): the first write wins and the stored fields come back, so a retried or
#: repeated add never stores two and always returns what is stored.
ADD_MEMORY = Script("memory_add", load("add", package="agentmem.memories"), flags="")


def now_ms() -> int:
    """The wall clock in ms: a memory's ``created_at`` (tests fake it here)."""
    return int(time.time() * 1000)


def normalize(text: str) -> str:
    """The text a memory is stored and deduplicated by: whitespace runs collapsed, ends trimmed."""
    return _SPACE.sub(" ", text).strip()


def memory_id(text: str) -> str:
    """A memory's id: a digest of its normalized text (one memory per text per user)."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)


def _ms(moment: datetime, name: str, *, up: bool) -> int:
    """``moment`` in whole ms since the epoch, exactly (no float), rounded ``up`` (a lower
    bound) or down (an upper bound): created_at has ms precision, so a bound between two
    milliseconds must not take in the one outside it."""
    if not isinstance(moment, datetime):
        raise InvalidArgumentError(f"{name} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidArgumentError(f"{name} must be an aware datetime (with a tzinfo), got a naive one")
    whole, rest = divmod(moment - _EPOCH, _ONE_MS)
    return whole + 1 if up and rest else whole


def _check_text(text: object, name: str) -> str:
    if not isinstance(text, str):
        raise InvalidArgumentError(f"{name} must be a str, not {type(text).__name__}")
    cleaned = normalize(text)
    if not cleaned:
        raise InvalidArgumentError(f"{name} must not be empty or blank")
    size = len(cleaned.encode("utf-8", "surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise InvalidArgumentError(f"{name} is {size} bytes in UTF-8; the limit is {MAX_TEXT_BYTES}")
    try:
        cleaned.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(f"{name} is not valid Unicode text: {exc.reason}") from exc
    return cleaned


def _check_tags(tags: object, *, allow_none: bool) -> tuple[str, ...] | None:
    if tags is None:
        return None if allow_none else ()
    if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence | set | frozenset):
        raise InvalidArgumentError("tags must be a list of strings (not a single string)")
    checked: list[str] = []
    for tag in tags:
        if not isinstance(tag, str) or not tag:
            raise InvalidArgumentError(f"every tag must be a non-empty str, got {tag!r}")
        try:
            size = len(tag.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidArgumentError(f"tag {tag!r} is not valid Unicode text") from exc
        if size > MAX_TAG_BYTES:
            raise InvalidArgumentError(f"a tag is {size} bytes in UTF-8; the limit is {MAX_TAG_BYTES}")
        if tag not in checked:
            checked.append(tag)
    return tuple(checked)


def _unquoted(text: str) -> str:
    return unquote(text, errors="strict") if "%" in text else text


def _decode(key: str, fields: dict[str, bytes], user_id: str | None) -> Memory:
    try:
        user = _unquoted(fields["user"].decode()) if user_id is None else user_id
        raw_tags = fields["tags"]
        tags = tuple(_unquoted(t) for t in raw_tags.decode().split(",")) if raw_tags else ()
        meta = fields["meta"]
        metadata = {} if meta == b"{}" else orjson.loads(meta)
        created = datetime.fromtimestamp(int(fields["created"]) / 1000, tz=timezone.utc)
        text = fields["text"].decode()
    except (KeyError, ValueError, UnicodeDecodeError, orjson.JSONDecodeError) as exc:
        raise MemoryCorruptedError(f"memory {key} cannot be decoded: {exc}") from exc
    return Memory(key.rsplit(":", 1)[1], user, text, tags, metadata, created)


P = ParamSpec("P")
R = TypeVar("R")


def _observed(operation: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """One span per public call (embedding, index checks and searches inside it); its
    attributes are the operation and the server, never a text, a query or a vector."""

    def wrap(method: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(method)
        async def observed(*args: P.args, **kwargs: P.kwargs) -> R:
            self = args[0]
            assert isinstance(self, Memories)
            async with self.engine.observe(operation):
                return await method(*args, **kwargs)

        return observed

    return wrap


class Memories:
    """A user's memories, recalled by meaning (see the README's Memories section)."""

    def __init__(self, engine: StoreEngine) -> None:
        self.engine = engine
        self.router = IndexRouter(engine)
        embedder = engine.config.embedder  # the config is frozen: resolved once per store
        self._resolved = ResolvedEmbedder(embedder) if embedder is not None else None

    def _embedder(self, operation: str) -> ResolvedEmbedder:
        if self._resolved is None:
            raise InvalidArgumentError(
                f"memories.{operation} needs an embedder: pass embedder=... to AgentMemoryStore "
                "(a LangChain Embeddings, an object with embed(texts), or a callable texts -> vectors)"
            )
        return self._resolved

    # -- writes ------------------------------------------------------------------------

    @_observed("memories.add")
    async def add(
        self,
        user_id: str,
        text: str,
        *,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Memory:
        """Store ``text`` for ``user_id`` (once: the same normalized text returns the memory
        already stored); its vector comes from the store's embedder, before any Redis call."""
        embedder = self._embedder("add")
        validate_id(user_id, kind="user")
        cleaned = _check_text(text, "text")
        checked_tags = _check_tags(tags, allow_none=False) or ()
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise InvalidArgumentError(f"metadata must be a dict, not {type(metadata).__name__}")
        try:
            meta = orjson.dumps(metadata)
        except orjson.JSONEncodeError as exc:
            raise SerializationError(f"metadata cannot be encoded as JSON: {exc}") from exc
        if b"null" in meta:  # orjson writes NaN and infinities as null, silently
            _refuse_non_finite(metadata)
        known = self.router.dims
        (vector,) = await embed_texts(embedder, [cleaned], "document", dims=known)
        dims = len(vector) // 4
        ident = memory_id(cleaned)
        key = self.engine.keys.memory(user_id, ident)
        created = now_ms()
        args = (
            encode_tag(user_id),
            cleaned,
            ",".join(encode_tag(t) for t in checked_tags),
            meta,
            created,
            vector,
        )
        await self.router.ensure_for(key, dims, "memories.add")
        existing = await self.engine.script("memories.add", ADD_MEMORY, (key,), args)
        if existing:
            return _decode(key, dict(zip(FIELDS, existing, strict=True)), user_id)
        return Memory(
            id=ident,
            user_id=user_id,
            text=cleaned,
            tags=checked_tags,
            metadata=orjson.loads(meta),
            created_at=datetime.fromtimestamp(created / 1000, tz=timezone.utc),
        )

    @_observed("memories.delete")
    async def delete(self, user_id: str, memory_id: str) -> bool:
        """Delete one memory (its index entry goes with it); ``True`` if it was there."""
        self._embedder("delete")
        validate_id(user_id, kind="user")
        await self.router.check_engine("memories.delete")
        if not isinstance(memory_id, str) or not _ID.fullmatch(memory_id):
            return False
        key = self.engine.keys.memory(user_id, memory_id)
        (deleted,) = await self.engine.send("memories.delete", (Call(None, (key,), (), command="DEL"),))
        return int(deleted) > 0

    @_observed("memories.forget")
    async def forget(self, user_id: str) -> int:
        """Delete every memory of ``user_id``; how many (``forget_user`` calls this). On a
        server without a query engine there can be none: 0, no error."""
        validate_id(user_id, kind="user")
        try:
            await self.router.check_engine("memories.forget")
        except SearchUnavailableError:
            return 0
        except MemoryPermissionError:
            if self.engine.config.embedder is not None:
                raise
            return 0  # a store not set up for memories, whose ACL user was not granted FT.*
        key = self.engine.keys.memory(user_id, "0")
        deleted = 0
        while True:
            reply = await self.router.search_user(
                key, "memories.forget", lambda name: ids_args(name, user_id, _FORGET_BATCH)
            )
            keys = [hit for hit, _ in parse_search(reply)]
            if not keys:
                return deleted
            calls = [Call(None, (hit,), (), command="UNLINK") for hit in keys]
            deleted += sum(int(r) for r in await self.engine.send("memories.forget", calls))

    # -- reads -------------------------------------------------------------------------

    @_observed("memories.get")
    async def get(self, user_id: str, memory_id: str) -> Memory | None:
        """One memory of ``user_id`` by id, or ``None``."""
        self._embedder("get")
        validate_id(user_id, kind="user")
        await self.router.check_engine("memories.get")
        if not isinstance(memory_id, str) or not _ID.fullmatch(memory_id):
            return None
        key = self.engine.keys.memory(user_id, memory_id)
        (values,) = await self.engine.send("memories.get", (Call(None, (key,), FIELDS, command="HMGET"),))
        if values is None or values[0] is None:
            return None
        return _decode(key, dict(zip(FIELDS, values, strict=True)), user_id)

    @_observed("memories.list")
    async def list(self, user_id: str, *, limit: int = 100) -> list[Memory]:
        """``user_id``'s memories, newest first, at most ``limit`` (1..1000)."""
        self._embedder("list")
        validate_id(user_id, kind="user")
        _check_count(limit, "limit")
        key = self.engine.keys.memory(user_id, "0")
        replies = await self.router.search_user(
            key, "memories.list", lambda name: list_args(name, user_id, limit)
        )
        hits = await self._complete(parse_search(replies), "memories.list")
        return [_decode(k, f, user_id) for k, f in hits]

    @_observed("memories.search")
    async def search(
        self,
        user_id: str | None,
        query: str,
        *,
        k: int = 5,
        tags: Sequence[str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        max_distance: float | None = None,
    ) -> builtins.list[MemoryHit]:
        """The ``k`` memories nearest to ``query`` among ``user_id``'s (every user's with
        ``None``) that match the filters, nearest first (ties: newest first)."""
        embedder = self._embedder("search")
        if user_id is not None:
            validate_id(user_id, kind="user")
        cleaned = _check_text(query, "query")
        _check_count(k, "k")
        wanted_tags = _check_tags(tags, allow_none=True)
        since_ms = None if since is None else _ms(since, "since", up=True)
        until_ms = None if until is None else _ms(until, "until", up=False)
        if max_distance is not None and (
            isinstance(max_distance, bool) or not isinstance(max_distance, (int, float)) or max_distance < 0
        ):
            raise InvalidArgumentError(f"max_distance must be a number >= 0, got {max_distance!r}")
        (vector,) = await embed_texts(embedder, [cleaned], "query", dims=self.router.dims)
        dims = len(vector) // 4
        if wanted_tags == ():  # any of no tag: nothing matches, once the server can search at all
            await self.router.check_engine("memories.search")
            return []
        key = self.engine.keys.memory(user_id, "0") if user_id is not None else ""
        if user_id is not None and self.router.dims is None:
            # First use in this process: make (or check) the index with the query's dimensions.
            # After that search_user ensures the user's node's index itself (and embed_texts
            # has checked the query against the known dimensions): no second lookup per search.
            await self.router.ensure_for(key, dims, "memories.search")
        limit = k + 1  # one more than asked: is the k-th distance tied beyond the cut?
        while True:
            text = knn_query(user=user_id, tags=wanted_tags, since_ms=since_ms, until_ms=until_ms, k=limit)

            def build(name: str, text: str = text, limit: int = limit) -> tuple[Any, ...]:
                return search_args(name, text, vector, limit)

            if user_id is not None:
                replies = [await self.router.search_user(key, "memories.search", build)]
            else:
                replies = await self.router.search_all(dims, "memories.search", build)
            per_reply = [parse_search(reply) for reply in replies]
            # (distance, -created, key, fields): nearest first, ties newest first, then by key
            # (_rank: the fields dicts are never compared). created is SORTABLE: the module
            # returns it even where it leaves other fields out.
            found = [
                (float(fields.get("dist", b"nan")), -int(fields.get("created", b"0") or 0), hit_key, fields)
                for hits in per_reply
                for hit_key, fields in hits
            ]
            found.sort(key=_rank)
            if len(found) <= k or limit >= _MAX_LIMIT:
                break
            kth = found[k - 1][0]
            # A reply cut at `limit` whose farthest hit is as near as the k-th may hide more
            # memories at that distance (ties go newest first): ask again for more.
            if not any(
                len(hits) == limit and float(hits[-1][1].get("dist", b"inf")) <= kth for hits in per_reply
            ):
                break
            limit = min(_MAX_LIMIT, limit * 4)
        if max_distance is not None:
            found = [item for item in found if item[0] <= max_distance]
        top: builtins.list[tuple[float, int, str, dict[str, bytes]]] = []
        seen: set[str] = set()  # a key twice (two shards' replies mid-migration) counts once
        for item in found:
            if item[2] not in seen:
                seen.add(item[2])
                top.append(item)
                if len(top) == k:
                    break
        hits = [(key, fields) for _, _, key, fields in top]
        complete = await self._complete(hits, "memories.search")
        distances = {key: distance for distance, _, key, _ in top}
        return [MemoryHit(_decode(key, fields, user_id), distances[key]) for key, fields in complete]

    async def _complete(self, hits: Hits, operation: str) -> Hits:
        """Hits whose fields the search left out, read by key; a hit deleted since the
        search is left out. On a cluster the module returns a hit's fields only when its
        slot is the index name's slot."""
        missing = [i for i, (_, fields) in enumerate(hits) if not fields.keys() >= _FIELD_SET]
        if not missing:
            return hits
        calls = [Call(None, (hits[i][0],), FIELDS, command="HMGET") for i in missing]
        replies = await self.engine.send(operation, calls)
        done: builtins.list[tuple[str, dict[str, bytes]] | None] = [*hits]
        for i, values in zip(missing, replies, strict=True):
            if not values or all(value is None for value in values):
                done[i] = None  # deleted between the search and this read
                continue
            key, fields = hits[i]
            read = {name: value for name, value in zip(FIELDS, values, strict=False) if value is not None}
            done[i] = (key, {**fields, **read})
        return [hit for hit in done if hit is not None]


#: Nearest first, ties newest first, then by key (never comparing the fields).
_rank = operator.itemgetter(0, 1, 2)


def _check_count(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_K:
        raise InvalidArgumentError(f"{name} must be an int in 1..{MAX_K}, got {value!r}")


def _refuse_non_finite(metadata: Any) -> None:
    import math

    def walk(value: Any) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise SerializationError(
                "metadata holds NaN or an infinity, which JSON cannot carry (orjson would store null)"
            )
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(metadata)
