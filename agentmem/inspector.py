"""``agentmem inspect``: what an agent remembers, read from Redis without changing it.

Read-only by construction: plain read commands (``TYPE``, ``PTTL``, ``HGETALL``,
``LLEN``, ``LRANGE``, ``ZCARD``, ``GET``, ``MEMORY USAGE``, ``SCAN``), never the store's
scripts, which slide TTLs on read. Keys are built and parsed by :mod:`agentmem.keys`;
values are decoded one by one with :mod:`agentmem.codec`, so a corrupt field or message
is shown as corrupt, with its name, next to the data that is fine.

Versions (the 8-byte prefix of every stored value; an older layout's ``0xFF``/``0xFE...``
fields) are bookkeeping, not memory: they are hidden, except the version of the last
``save_context`` (``replaced_at``) and a delete's tombstone, shown as metadata.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, cast
from urllib.parse import unquote

import orjson
from redis import Redis
from redis.cluster import RedisCluster
from redis.exceptions import ResponseError

from agentmem.codec import (
    BASE_FIELD,
    META_FIELD,
    VERSION_PREFIX,
    decode_fields,
    decode_messages,
    legacy_base_wins,
    legacy_version_of,
    stored_version,
)
from agentmem.errors import MemoryCorruptedError
from agentmem.keys import KeySchema

__all__ = ["Inspector", "render_session", "render_sessions", "render_user"]

#: Where a 0.1 hash recorded its last ``save_context``'s version (0.2: ``META_FIELD``; since
#: 0.3 the base key's version prefix, see ``WRITE_CONTEXT``).
LEGACY_REPLACED_FIELD = VERSION_PREFIX + b"\xff"
#: ``META_FIELD`` values that are no version: only merges wrote the hash ("1": an older layout).
_NO_REPLACE = (b"0", b"1")
#: Keys SCAN is asked to look at per round trip (a hint to the server).
SCAN_BATCH = 500
#: Most keys :meth:`Inspector.prefixes_seen` looks at before it answers with what it found.
PREFIX_SCAN_LIMIT = 10_000
#: A SCAN pattern for keys shaped like a store's: ``<prefix>:{s:<id>}:<part>`` or ``{u:...}``.
_STORE_SHAPED = "*:{[su]:*}:*"

_EXPECTED_TYPE = {
    "ctx": "hash",
    "base": "string",
    "hist": "list",
    "log": "string",
    "retried": "string",
    "appends": "zset",
    "deleted": "string",
    "facts": "hash",
    "forgotten": "string",
}


#: The parts that hold memory (the others are bookkeeping: logs, tombstones).
_MEMORY_PARTS = ("ctx", "base", "hist", "facts")


def _ttl(pttl: int) -> int | None:
    """PTTL's answer as milliseconds left, ``None`` for a key without expiry."""
    return None if pttl == -1 else pttl


def _flat(mapping: dict[bytes, bytes]) -> list[bytes]:
    return [*mapping.keys(), *mapping.values()]


def _why(exc: MemoryCorruptedError) -> str:
    """The decoder's own complaint, without the store's "field ... holds" wrapper."""
    return str(exc.__cause__) if exc.__cause__ is not None else str(exc)


def _version_time(raw: bytes | int | None) -> str | None:
    """A stored write version (microseconds since the epoch) as UTC ISO time."""
    if raw is None:
        return None
    try:
        micros = int(raw)
    except ValueError:
        return f"unreadable version {raw!r}"
    return datetime.datetime.fromtimestamp(micros / 1e6, tz=datetime.timezone.utc).isoformat()


@dataclass
class KeyReport:
    key: str
    part: str
    type: str
    ttl_ms: int | None
    bytes: int
    items: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "part": self.part,
            "type": self.type,
            "ttl_ms": self.ttl_ms,
            "bytes": self.bytes,
            "items": self.items,
        }


@dataclass
class Report:
    """One session's or user's memory, as found."""

    kind: str
    id: str
    prefix: str
    size_source: str
    keys: list[KeyReport] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    corrupt: list[dict[str, str]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return any(key.part in _MEMORY_PARTS for key in self.keys)

    @property
    def size_bytes(self) -> int:
        return sum(key.bytes for key in self.keys)

    @property
    def ttl_ms(self) -> int | None:
        """The TTL of the memory itself (context/history/facts), the smallest if they differ."""
        ttls = [key.ttl_ms for key in self.keys if key.part in _MEMORY_PARTS]
        if not ttls:  # only a tombstone is left
            ttls = [key.ttl_ms for key in self.keys]
        finite = [ttl for ttl in ttls if ttl is not None]
        return min(finite) if finite else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "prefix": self.prefix,
            "exists": self.exists,
            "ttl_ms": self.ttl_ms,
            "size_bytes": self.size_bytes,
            "size_source": self.size_source,
            **self.data,
            "corrupt": self.corrupt,
            "meta": self.meta,
            "keys": [key.as_dict() for key in self.keys],
        }


class Inspector:
    """Reads a store's memory with plain commands on a sync client (``decode_responses=False``):
    a ``Redis``, or a ``RedisCluster`` (keys read where they live, SCAN on every primary)."""

    def __init__(self, client: Redis | RedisCluster, prefix: str) -> None:
        self.client = client
        self.keys = KeySchema(prefix)
        self._memory_usage: bool | None = None
        self.size_source = "MEMORY USAGE"

    # -- sizes -------------------------------------------------------------------------

    def _size(self, key: str, value_bytes: Callable[[], int]) -> int:
        """MEMORY USAGE of ``key`` when the server allows it, else the bytes of its values."""
        if self._memory_usage is not False:
            try:
                usage = self.client.memory_usage(key, samples=0)
                self._memory_usage = True
                return int(usage or 0)
            except ResponseError as exc:  # NOPERM, or a server without MEMORY
                self._memory_usage = False
                self.size_source = f"bytes of the stored values (MEMORY USAGE refused: {exc})"
        return value_bytes()

    def _key(self, key: str, part: str) -> tuple[KeyReport | None, str]:
        """The key's type, TTL and size, or None when it does not exist; and its type."""
        kind = cast(bytes, self.client.type(key)).decode()
        if kind == "none":
            return None, kind
        ttl = _ttl(int(self.client.pttl(key)))
        counts: dict[str, Callable[[], int]] = {
            "hash": lambda: int(self.client.hlen(key)),
            "list": lambda: int(self.client.llen(key)),
            "zset": lambda: int(self.client.zcard(key)),
            "string": lambda: 1,
        }
        values: dict[str, Callable[[], int]] = {
            "hash": lambda: sum(map(len, _flat(cast("dict[bytes, bytes]", self.client.hgetall(key))))),
            "list": lambda: sum(map(len, self.client.lrange(key, 0, -1))),
            "zset": lambda: sum(len(m) + 8 for m in cast("list[bytes]", self.client.zrange(key, 0, -1))),
            "string": lambda: int(self.client.strlen(key)),
        }
        items = counts.get(kind, lambda: 0)()
        size = self._size(key, values.get(kind, lambda: 0))
        return KeyReport(key, part, kind, ttl, size, items), kind

    def _keys_of(self, report: Report, parts: dict[str, str]) -> dict[str, str]:
        """Fill ``report.keys``; return the parts whose key holds the expected type."""
        usable: dict[str, str] = {}
        for part, key in parts.items():
            found, kind = self._key(key, part)
            if found is None:
                continue
            report.keys.append(found)
            if kind == _EXPECTED_TYPE[part]:
                usable[part] = key
            else:
                report.corrupt.append(
                    {"where": f"key {key}", "error": f"holds a {kind}, not a {_EXPECTED_TYPE[part]}"}
                )
        return usable

    # -- decoding ----------------------------------------------------------------------

    def _fields(
        self, key: str | None, what: str, report: Report, base_key: str | None = None
    ) -> dict[str, Any] | None:
        """The base's fields, then the merged ones over them, decoded one by one; corrupt
        ones reported, versions hidden. ``None`` when neither key exists."""
        base = cast("bytes | None", self.client.get(base_key)) if base_key is not None else None
        raw = cast("dict[bytes, bytes]", self.client.hgetall(key)) if key is not None else {}
        if base is None and not raw:
            return None
        values: dict[str, Any] = {}
        # The newer of the two saves is the base, as the store reads it: a 0.2 process's save
        # into the hash (a rolling upgrade) or this layout's base key; never both merged.
        legacy = BASE_FIELD in raw and legacy_base_wins(base, legacy_version_of(raw))
        if base is not None and not legacy:
            try:
                values.update(decode_fields([], what=what, base=base))
            except MemoryCorruptedError as exc:
                report.corrupt.append({"where": f"{what} base (key {base_key})", "error": _why(exc)})
            report.meta["replaced_at"] = _version_time(stored_version(base))
        for name, value in sorted(raw.items(), key=lambda item: item[0] != BASE_FIELD):
            if name == BASE_FIELD:  # 0.2 layout
                if not legacy:
                    continue
                try:
                    values.update(decode_fields([name, value], what=what))
                except MemoryCorruptedError as exc:
                    report.corrupt.append({"where": f"{what} base (field 0xFF 0x01)", "error": _why(exc)})
                continue
            if name[:1] in (META_FIELD, VERSION_PREFIX):
                continue
            try:
                values.update(decode_fields([name, value], what=what))
            except MemoryCorruptedError as exc:
                label = name.decode("utf-8", errors="backslashreplace")
                report.corrupt.append({"where": f"{what} field {label!r}", "error": _why(exc)})
        replaced = raw.get(LEGACY_REPLACED_FIELD) or raw.get(META_FIELD)
        if replaced is not None and replaced not in _NO_REPLACE and (legacy or base is None):
            report.meta["replaced_at"] = _version_time(replaced)
        return values

    def _tombstone(self, report: Report, key: str | None, name: str) -> None:
        if key is not None:
            report.meta[name] = _version_time(cast("bytes | None", self.client.get(key)))

    # -- reports -----------------------------------------------------------------------

    def session(self, session_id: str, *, last: int = 20) -> Report:
        keys = self.keys.session(session_id)
        report = Report("session", session_id, self.keys.prefix, "")
        parts = {
            "ctx": keys.context,
            "base": keys.base,
            "hist": keys.history,
            "log": keys.log,
            "retried": keys.retried,
            "appends": keys.pops,
            "deleted": keys.deleted,
        }
        usable = self._keys_of(report, parts)
        context = self._fields(usable.get("ctx"), "context", report, usable.get("base"))
        history: list[dict[str, Any]] = []
        length = 0
        if "hist" in usable:
            length = int(self.client.llen(usable["hist"]))
            first = max(0, length - last)
            items = cast("list[bytes]", self.client.lrange(usable["hist"], -last, -1))
            for offset, item in enumerate(items):
                index = first + offset
                try:
                    history.append({"index": index, "message": decode_messages([item])[0]})
                except MemoryCorruptedError as exc:
                    report.corrupt.append({"where": f"history item {index}", "error": _why(exc)})
                    history.append({"index": index, "corrupt": item.decode("utf-8", "backslashreplace")})
        self._tombstone(report, usable.get("deleted"), "deleted_at")
        report.data = {"context": context, "history_length": length, "history": history}
        report.size_source = self.size_source
        return report

    def user(self, user_id: str) -> Report:
        facts_key, forgotten_key = self.keys.profile_keys(user_id)
        report = Report("user", user_id, self.keys.prefix, "")
        usable = self._keys_of(report, {"facts": facts_key, "forgotten": forgotten_key})
        facts = self._fields(usable.get("facts"), "facts", report) or {}
        self._tombstone(report, usable.get("forgotten"), "forgotten_at")
        report.data = {"facts": facts, "memories": self._memories(user_id)}
        report.size_source = self.size_source
        return report

    def holds_keys(self) -> bool:
        """Whether any key of this prefix exists (SCAN stops at the first one found)."""
        return (
            next(iter(self.client.scan_iter(match=self.keys.match_all(), count=SCAN_BATCH)), None) is not None
        )

    def prefixes_seen(self, *, limit: int = PREFIX_SCAN_LIMIT) -> list[str]:
        """The prefixes of keys a store could have written (``<prefix>:{s:<id>}:ctx`` ...),
        from a SCAN of at most ``limit`` such keys: where the memory is when this prefix is
        empty."""
        seen: set[str] = set()
        for number, raw_key in enumerate(self.client.scan_iter(match=_STORE_SHAPED, count=SCAN_BATCH)):
            if number >= limit:
                break
            prefix = raw_key.partition(b":{")[0].decode("utf-8", "backslashreplace")
            if prefix and KeySchema(prefix).parse(raw_key) is not None:
                seen.add(prefix)
        return sorted(seen)

    def _memories(self, user_id: str) -> list[dict[str, Any]]:
        """The user's memories (``store.memories``), newest first: id, text, tags, created_at.
        Read by SCAN and HMGET, so it works without a query engine too."""
        found: list[dict[str, Any]] = []
        for key in self.client.scan_iter(match=self.keys.match_memories(user_id), count=SCAN_BATCH):
            name = key.decode() if isinstance(key, bytes) else str(key)
            values: list[Any] = cast(list[Any], self.client.hmget(name, ["text", "tags", "created"]))
            text, tags, created = (bytes(v) if v is not None else None for v in values)
            if text is None:
                continue  # deleted meanwhile
            stamp = int(created or 0)
            moment = datetime.datetime.fromtimestamp(stamp / 1000, tz=datetime.timezone.utc)
            found.append(
                {
                    "id": name.rsplit(":", 1)[1],
                    "text": text.decode("utf-8", "replace"),
                    "tags": [unquote(t) for t in (tags or b"").decode().split(",") if t],
                    "created_at": moment.isoformat(),
                    "_ms": stamp,
                }
            )
        found.sort(key=lambda item: -item["_ms"])
        return [{k: v for k, v in item.items() if k != "_ms"} for item in found]

    def sessions(self, *, match: str = "*", count: int = 50) -> tuple[list[dict[str, Any]], bool]:
        """Sessions whose id matches ``match`` (fnmatch), at most ``count``, found with SCAN;
        and whether the listing stopped before the scan was complete."""
        found: dict[str, dict[str, str]] = {}
        truncated = False
        for raw_key in self.client.scan_iter(match=self.keys.match_sessions(match), count=SCAN_BATCH):
            parsed = self.keys.parse(raw_key)
            if parsed is None or parsed.kind != "session" or not fnmatchcase(parsed.id, match):
                continue
            if parsed.id not in found and len(found) >= count:
                truncated = True
                break
            found.setdefault(parsed.id, {})[parsed.part] = raw_key.decode()
        listing = []
        for session_id in sorted(found):
            report = Report("session", session_id, self.keys.prefix, "")
            self._keys_of(report, found[session_id])
            by_part = {key.part: key for key in report.keys}
            listing.append(
                {
                    "id": session_id,
                    "ttl_ms": report.ttl_ms,
                    "size_bytes": report.size_bytes,
                    "context": "ctx" in by_part or "base" in by_part,
                    "messages": by_part["hist"].items if "hist" in by_part else 0,
                    "deleted": "deleted" in by_part and not report.exists,
                    "corrupt": report.corrupt,
                }
            )
        return listing, truncated


# -- text output ---------------------------------------------------------------------------


def _json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _name(name: str) -> str:
    """A field name as shown: as is when every character prints, else JSON-quoted with its
    control characters escaped, so a name cannot forge a line or send a terminal escape."""
    return name if name.isprintable() else json.dumps(name)


def _ttl_text(ttl_ms: int | None) -> str:
    return "no expiry" if ttl_ms is None else f"{ttl_ms / 1000:.1f} s"


def _head(report: Report) -> list[str]:
    lines = [f"{report.kind} {report.id!r} (prefix {report.prefix!r})"]
    if not report.keys:
        lines.append("  no memory stored")
        return lines
    lines.append(f"  TTL left   {_ttl_text(report.ttl_ms)}")
    lines.append(f"  size       {report.size_bytes} B ({report.size_source})")
    for key in report.keys:
        lines.append(
            f"  key        {key.key}  {key.type}, {key.items} item{'s' if key.items != 1 else ''}, "
            f"TTL {_ttl_text(key.ttl_ms)}, {key.bytes} B"
        )
    for name, value in report.meta.items():
        lines.append(f"  {name.removesuffix('_at'):<10} {value}")
    return lines


def _corrupt(report: Report) -> list[str]:
    return [f"  CORRUPT    {item['where']}: {item['error']}" for item in report.corrupt]


def render_session(report: Report) -> str:
    lines = _head(report)
    context = report.data.get("context")
    if report.keys:
        if context is None:
            lines.append("  context    none")
        else:
            lines.append(f"  context    {len(context)} field{'s' if len(context) != 1 else ''}")
            lines += [f"    {_name(name)}: {_json(value)}" for name, value in context.items()]
        history = report.data["history"]
        length = report.data["history_length"]
        shown = f", last {len(history)}:" if len(history) < length else ":" if length else ""
        lines.append(f"  history    {length} message{'s' if length != 1 else ''}{shown}")
        for entry in history:
            body = _json(entry["message"]) if "message" in entry else f"CORRUPT {entry['corrupt']!r}"
            lines.append(f"    [{entry['index']}] {body}")
    return "\n".join(lines + _corrupt(report))


def render_user(report: Report) -> str:
    lines = _head(report)
    facts = report.data.get("facts", {})
    if report.keys:
        lines.append(f"  facts      {len(facts)} field{'s' if len(facts) != 1 else ''}")
        lines += [f"    {_name(name)}: {_json(value)}" for name, value in facts.items()]
    memories = report.data.get("memories", [])
    if memories or report.keys:
        lines.append(f"  memories   {len(memories)}")
        lines += [
            f"    {item['created_at']} {item['id']} {_json(item['text'])}"
            + (f" tags={_json(item['tags'])}" if item["tags"] else "")
            for item in memories
        ]
    return "\n".join(lines + _corrupt(report))


def render_sessions(listing: list[dict[str, Any]], truncated: bool, count: int) -> str:
    if not listing:
        return "no sessions found"
    width = max(len(repr(entry["id"])) for entry in listing)
    lines = [f"{'session':<{width}}  {'TTL left':>10}  {'size':>9}  {'context':<7}  messages"]
    for entry in listing:
        context = "yes" if entry["context"] else "deleted" if entry["deleted"] else "no"
        flag = "  CORRUPT" if entry["corrupt"] else ""
        lines.append(
            f"{entry['id']!r:<{width}}  {_ttl_text(entry['ttl_ms']):>10}  {entry['size_bytes']:>7} B  "
            f"{context:<7}  {entry['messages']}{flag}"
        )
    lines.append(f"{len(listing)} session{'s' if len(listing) != 1 else ''}")
    if truncated:
        lines.append(f"stopped at --count {count}; more sessions match")
    return "\n".join(lines)
