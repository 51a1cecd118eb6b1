"""Key names of the LangGraph adapters, built from the store's prefix.

A thread's keys share one hash tag, ``{lgt:<thread id>}``, so every script that touches
a thread runs in one cluster slot. A run's index of threads lives under
``{lgr:<run id>}``. Ids are
percent-encoded by :func:`agentmem.keys.encode_id`, as session ids are (an injective
encoding whose output has no ``{``, ``}``, ``:`` or glob character), so the tags
``lgt``/``lgr``/``lgs`` can never collide with the store's own ``s``/``u`` tags.
A BaseStore keeps all its keys under the one tag ``{lgs}``: a namespace-prefix search
reads one index, so the whole LangGraphStore lives in one cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentmem.keys import decode_id, encode_id, escape_glob, validate_id

__all__ = [
    "ThreadKeys",
    "decode_id",
    "encode_id",
    "run_key",
    "store_index_key",
    "store_item_key",
    "store_search_index",
    "store_vector_key",
    "store_vector_prefix",
    "thread_from_index_key",
    "thread_keys",
    "thread_pattern",
]


@dataclass(frozen=True, slots=True)
class ThreadKeys:
    """One thread's keys, in the order the saver's scripts take them."""

    index: str  # sorted set (lex): "<ns>\\0<checkpoint id>" of every checkpoint
    checkpoints: str  # hash: a checkpoint's record, metadata, channel versions, run id
    blobs: str  # hash: "<ns>\\0<channel>\\0<version>" -> a channel value
    writes: str  # hash: "<ns>\\0<checkpoint id>\\0<task id>\\0<idx>" -> a pending write
    write_index: str  # sorted set (lex) of the writes hash's fields

    def all(self) -> tuple[str, str, str, str, str]:
        return (self.index, self.checkpoints, self.blobs, self.writes, self.write_index)


def _thread_tag(prefix: str, thread_id: str) -> str:
    return f"{prefix}:{{lgt:{encode_id(validate_id(thread_id, kind='thread'))}}}"


def thread_keys(prefix: str, thread_id: str) -> ThreadKeys:
    tag = _thread_tag(prefix, thread_id)
    return ThreadKeys(f"{tag}:idx", f"{tag}:cp", f"{tag}:blob", f"{tag}:w", f"{tag}:widx")


def run_key(prefix: str, run_id: str) -> str:
    """A set of the ids of threads that hold checkpoints of the run."""
    return f"{prefix}:{{lgr:{encode_id(validate_id(run_id, kind='run'))}}}:threads"


def thread_pattern(prefix: str) -> str:
    """A SCAN MATCH pattern for the index key of every thread under ``prefix``."""
    return f"{escape_glob(prefix)}:{{lgt:*}}:idx"


def thread_from_index_key(prefix: str, key: bytes | str) -> str | None:
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    head, tail = f"{prefix}:{{lgt:", "}:idx"
    if not (text.startswith(head) and text.endswith(tail)):
        return None
    return decode_id(text[len(head) : -len(tail)])


def store_index_key(prefix: str) -> str:
    """The index of every item of a LangGraphStore (one hash tag for the whole store)."""
    return f"{prefix}:{{lgs}}:idx"


def store_item_key(prefix: str, namespace: str, key: str) -> str:
    """One item's hash; ``namespace`` is the labels joined with ``.``."""
    return f"{prefix}:{{lgs}}:i:{encode_id(namespace)}:{encode_id(key)}"


def store_vector_prefix(prefix: str) -> str:
    """The key prefix of every vector document (the search index's ``PREFIX``)."""
    return f"{prefix}:{{lgs}}:v:"


def store_vector_key(prefix: str, namespace: str, key: str, number: int) -> str:
    """The hash of an item's ``number``-th vector (one per indexed text of the item)."""
    return f"{store_vector_prefix(prefix)}{encode_id(namespace)}:{encode_id(key)}:{number}"


def store_search_index(prefix: str) -> str:
    """The name of the store's search index; its hash tag is the items' (one slot on a
    cluster, so a search's hits come back with their fields)."""
    return f"{prefix}:{{lgs}}:vidx"
