"""Prepared writes: each public write validated and encoded once, then applied.

``prepare_*`` checks the id and encodes the values (raising the typed error before any
I/O) and picks the write's version (an append: its operation id); :func:`apply` sends
it. The store applies a write at once; the journal layer (``fallback="journal"``) keeps
the same :class:`Write` through an outage and applies it later with ``replay=True``,
with the version or operation id it was made with: a replayed write is dropped by the
script when a newer write, replace or delete exists (modes ending in ``-if-newer``,
``REPLAY_APPEND``), so a replay never undoes a newer write.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from agentmem.calls import Call
from agentmem.codec import encode_context, encode_fields, encode_messages, packed_version
from agentmem.scripts import (
    APPEND,
    APPEND_FRESH,
    OPERATION_ID_BYTES,
    REPLAY_APPEND,
    WRITE_CONTEXT,
    WRITE_FACTS,
)

if TYPE_CHECKING:
    from agentmem.engine import StoreEngine

__all__ = [
    "Write",
    "WriteKind",
    "append_call",
    "apply",
    "new_operation_id",
    "prepare_append",
    "prepare_remember",
    "prepare_save",
    "prepare_update",
    "save_call",
    "write_version",
]

WriteKind = Literal["save", "update", "remember", "append"]


def new_operation_id() -> bytes:
    """An append's operation id: 64 random bits. Ids are compared only within one session's
    log of recent appends (a few hundred), which a new id matches with odds of ~2**-55;
    every byte more costs the log memory for no safety it needs."""
    return secrets.token_bytes(OPERATION_ID_BYTES)


def write_version() -> int:
    """A write's version: this process's wall clock in microseconds."""
    return time.time_ns() // 1000


class Write(NamedTuple):
    """One validated, encoded write: ``encoded`` is ``(base,)`` for a save, field/value
    pairs for an update or a remember, the messages for an append. (A named tuple: made
    on every write, it costs a third of a frozen dataclass to build.)"""

    kind: WriteKind
    target: str  # session id (save/update/append) or user id (remember)
    encoded: tuple[bytes, ...]
    version: int  # writer clock in microseconds
    operation_id: bytes = b""  # append


def prepare_save(engine: StoreEngine, session_id: str, context: Mapping[str, Any]) -> Write:
    engine.session_keys(session_id)  # validate before encoding
    encoded = encode_context(context, limit=engine.config.max_value_bytes, what="context")
    return Write("save", session_id, (encoded,), write_version())


def prepare_update(engine: StoreEngine, session_id: str, fields: Mapping[str, Any]) -> Write:
    engine.session_keys(session_id)
    encoded = encode_fields(fields, limit=engine.config.max_value_bytes, what="context update")
    return Write("update", session_id, tuple(encoded), write_version())


def prepare_remember(engine: StoreEngine, user_id: str, facts: Mapping[str, Any]) -> Write:
    engine.keys.profile(user_id)
    encoded = encode_fields(facts, limit=engine.config.max_value_bytes, what="facts")
    return Write("remember", user_id, tuple(encoded), write_version())


def prepare_append(
    engine: StoreEngine, session_id: str, messages: Iterable[Mapping[str, Any]]
) -> tuple[Write, Iterable[Mapping[str, Any]]]:
    """The append and the messages as given (a list, unless not an iterable of mappings,
    which the encoder refuses)."""
    engine.session_keys(session_id)
    batch = list(messages) if not isinstance(messages, (str, bytes, Mapping)) else messages
    encoded = encode_messages(batch, limit=engine.config.max_value_bytes)
    return Write("append", session_id, tuple(encoded), write_version(), new_operation_id()), batch


async def apply(engine: StoreEngine, operation: str, write: Write, *, replay: bool = False) -> int | None:
    """Send a write: an append's new history length, 1 for another write; ``None`` when a
    replay was superseded (a newer replace or delete: nothing was written)."""
    if write.kind == "append":
        if not replay:
            (length,) = await engine.send(operation, (append_call(engine, write),))
            return int(length)
        keys = engine.session_keys(write.target).appending()
        args = _append_args(engine, write, write.version)
        length = int(await engine.script(operation, REPLAY_APPEND, keys, args))
        return None if length < 0 else length
    mode = "replace" if write.kind == "save" else "merge"
    if replay:
        mode += "-if-newer"
    if write.kind == "remember":
        args = (engine.ttl_ms("profile"), packed_version(write.version), mode, *write.encoded)
        written = await engine.script(operation, WRITE_FACTS, engine.keys.profile_keys(write.target), args)
    else:
        session: tuple[str, ...] = engine.session_keys(write.target).core()
        if not replay and _reads_refreshed(engine, write.target):
            # the script then sets only the TTLs of what it may create, the base and the
            # hash (write_context.lua)
            session = session[:2]
        if mode == "replace":
            await engine.send(operation, (save_call(engine, session, write),))
            return 1
        args = (engine.ttl_ms("session"), packed_version(write.version), mode, *write.encoded)
        written = await engine.script(operation, WRITE_CONTEXT, session, args)
    return 1 if written else None


def _reads_refreshed(engine: StoreEngine, session_id: str) -> bool:
    """Whether this store's reads refreshed the session's TTLs less than the refresh bound
    ago (agentmem/refresh.py): a write then sets only the TTLs of the keys it may create."""
    config = engine.config
    return config.sliding_ttl and not engine.refresh.due(("s", session_id), config.ttl)


def append_call(engine: StoreEngine, write: Write) -> Call:
    """An append (not a journal's replay). Its first attempt's id is new: APPEND_FRESH does
    not look it up; a retry (the first attempt may have been applied) sends APPEND, which
    does (``Call.retry``)."""
    keys = engine.session_keys(write.target).appending()
    args = _append_args(engine, write)
    context, base, history, log, retried, deleted = keys
    fresh_keys: tuple[str, ...] = (history, log, retried)
    if not _reads_refreshed(engine, write.target):
        fresh_keys += (context, base, deleted)
    return Call(APPEND_FRESH, fresh_keys, args, retry=Call(APPEND, keys, args))


def _append_args(engine: StoreEngine, write: Write, *version: int) -> tuple[Any, ...]:
    """An append script's ARGV: ttl_ms, max_history, op_id, the version (a replay only),
    window_ms, then the messages."""
    config = engine.config
    head = (engine.ttl_ms("session"), config.max_history, write.operation_id, *version)
    return (*head, engine.append_window_ms, *write.encoded)


def save_call(engine: StoreEngine, keys: tuple[str, ...], write: Write) -> Call:
    """A plain save (not a journal's replay) as one transaction: what write_context.lua's
    replace does, without a script's fixed cost, since it decides nothing on the server.
    ``keys``: the session's hash and base, then its history and tombstone when their TTLs
    are to be set too. The base is SET first: past maxmemory the server refuses it while
    queued, and the transaction runs nothing (``OOM``)."""
    hash_key, base_key = keys[0], keys[1]
    ttl = engine.ttl_ms("session")
    value = packed_version(write.version) + write.encoded[0]
    if not ttl:
        return Call(None, keys, group=(("SET", base_key, value, "KEEPTTL"), ("DEL", hash_key)))
    refreshes = tuple(("PEXPIRE", key, ttl) for key in keys[2:])
    return Call(None, keys, group=(("SET", base_key, value, "PX", ttl), ("DEL", hash_key), *refreshes))
