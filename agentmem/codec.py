"""orjson encoding of contexts, messages and facts, with the store's size limit.

Layout (``WRITE_CONTEXT`` and ``WRITE_FACTS`` in :mod:`agentmem.scripts`): ``save_context``
writes the whole context as one orjson object (the base, a string key); ``update_context``
and ``remember`` write one hash field per top-level key, each value orjson-encoded, which
override the base's field of that name. The server prefixes every stored value with its
write's 8-byte version; reads strip it. Encoding happens before any I/O, so a value that
cannot be encoded, or is too large, raises before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from agentmem.errors import ContextTooLargeError, MemoryCorruptedError, SerializationError

__all__ = [
    "BASE_FIELD",
    "META_FIELD",
    "VERSION_BYTES",
    "decode_context",
    "decode_fields",
    "decode_messages",
    "encode_context",
    "encode_fields",
    "encode_messages",
    "legacy_base_wins",
    "legacy_version_of",
    "packed_version",
    "stored_payload",
    "stored_version",
]

#: Bytes of the version every stored value starts with (its first byte is 0, which no
#: orjson text starts with).
VERSION_BYTES = 8

# Before 0.3 the versions sat beside the values, in fields no user key can produce (0xFE
# and 0xFF never occur in UTF-8); reads still decode such a hash, the next write rewrites it.
#: 0.2: the version of the last ``save_context`` ("0" when only merges wrote the hash).
META_FIELD = b"\xff"
#: 0.2: the field holding the last ``save_context``'s whole context, one orjson object.
BASE_FIELD = b"\xff\x01"
#: 0.1's replace version field.
LEGACY_REPLACE = b"\xfe\xff"
#: 0.1 and 0.2: fields starting with 0xFE held per-field versions.
VERSION_PREFIX = b"\xfe"


def packed_version(version: int) -> bytes:
    """A write's version as the 8 bytes that prefix every value it stores."""
    return version.to_bytes(VERSION_BYTES, "big")


def stored_payload(value: bytes) -> bytes:
    """A stored value without its version prefix (an older layout's plain value as it is)."""
    return value[VERSION_BYTES:] if value[:1] == b"\x00" else value


def stored_version(value: bytes) -> int | None:
    """The version a stored value starts with; ``None`` for an older layout's plain value."""
    if len(value) >= VERSION_BYTES and value[0] == 0:
        return int.from_bytes(value[:VERSION_BYTES], "big")
    return None


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


def encode_context(values: Mapping[str, Any], *, limit: int, what: str) -> bytes:
    """Encode a whole mapping as one orjson object (a ``save_context`` base), in one pass."""
    if type(values) is not dict:
        if not isinstance(values, Mapping):
            raise SerializationError(f"{what} must be a mapping (dict), not {type(values).__name__}")
        values = dict(values)
    try:
        encoded = _dumps(values, what)
    except SerializationError:
        for key in values:  # orjson's message for a bad key does not name it: say which
            if not isinstance(key, str):
                raise SerializationError(
                    f"{what} keys must be str, got {type(key).__name__}: {key!r}"
                ) from None
        raise
    _check_size(len(encoded), limit, what)
    return encoded


def _decode_base(value: bytes, what: str) -> dict[str, Any]:
    try:
        base = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MemoryCorruptedError(f"{what} base holds undecodable data: {exc}") from exc
    if not isinstance(base, dict):
        raise MemoryCorruptedError(f"{what} base is a {type(base).__name__}, not an object")
    return base


def decode_fields(raw: Sequence[bytes], *, what: str, base: bytes | None = None) -> dict[str, Any]:
    """Decode a flat HGETALL reply (field, value, ...) over ``base`` (a stored base object):
    the base, then the merged fields over it; version prefixes are stripped, an older
    layout's markers and versions skipped (its base field used when ``base`` is None)."""
    if len(raw) % 2:
        raise MemoryCorruptedError(f"{what}: a hash reply of odd length {len(raw)}")
    merged: list[tuple[bytes, bytes]] = []
    legacy_base: bytes | None = None
    legacy_version = 0
    for index in range(0, len(raw), 2):
        field = raw[index]
        lead = field[:1]
        if lead == b"\xff":
            if field == BASE_FIELD:
                legacy_base = raw[index + 1]
            elif field == META_FIELD:
                legacy_version = max(legacy_version, _legacy_version(raw[index + 1]))
            continue
        if lead == VERSION_PREFIX:
            if field == LEGACY_REPLACE:  # 0.1's replace version
                legacy_version = max(legacy_version, _legacy_version(raw[index + 1]))
            continue
        merged.append((field, raw[index + 1]))
    if legacy_base is not None and legacy_base_wins(base, legacy_version):
        result = _decode_base(legacy_base, what)
    elif base is not None:
        result = _decode_base(stored_payload(base), what)
    else:
        result = {}
    for field, value in merged:
        try:
            result[field.decode("utf-8")] = orjson.loads(stored_payload(value))
        except (UnicodeDecodeError, orjson.JSONDecodeError) as exc:
            raise MemoryCorruptedError(f"{what} field {field!r} holds undecodable data: {exc}") from exc
    return result


def legacy_base_wins(base: bytes | None, legacy_version: int) -> bool:
    """Whether a 0.2 process's base (saved into the hash during a rolling upgrade, with the
    version ``legacy_version``) is the newer save: then it is the context's base and this
    layout's ``base`` is not (they are never merged)."""
    return base is None or legacy_version > (stored_version(base) or -1)


def legacy_version_of(raw: Mapping[bytes, bytes]) -> int:
    """The version of the last save an older layout recorded in the hash (0 if none)."""
    return max(_legacy_version(raw.get(META_FIELD, b"")), _legacy_version(raw.get(LEGACY_REPLACE, b"")))


def _legacy_version(text: bytes) -> int:
    """A 0.2 version field's value (decimal microseconds); 0 when it is not one."""
    return int(text) if text.isdigit() else 0


def decode_context(fields: Sequence[bytes], base: bytes | None) -> dict[str, Any] | None:
    """A session's context from its merged fields and base; ``None`` when it has neither."""
    if not fields and base is None:
        return None
    return decode_fields(fields, what="context", base=base)


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
