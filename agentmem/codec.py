"""orjson encoding of contexts, messages and facts, with the store's size limit.

A context (or a user's facts) is stored as a Redis Hash: one field per top-level
key, its value orjson-encoded. Encoding happens before any I/O, so a value that
cannot be encoded, or is too large, raises before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from agentmem.errors import ContextTooLargeError, MemoryCorruptedError, SerializationError

__all__ = [
    "META_FIELD",
    "decode_fields",
    "decode_messages",
    "encode_fields",
    "encode_messages",
]

#: A hash field no user key can produce: 0xFF never occurs in UTF-8. It marks that a
#: context exists (so an empty context is still "a context", not "none").
META_FIELD = b"\xff"
#: Fields starting with 0xFE hold per-field versions (see ``WRITE_HASH``); never user data.
VERSION_PREFIX = b"\xfe"


def _non_finite(value: Any) -> bool:
    """Whether a NaN or an infinity hides in ``value`` (dicts, lists, tuples, dataclasses)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(item) for item in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return any(_non_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    return False


def _dumps(value: Any, what: str) -> bytes:
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise SerializationError(f"{what} cannot be encoded as JSON: {exc}") from exc
    # orjson writes NaN and +-inf as null, silently. Only output holding "null" can hide
    # one, so the common case costs one substring search of the encoded bytes.
    if b"null" in encoded and _non_finite(value):
        raise SerializationError(
            f"{what} holds NaN or an infinity, which JSON cannot carry (orjson would store null); "
            "replace it (e.g. with None or a string) before writing"
        )
    return encoded


def _check_size(size: int, limit: int, what: str) -> None:
    if size > limit:
        raise ContextTooLargeError(
            f"{what} encodes to {size} bytes, over the store's max_value_bytes={limit}; nothing was written"
        )


def encode_fields(values: Mapping[str, Any], *, limit: int, what: str) -> list[bytes]:
    """Encode a mapping as a flat ``[field, value, field, value, ...]`` list of bytes."""
    if not isinstance(values, Mapping):
        raise SerializationError(f"{what} must be a mapping (dict), not {type(values).__name__}")
    flat: list[bytes] = []
    size = 0
    for key, value in values.items():
        if not isinstance(key, str):
            raise SerializationError(f"{what} keys must be str, got {type(key).__name__}: {key!r}")
        try:
            field = key.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SerializationError(f"{what} key {key!r} is not valid Unicode") from exc
        encoded = _dumps(value, f"{what} field {key!r}")
        size += len(field) + len(encoded)
        flat += (field, encoded)
    _check_size(size, limit, what)
    return flat


def decode_fields(raw: Iterable[bytes], *, what: str) -> dict[str, Any]:
    """Decode a flat HGETALL reply (field, value, ...), skipping the meta field."""
    items = list(raw)
    result: dict[str, Any] = {}
    for field, value in zip(items[::2], items[1::2], strict=True):
        if field == META_FIELD or field.startswith(VERSION_PREFIX):
            continue
        try:
            result[field.decode("utf-8")] = orjson.loads(value)
        except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
            raise MemoryCorruptedError(f"{what} field {field!r} holds undecodable data: {exc}") from exc
    return result


def encode_messages(messages: Iterable[Mapping[str, Any]], *, limit: int) -> list[bytes]:
    """Encode a batch of messages (each a mapping) for RPUSH."""
    if isinstance(messages, (str, bytes, Mapping)):
        raise SerializationError("messages must be a list of mappings, not a single value")
    encoded: list[bytes] = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise SerializationError(
                f"message {index} must be a mapping (dict), not {type(message).__name__}"
            )
        encoded.append(_dumps(message, f"message {index}"))
    _check_size(sum(map(len, encoded)), limit, "the message batch")
    return encoded


def decode_messages(raw: Iterable[bytes]) -> list[dict[str, Any]]:
    """Decode LRANGE items; a non-object item is corruption."""
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        try:
            message = orjson.loads(item)
        except orjson.JSONDecodeError as exc:
            raise MemoryCorruptedError(f"history item {index} is not valid JSON: {exc}") from exc
        if not isinstance(message, dict):
            raise MemoryCorruptedError(f"history item {index} is a {type(message).__name__}, not an object")
        messages.append(message)
    return messages
