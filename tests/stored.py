"""What the store wrote, read back with plain commands: the tests' view of the layout.

Values come back without their version prefix (``codec.stored_payload``), so a test can
assert the bytes a write put on the server without repeating how versions are stored.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from agentmem.codec import stored_payload, stored_version
from agentmem.keys import KeySchema


def payload(value: object) -> bytes:
    """A stored value (as redis-py types it) without its version prefix."""
    assert isinstance(value, bytes), value
    return stored_payload(value)


def version(value: object) -> int | None:
    """The version a stored value (as redis-py types it) starts with."""
    assert isinstance(value, bytes), value
    return stored_version(value)


def _context(base: bytes | None, fields: dict[Any, Any]) -> dict[bytes, bytes] | None:
    if base is None and not fields:
        return None
    merged = {name: stored_payload(value) for name, value in fields.items()}
    if base is None:
        return merged
    stored = orjson.loads(stored_payload(base))
    return {**{name.encode(): orjson.dumps(value) for name, value in stored.items()}, **merged}


async def stored_context(redis: Redis, prefix: str, session_id: str) -> dict[bytes, bytes] | None:
    """The session's context as stored, field by field (the base's fields, then the merged
    ones over them), each value orjson bytes; ``None`` when neither key exists."""
    keys = KeySchema(prefix).session(session_id)
    base: Any = await redis.get(keys.base)
    fields: dict[Any, Any] = await redis.hgetall(keys.context)
    return _context(base, fields)


def stored_context_sync(redis: SyncRedis, prefix: str, session_id: str) -> dict[bytes, bytes] | None:
    """:func:`stored_context` on a sync client."""
    keys = KeySchema(prefix).session(session_id)
    base: Any = redis.get(keys.base)
    fields: Any = redis.hgetall(keys.context)
    return _context(base, fields)


async def stored_fields(redis: Redis, key: str) -> dict[bytes, bytes]:
    """A hash of versioned values (merged context fields, a user's facts) as stored, each
    value without its version."""
    fields: dict[Any, Any] = await redis.hgetall(key)
    return {name: stored_payload(value) for name, value in fields.items()}
