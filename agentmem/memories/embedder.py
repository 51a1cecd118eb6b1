"""The embedder protocol: what turns memory texts and queries into vectors.

Three shapes are accepted, checked in this order:

1. a LangChain ``Embeddings`` (anything with ``aembed_documents`` and ``aembed_query``):
   memories go through ``aembed_documents``, queries through ``aembed_query``, because many
   models (E5, BGE...) embed a passage and a question differently;
2. any object with ``embed(texts) -> list[list[float]]``, sync or async (it may also have
   ``embed_query(texts)`` for queries);
3. a plain callable ``texts -> vectors``, sync or async.

A synchronous embedder runs in a worker thread, so a slow model never blocks the loop.
Every failure (it raised, returned the wrong number of vectors, vectors of the wrong
length, not numbers, not finite) is an :class:`~agentmem.errors.EmbeddingError`, raised
before any Redis call.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from array import array
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol, cast, runtime_checkable

from agentmem.errors import EmbeddingError, InvalidArgumentError

__all__ = ["Embedder", "ResolvedEmbedder", "SupportsEmbed", "check_embedder", "embed_texts", "to_float32"]


@runtime_checkable
class SupportsEmbed(Protocol):
    """An object with ``embed(texts)`` (sync or async)."""

    def embed(self, texts: list[str]) -> Any: ...


#: What ``embedder=`` accepts (see the module docstring); typed loosely on purpose, so a
#: LangChain ``Embeddings`` or a model's bound method fits without an adapter.
Embedder = Any

Purpose = Literal["document", "query"]


def check_embedder(embedder: object) -> None:
    """Raise :class:`InvalidArgumentError` when ``embedder`` has none of the three shapes."""
    if hasattr(embedder, "aembed_documents") and hasattr(embedder, "aembed_query"):
        return
    if callable(getattr(embedder, "embed", None)) or callable(embedder):
        return
    raise InvalidArgumentError(
        "embedder must be a LangChain Embeddings, an object with embed(texts), or a callable "
        f"texts -> vectors; got {type(embedder).__name__}"
    )


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - an async __call__ counts too
    )


async def _in_thread(function: Any, argument: Any) -> Any:
    result = await asyncio.to_thread(function, argument)
    if inspect.isawaitable(result):  # a sync wrapper that returns a coroutine
        result = await result
    return result


def _caller(function: Any) -> Callable[[list[str]], Awaitable[Any]]:
    """``function(texts)`` as a coroutine function: awaited as is if async, else in a thread."""
    if _is_async(function):
        return cast("Callable[[list[str]], Awaitable[Any]]", function)
    return functools.partial(_in_thread, function)


def _resolve(embedder: Any, purpose: Purpose) -> Callable[[list[str]], Awaitable[Any]]:
    """The coroutine function that embeds a batch of texts for ``purpose`` (found once per
    embedder and purpose, not on every call)."""
    if hasattr(embedder, "aembed_documents") and hasattr(embedder, "aembed_query"):
        if purpose == "query":

            async def queries(texts: list[str]) -> Any:
                return [await embedder.aembed_query(text) for text in texts]

            return queries
        return cast("Callable[[list[str]], Awaitable[Any]]", embedder.aembed_documents)
    method = getattr(embedder, "embed", None)
    if callable(method):
        query_method = getattr(embedder, "embed_query", None)
        if purpose == "query" and callable(query_method):
            return _caller(query_method)
        return _caller(method)
    return _caller(embedder)


class ResolvedEmbedder:
    """An embedder with the coroutine function for each purpose found once (not on every
    call); a store's memories and the LangGraph store each hold one for their embedder, so
    nothing outlives them."""

    __slots__ = ("_calls", "embedder")

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder
        self._calls: dict[str, Callable[[list[str]], Awaitable[Any]]] = {}

    def call(self, purpose: Purpose) -> Callable[[list[str]], Awaitable[Any]]:
        found = self._calls.get(purpose)
        if found is None:
            found = self._calls[purpose] = _resolve(self.embedder, purpose)
        return found


def to_float32(vector: Any, dims: int | None, *, index: int) -> bytes:
    """One vector as native FLOAT32 bytes (what the index takes); :class:`EmbeddingError` if
    it is not ``dims`` finite numbers."""
    if isinstance(vector, array) and vector.typecode == "f":  # already FLOAT32: no copy per item
        values: Any = vector
        if dims is not None and len(values) != dims:
            raise EmbeddingError(
                f"the embedder returned a vector of {len(values)} dimensions where {dims} were expected "
                f"(vector {index}); the index was built for {dims}"
            )
        # One C-level sum: NaN or an infinity makes it non-finite (384 FLOAT32 values cannot
        # overflow a double); any() is true unless every value is zero.
        if not values or not math.isfinite(sum(values)) or not any(values):
            raise EmbeddingError(f"the embedder's vector {index} is empty, all zeros, or holds NaN/infinity")
        return bytes(values.tobytes())
    try:
        values = [float(x) for x in vector]
    except (TypeError, ValueError) as exc:
        raise EmbeddingError(f"the embedder's vector {index} is not a sequence of numbers ({exc})") from exc
    if not values:
        raise EmbeddingError(f"the embedder returned an empty vector (vector {index})")
    if dims is not None and len(values) != dims:
        raise EmbeddingError(
            f"the embedder returned a vector of {len(values)} dimensions where {dims} were expected "
            f"(vector {index}); the index was built for {dims}"
        )
    if not all(math.isfinite(x) for x in values):
        raise EmbeddingError(f"the embedder's vector {index} holds NaN or infinity")
    if not any(values):
        raise EmbeddingError(f"the embedder's vector {index} is all zeros (no cosine distance to it)")
    packed = array("f", values)
    if packed.itemsize != 4:  # pragma: no cover - every CPython platform has a 4-byte float
        raise EmbeddingError("this platform's array('f') is not FLOAT32")
    if not math.isfinite(sum(map(abs, packed))) or not any(packed):
        raise EmbeddingError(
            f"the embedder's vector {index} is out of FLOAT32's range: as stored it holds infinity "
            "(a value above 3.4e38) or is all zeros (every value below 1.4e-45)"
        )
    return packed.tobytes()


async def embed_texts(
    embedder: ResolvedEmbedder, texts: Sequence[str], purpose: Purpose, *, dims: int | None = None
) -> list[bytes]:
    """Embed ``texts``; return one FLOAT32 blob each, or raise :class:`EmbeddingError`."""
    batch = list(texts)
    try:
        vectors = await embedder.call(purpose)(batch)
    except EmbeddingError:
        raise
    except Exception as exc:
        raise EmbeddingError(f"the embedder raised {type(exc).__name__}: {exc}") from exc
    try:
        count = len(vectors)
    except TypeError:
        raise EmbeddingError(
            f"the embedder returned {type(vectors).__name__}, not a list of vectors"
        ) from None
    if count != len(batch):
        raise EmbeddingError(f"the embedder returned {count} vectors for {len(batch)} texts")
    blobs = [to_float32(vector, dims, index=i) for i, vector in enumerate(vectors)]
    if dims is None and len({len(blob) for blob in blobs}) > 1:
        raise EmbeddingError("the embedder returned vectors of different lengths in one batch")
    return blobs
