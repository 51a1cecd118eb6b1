"""A session's context read as one transaction instead of a script.

``load_context`` needs the merged-fields hash, the base and the tombstone read together
(a save between two separate reads would pair the old hash with the new base), and decides
nothing on the server: one ``MULTI`` ... ``EXEC`` reads them (refreshing their TTLs when the
read slides them), at a fraction of a script's fixed cost, and the tombstone check that
``read_session.lua`` makes runs here. ``load_turn`` and ``load_history`` still use the script.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentmem.calls import Call
from agentmem.codec import stored_version

__all__ = ["context_read", "context_reply", "flat_hash"]


def flat_hash(reply: Any) -> Any:
    """An HGETALL reply as the flat list (field, value, ...) a script returns: a RESP3
    connection (``protocol=3``) answers a plain HGETALL with a map."""
    if isinstance(reply, dict):
        return [item for pair in reply.items() for item in pair]
    return reply


def context_read(keys: Sequence[str], refresh_ms: int) -> Call:
    """The transaction that reads a session's context (``keys``: ``SessionKeys.core()``,
    the hash, base, history and tombstone); with ``refresh_ms`` it slides every key's TTL,
    as read_session.lua does."""
    hash_key, base_key, _, deleted_key = keys
    # The base and the tombstone in one MGET (one command fewer than two GETs).
    group: tuple[tuple[Any, ...], ...] = (("HGETALL", hash_key), ("MGET", base_key, deleted_key))
    if refresh_ms:
        group += tuple(("PEXPIRE", key, refresh_ms) for key in keys)
    return Call(None, tuple(keys), group=group)


def context_reply(reply: Sequence[Any]) -> tuple[Sequence[Any], bytes | None]:
    """The merged fields (flat: field, value, ...) and the base from the transaction's
    reply. A base older than the tombstone outlived a delete that did not know it (a 0.2
    process's delete, during a rolling upgrade): the session was deleted after that save."""
    fields, (base, deleted) = flat_hash(reply[0]), reply[1]
    if base is not None and deleted is not None:
        try:
            tombstone = int(deleted)
        except ValueError:
            tombstone = 0
        if (stored_version(base) or 0) < tombstone:
            base = None
    return fields, base
