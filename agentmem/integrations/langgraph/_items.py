"""What a LangGraphStore checks and encodes before it sends anything: TTLs in minutes,
namespaces and keys, item values as JSON, and stored items decoded back."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from langgraph.store.base import Item, MatchCondition, TTLConfig

from agentmem.errors import (
    ContextTooLargeError,
    InvalidArgumentError,
    MemoryCorruptedError,
    SerializationError,
)

__all__ = [
    "SEP",
    "check_page",
    "check_ttl_config",
    "condition_matches",
    "decode_item",
    "encode_value",
    "item_key",
    "minutes_to_ms",
    "namespace_text",
]

#: Between an item's namespace and its key in the index's members.
SEP = "\0"
_TTL_KEYS = frozenset({"default_ttl", "refresh_on_read", "sweep_interval_minutes", "omit_expired"})


def minutes_to_ms(minutes: float | None, what: str) -> int:
    if minutes is None:
        return 0
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or not math.isfinite(minutes):
        raise InvalidArgumentError(f"{what} must be minutes (a finite number) or None, got {minutes!r}")
    if minutes <= 0:
        raise InvalidArgumentError(f"{what} must be > 0 minutes, got {minutes!r}")
    return max(1, int(minutes * 60_000))


def check_ttl_config(ttl: TTLConfig | None) -> TTLConfig | None:
    if ttl is None:
        return None
    if not isinstance(ttl, Mapping):
        raise InvalidArgumentError(f"ttl must be a LangGraph TTLConfig dict, not {type(ttl).__name__}")
    unknown = set(ttl) - _TTL_KEYS
    if unknown:
        raise InvalidArgumentError(f"unknown TTLConfig keys: {sorted(unknown)}")
    minutes_to_ms(ttl.get("default_ttl"), "ttl['default_ttl']")
    return ttl


def check_page(limit: object, offset: object) -> None:
    for name, number in (("limit", limit), ("offset", offset)):
        if isinstance(number, bool) or not isinstance(number, int) or number < 0:
            raise InvalidArgumentError(f"{name} must be an int >= 0, got {number!r}")


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Mapping):
        return any(_non_finite(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_non_finite(item) for item in value)
    return False


def namespace_text(labels: Sequence[str], *, allow_empty: bool = False) -> str:
    """The labels joined with ``.`` (LangGraph forbids ``.`` and NUL in a label)."""
    if not labels and not allow_empty:
        raise InvalidArgumentError("a namespace needs at least one label")
    return ".".join(labels)


def item_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidArgumentError(f"an item key must be a str, not {type(key).__name__}")
    if SEP in key:
        raise InvalidArgumentError(f"an item key must not contain a NUL character: {key!r}")
    return key


def encode_value(value: Mapping[str, Any], limit: int) -> bytes:
    """An item's value as JSON; a typed error for what JSON (or ``max_value_bytes``) refuses."""
    if not isinstance(value, Mapping):
        raise SerializationError(f"an item's value must be a dict, not {type(value).__name__}")
    try:
        encoded = orjson.dumps(dict(value))
    except (orjson.JSONEncodeError, TypeError) as exc:
        raise SerializationError(f"an item's value cannot be encoded as JSON: {exc}") from exc
    if b"null" in encoded and _non_finite(value):  # orjson writes NaN/inf as null, silently
        raise SerializationError("an item's value holds NaN or an infinity, which JSON cannot carry")
    if len(encoded) > limit:
        raise ContextTooLargeError(
            f"an item's value encodes to {len(encoded)} bytes, over max_value_bytes={limit}; "
            "nothing was written"
        )
    return encoded


def decode_item(namespace: tuple[str, ...], key: str, raw: Sequence[Any]) -> Item:
    """An item from ITEM_FETCH's ``{value, created, updated, ...}``."""
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


def condition_matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
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
