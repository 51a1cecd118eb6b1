"""AgentMemorySaver: a LangGraph checkpointer (``BaseCheckpointSaver``) over an AgentMemoryStore.

Every operation on a thread is one Lua script over the thread's keys (one hash tag), so a
checkpoint, its channel blobs and its run id are written together or not at all, and a
read sees one consistent state. Calls go through the store's sender: they share its pool,
auto-pipelining, retries, circuit breaker and typed errors.

Values are serialized with LangGraph's own serde (``serde.dumps_typed``); a stored value
that does not parse back raises :class:`~agentmem.MemoryCorruptedError`.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, Literal

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from agentmem.calls import Call
from agentmem.config import MAX_TTL, Duration, seconds
from agentmem.errors import (
    ContextTooLargeError,
    InvalidArgumentError,
    MemoryCorruptedError,
    SerializationError,
)
from agentmem.integrations.langgraph import _frames
from agentmem.integrations.langgraph._keys import (
    ThreadKeys,
    run_key,
    thread_from_index_key,
    thread_keys,
    thread_pattern,
)
from agentmem.integrations.langgraph._saver_scripts import (
    ADD_RUN,
    COPY_INTO,
    DELETE_RUNS,
    DELETE_THREAD,
    LIST,
    PRUNE,
    PUT,
    PUT_WRITES,
    READ,
    READ_THREAD,
)
from agentmem.store import AgentMemoryStore

__all__ = ["AgentMemorySaver"]

_SEP = "\0"
_SCAN_COUNT = 500
#: Checkpoints read per round trip while listing.
_LIST_BATCH = 32


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a str, not {type(value).__name__}")
    if _SEP in value:
        raise InvalidArgumentError(f"{name} must not contain a NUL character: {value!r}")
    return value


def _ms(seconds: float | None) -> int:
    return 0 if seconds is None else max(1, int(seconds * 1000))


class AgentMemorySaver(BaseCheckpointSaver[str]):
    """An async LangGraph checkpointer storing threads in the store's Redis.

    ``AgentMemorySaver(store)`` borrows ``store`` (it never closes it). By default a thread
    lives ``store.config.ttl`` seconds after its last write (and, with ``sliding_ttl``, its
    last read), like a session of the store; ``ttl=`` sets another lifetime (seconds or a
    timedelta), ``ttl=None`` keeps threads until they are deleted. Only the async methods
    are implemented: run graphs with ``ainvoke``/``astream``.
    """

    def __init__(
        self,
        store: AgentMemoryStore,
        *,
        ttl: Duration | Literal["store"] | None = "store",
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self._store = store
        self._prefix = store.config.prefix
        if ttl == "store":
            self._ttl = _ms(store.config.ttl)
        else:
            self._ttl = _ms(seconds(ttl, name="ttl", allow_none=True))
            if self._ttl > MAX_TTL * 1000:
                raise InvalidArgumentError(f"ttl must be at most {MAX_TTL} seconds, got {ttl!r}")

    # -- helpers ---------------------------------------------------------------------

    def _thread(self, thread_id: object) -> ThreadKeys:
        return thread_keys(self._prefix, _text(thread_id, "thread_id"))

    def _ttl_ms(self) -> int:
        return self._ttl

    def _read_ttl_ms(self) -> int:
        return self._ttl_ms() if self._store.config.sliding_ttl else 0

    def _dump_parts(self, value: Any, what: str) -> tuple[bytes, bytes]:
        """LangGraph's typed serialization of ``value``: (type name, bytes), size-checked."""
        try:
            kind, data = self.serde.dumps_typed(value)
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"{what} cannot be serialized by LangGraph's serde: {exc}") from exc
        limit = self._store.config.max_value_bytes
        if len(data) > limit:
            raise ContextTooLargeError(
                f"{what} serializes to {len(data)} bytes, over max_value_bytes={limit}; nothing was written"
            )
        return kind.encode(), data

    def _dump(self, value: Any, what: str) -> bytes:
        return _frames.pack(self._dump_parts(value, what))

    def _load(self, frame: object, what: str) -> Any:
        kind, data = _frames.unpack(frame, 2, what=what)
        try:
            return self.serde.loads_typed((kind.decode(), data))
        except Exception as exc:
            raise MemoryCorruptedError(f"{what} could not be deserialized: {exc!r}") from exc

    @staticmethod
    def _configurable(config: RunnableConfig | None) -> Mapping[str, Any]:
        configurable = (config or {}).get("configurable")
        if not isinstance(configurable, Mapping):
            raise InvalidArgumentError("config needs a 'configurable' mapping with a thread_id")
        return configurable

    def get_next_version(self, current: str | int | float | None, channel: None) -> str:
        """A version that sorts after ``current``, with a random tail: two forks of one
        thread that both bump a channel get different versions, so neither overwrites the
        other's stored value."""
        if current is None:
            number = 0
        elif isinstance(current, (int, float)):
            number = int(current)
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032}.{random.random():016}"

    # -- writes ----------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Store a checkpoint with its new channel values; return its config."""
        configurable = self._configurable(config)
        thread_id = configurable.get("thread_id")
        keys = self._thread(thread_id)
        ns = _text(configurable.get("checkpoint_ns", ""), "checkpoint_ns")
        checkpoint_id = _text(checkpoint["id"], "checkpoint id")
        parent = configurable.get("checkpoint_id")
        record = dict(checkpoint)
        values: dict[str, Any] = record.pop("channel_values", {})  # type: ignore[assignment]
        full_metadata = get_checkpoint_metadata(config, metadata)
        blobs: list[bytes | str] = []
        for channel, version in new_versions.items():
            field = _SEP.join((ns, _text(channel, "channel name"), str(version)))
            blob = (
                self._dump(values[channel], f"channel {channel!r}")
                if channel in values
                else _frames.pack((b"empty", b""))
            )
            blobs += [field, blob]
        versions = {
            _text(channel, "channel name"): str(version)
            for channel, version in record.get("channel_versions", {}).items()  # type: ignore[attr-defined]
        }
        run_id = full_metadata.get("run_id")
        run = run_id if isinstance(run_id, str) and run_id and _SEP not in run_id else ""
        member = f"{ns}{_SEP}{checkpoint_id}"
        args = (
            self._ttl_ms(),
            member,
            _frames.pack(
                (*self._dump_parts(record, "checkpoint"), _text(parent or "", "parent id").encode())
            ),
            self._dump(full_metadata, "metadata"),
            orjson.dumps(versions),
            run,
            *blobs,
        )
        calls = []
        if run:
            calls.append(Call(ADD_RUN, (run_key(self._prefix, run),), (self._ttl_ms(), thread_id)))
        calls.append(Call(PUT, keys.all(), args))
        await self._store.engine.send("langgraph.aput", calls)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Store a task's writes for a checkpoint. A regular write already stored for the
        same (task, index) is kept (a retried task does not duplicate it); the special
        channels (errors, interrupts...) are replaced, as LangGraph's savers do."""
        configurable = self._configurable(config)
        keys = self._thread(configurable.get("thread_id"))
        ns = _text(configurable.get("checkpoint_ns", ""), "checkpoint_ns")
        checkpoint_id = _text(configurable.get("checkpoint_id"), "checkpoint_id")
        task_id = _text(task_id, "task_id")
        if not writes:
            return
        args: list[Any] = [self._ttl_ms()]
        for position, (channel, value) in enumerate(writes):
            index = WRITES_IDX_MAP.get(channel, position)
            field = _SEP.join((ns, checkpoint_id, task_id, str(index)))
            kind, data = self._dump_parts(value, f"write to {channel!r}")
            frame = _frames.pack((_text(channel, "channel name").encode(), kind, data, task_path.encode()))
            args += [field, frame, "keep" if index >= 0 else "set"]
        await self._store.engine.script("langgraph.aput_writes", PUT_WRITES, keys.all(), args)

    # -- reads -----------------------------------------------------------------------

    def _tuple(self, thread_id: str, ns: str, reply: Sequence[Any]) -> CheckpointTuple:
        if len(reply) == 2:
            raise MemoryCorruptedError(f"a checkpoint of thread {thread_id!r} is corrupted: {reply[1]!r}")
        raw_id, record, raw_metadata, raw_blobs, raw_writes = reply
        checkpoint_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        what = f"checkpoint {checkpoint_id!r} of thread {thread_id!r}"
        kind, data, parent = _frames.unpack(record, 3, what=what)
        checkpoint = self._load(_frames.pack((kind, data)), what)
        if not isinstance(checkpoint, dict):
            raise MemoryCorruptedError(f"{what} is not a checkpoint mapping")
        values: dict[str, Any] = {}
        for i in range(0, len(raw_blobs), 2):
            channel = raw_blobs[i].decode()
            kind, data = _frames.unpack(raw_blobs[i + 1], 2, what=f"channel {channel!r} of {what}")
            if kind != b"empty":
                values[channel] = self._load(raw_blobs[i + 1], f"channel {channel!r} of {what}")
        if raw_metadata is None:
            raise MemoryCorruptedError(f"{what} has no metadata")
        metadata = self._load(raw_metadata, f"metadata of {what}")
        pending: list[tuple[tuple[str, str, int], tuple[str, str, Any]]] = []
        for i in range(0, len(raw_writes), 2):
            field = raw_writes[i].decode().split(_SEP)
            if len(field) != 4:
                raise MemoryCorruptedError(f"a pending write of {what} has a malformed name")
            _, _, task, index = field
            channel, kind, data, path = _frames.unpack(
                raw_writes[i + 1], 4, what=f"a pending write of {what}"
            )
            value = self._load(_frames.pack((kind, data)), f"a pending write of {what}")
            try:
                order = writes_sort_key(path.decode(), task, int(index))
            except ValueError as exc:
                raise MemoryCorruptedError(f"a pending write of {what} has a malformed index") from exc
            pending.append((order, (task, channel.decode(), value)))
        pending.sort(key=lambda item: item[0])
        base = {"thread_id": thread_id, "checkpoint_ns": ns}
        return CheckpointTuple(
            config={"configurable": {**base, "checkpoint_id": checkpoint_id}},
            checkpoint={**checkpoint, "channel_values": values},  # type: ignore[typeddict-item]
            metadata=metadata,
            parent_config={"configurable": {**base, "checkpoint_id": parent.decode()}} if parent else None,
            pending_writes=[write for _, write in pending],
        )

    async def _read(
        self, thread_id: str, ns: str, checkpoint_id: str, *, refresh: int
    ) -> CheckpointTuple | None:
        keys = self._thread(thread_id)
        reply = await self._store.engine.script(
            "langgraph.aget_tuple", READ, keys.all(), (refresh, ns, checkpoint_id)
        )
        return None if reply is None else self._tuple(thread_id, ns, reply)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or its namespace's latest; ``None`` if there is none."""
        configurable = self._configurable(config)
        thread_id = _text(configurable.get("thread_id"), "thread_id")
        ns = _text(configurable.get("checkpoint_ns", ""), "checkpoint_ns")
        checkpoint_id = get_checkpoint_id(config) or ""
        return await self._read(
            thread_id, ns, _text(checkpoint_id, "checkpoint_id"), refresh=self._read_ttl_ms()
        )

    async def _threads(self) -> list[str]:
        """Every thread under the store's prefix (a SCAN of the keyspace: for admin use)."""
        found: set[str] = set()
        for key in await self._store.engine.scan(
            "langgraph.alist", thread_pattern(self._prefix), count=_SCAN_COUNT
        ):
            thread = thread_from_index_key(self._prefix, key)
            if thread is not None:
                found.add(thread)
        return sorted(found)

    async def _candidates(
        self, thread_id: str, ns: str | None, before: str | None, limit: int | None, filtered: bool
    ) -> list[tuple[str, str, str]]:
        """(ns, checkpoint id, thread) of the thread's checkpoints that match, newest first."""
        keys = self._thread(thread_id)
        server_limit = 0 if filtered or limit is None or ns is None else limit
        args = (ns or "", "1" if ns is None else "0", (before or "") if ns is not None else "", server_limit)
        reply = await self._store.engine.script("langgraph.alist", LIST, keys.all()[:2], args)
        return [(m.decode(), meta, thread_id) for m, meta in zip(reply[::2], reply[1::2], strict=True)]

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """Checkpoints newest first (by checkpoint id) that match every key of ``filter``
        in their metadata. ``config`` picks the thread (``None``: every thread, found by
        SCAN), its ``checkpoint_ns`` one namespace (absent: all) and its
        ``checkpoint_id`` one checkpoint; ``before`` keeps ids below its checkpoint id."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidArgumentError(f"limit must be an int or None, got {limit!r}")
        if limit is not None and limit <= 0:
            return
        configurable = self._configurable(config) if config is not None else {}
        ns = configurable.get("checkpoint_ns")
        if ns is not None:
            ns = _text(ns, "checkpoint_ns")
        only_id = configurable.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        if "thread_id" in configurable:
            threads = [_text(configurable["thread_id"], "thread_id")]
        else:
            threads = await self._threads()
        selected: list[tuple[str, str, str]] = []
        for thread_id in threads:
            rows = await self._candidates(thread_id, ns, before_id, limit, bool(filter) or bool(only_id))
            for member, raw_metadata, thread in rows:
                row_ns, _, checkpoint_id = member.partition(_SEP)
                if only_id and checkpoint_id != only_id:
                    continue
                if before_id and checkpoint_id >= before_id:
                    continue
                if filter:
                    what = f"metadata of checkpoint {checkpoint_id!r} of thread {thread!r}"
                    if raw_metadata is None:
                        raise MemoryCorruptedError(f"{what} is missing")
                    metadata = self._load(raw_metadata, what)
                    if not all(metadata.get(key) == value for key, value in filter.items()):
                        continue
                selected.append((thread, row_ns, checkpoint_id))
        selected.sort(key=lambda row: row[2], reverse=True)
        if limit is not None:
            selected = selected[:limit]
        for batch in _batches(selected, _LIST_BATCH):
            tuples = await asyncio.gather(*(self._read(t, n, c, refresh=0) for t, n, c in batch))
            for found in tuples:
                if found is not None:  # deleted since it was listed
                    yield found

    # -- deletes, copies -------------------------------------------------------------

    async def adelete_thread(self, thread_id: str) -> None:
        """Delete every checkpoint and write of the thread, in every namespace."""
        keys = self._thread(thread_id)
        await self._store.engine.script("langgraph.adelete_thread", DELETE_THREAD, keys.all(), ())

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints (and their writes) that were written by these runs, in every
        thread; channel values no remaining checkpoint uses go with them. Call it after the
        runs finished: a checkpoint a run writes while this runs may survive."""
        for run_id in run_ids:
            key = run_key(self._prefix, _text(run_id, "run_id"))
            threads = await self._store.engine.send(
                "langgraph.adelete_for_runs", (Call(None, (key,), (), "SMEMBERS"),)
            )
            for thread in sorted(threads[0]):
                keys = self._thread(thread.decode())
                await self._store.engine.script(
                    "langgraph.adelete_for_runs", DELETE_RUNS, keys.all(), (run_id,)
                )
            await self._store.engine.send("langgraph.adelete_for_runs", (Call(None, (key,), (), "UNLINK"),))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, channel value and pending write of the source thread into
        the target thread (merged with what the target holds). The source is read in one
        atomic step and the target written in another."""
        source = self._thread(source_thread_id)
        target = self._thread(target_thread_id)
        checkpoints, blobs, writes = await self._store.engine.script(
            "langgraph.acopy_thread", READ_THREAD, source.all(), ()
        )
        if not checkpoints:
            return
        runs = {
            value.decode()
            for field, value in zip(checkpoints[::2], checkpoints[1::2], strict=True)
            if field.endswith(b"\0r")
        }
        ttl = self._ttl_ms()
        calls = [
            Call(ADD_RUN, (run_key(self._prefix, run),), (ttl, target_thread_id)) for run in sorted(runs)
        ]
        args = (ttl, len(checkpoints), len(blobs), *checkpoints, *blobs, *writes)
        calls.append(Call(COPY_INTO, target.all(), args))
        await self._store.engine.send("langgraph.acopy_thread", calls)

    async def aprune(
        self, thread_ids: Sequence[str], *, strategy: Literal["keep_latest", "delete"] | str = "keep_latest"
    ) -> None:
        """``"keep_latest"``: keep only each namespace's latest checkpoint (with its writes)
        of each thread; ``"delete"``: delete the threads. Channel values no kept checkpoint
        uses are deleted. Not for graphs with ``DeltaChannel``s, whose state is rebuilt
        from the ancestors this drops."""
        if strategy not in ("keep_latest", "delete"):
            raise InvalidArgumentError(f"strategy must be 'keep_latest' or 'delete', got {strategy!r}")
        keys = [self._thread(thread_id) for thread_id in thread_ids]  # all checked before any I/O
        # One script per thread, sent together: the auto-pipeliner batches them into few round trips.
        await asyncio.gather(
            *(
                self._store.engine.script("langgraph.aprune", PRUNE, thread.all(), (strategy,))
                for thread in keys
            )
        )


def _batches(rows: list[tuple[str, str, str]], size: int) -> Iterator[list[tuple[str, str, str]]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]
