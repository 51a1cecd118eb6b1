"""The Lua scripts behind every store operation, where their sources live, and how they are sent.

Each store operation is one script run (``EVALSHA``), so it is atomic, its keys
sit in one cluster slot, and operations from many tasks can later share one
pipeline round trip.

On servers that understand script flags (Redis >= 7, Valkey) writes carry a
``#!lua`` line without ``allow-oom``: past ``maxmemory`` the server refuses the
whole script before it runs, so a write is applied whole or not at all. Reads are
flagged ``allow-oom``: they only refresh TTLs and must keep working when memory is
full. Older servers (Redis 6.2) cannot compile a ``#!`` line, so the runner falls
back to the same bodies without it; there the OOM check applies to a script's first
write, which is why every write script's first write is one that grows memory (HSET, RPUSH).

Sources: each script is a file ``lua/<name>.lua`` of this package (an adapter keeps its own
``lua/`` directory beside its module), turned into the script's text once, at import, by
:func:`load`:

* a line ``--- @include "lib/name"`` is replaced by the text of ``lua/lib/name.lua``, looked up
  in the script's own ``lua/`` directory first, then in this package's (where the shared parts
  are: argument checks, versions, the write head). A part included twice in one script is
  included once;
* ``@NAME@`` is replaced by the constant ``NAME`` of :data:`CONSTANTS` (one table for every
  script, so a limit the Python side checks is the one the Lua side checks);
* any other line starting ``---`` is a comment for readers of the file and is left out of the
  script, so it costs no bytes on the wire and leaves the script's SHA alone (``--`` comments
  stay in the script).

A missing include, an unknown ``--- @`` directive or an unknown ``@NAME@`` raises
:class:`LuaSourceError` at import. ``tests/test_scripts.py`` pins every script's SHA1.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from types import MappingProxyType
from typing import TYPE_CHECKING

from redis import exceptions as rexc
from redis.asyncio import Redis

from agentmem.config import MAX_EXACT

if TYPE_CHECKING:
    from importlib.abc import Traversable

__all__ = [
    "APPEND",
    "APPEND_FRESH",
    "APPEND_LOG_IDS",
    "CONSTANTS",
    "DELETE",
    "MAX_EXACT",
    "OPERATION_ID_BYTES",
    "READ_HASH",
    "READ_SESSION",
    "REPLAY_APPEND",
    "WRITE_CONTEXT",
    "WRITE_FACTS",
    "LuaSourceError",
    "Script",
    "ScriptRunner",
    "load",
]

#: The append log always keeps at least this many of a session's newest operation ids,
#: however old, while it exists (a floor under the time window, for server clocks that step;
#: see ``lua/lib/append_push.lua``).
APPEND_LOG_IDS = 64
#: Bytes of an append operation id.
OPERATION_ID_BYTES = 8

#: The named constants of every script, the adapters' included: ``@NAME@`` in a ``.lua``
#: file becomes the value of ``NAME``. ``MAX_EXACT`` (owned by :mod:`agentmem.config`) is the
#: largest integer a script takes for a TTL in ms or a count.
CONSTANTS: Mapping[str, int] = MappingProxyType(
    {
        "APPEND_LOG_IDS": APPEND_LOG_IDS,
        "MAX_EXACT": MAX_EXACT,
        "OPERATION_ID_BYTES": OPERATION_ID_BYTES,
    }
)


class LuaSourceError(Exception):
    """A ``.lua`` source :func:`load` cannot turn into a script: a missing or circular include,
    an unknown ``--- @`` directive, or an ``@NAME@`` that is no constant. A mistake in the
    package itself, met at import."""


_LOADER_LINE = re.compile(r"[ \t]*---(.*)\n?")
_INCLUDE = re.compile(r'[ \t]*@include[ \t]+"([\w./-]+)"[ \t]*')
_DIRECTIVE = re.compile(r"[ \t]*@(\w+)")
_CONSTANT = re.compile(r"@(\w+)@")


def load(name: str, *, package: str = __name__, constants: Mapping[str, int] = CONSTANTS) -> str:
    """The text of the script ``<package>/lua/<name>.lua``: includes resolved, ``@NAME@``
    constants replaced, ``---`` comment lines left out (the module docstring has the rules).

    ``package`` is the package whose ``lua/`` directory holds the script (an adapter passes
    its own); includes are looked up there first, then in this package's ``lua/``.
    """
    roots = [files(package) / "lua"]
    if package != __name__:
        roots.append(files(__name__) / "lua")
    return _expand(name, roots, constants, (), set())


def _find(name: str, roots: Sequence[Traversable], by: str | None) -> Traversable:
    for root in roots:
        path = root
        for part in f"{name}.lua".split("/"):
            path = path / part
        if path.is_file():
            return path
    where = f"included by {by}.lua" if by else "a script"
    raise LuaSourceError(f"{name}.lua ({where}) is not in {', '.join(str(root) for root in roots)}")


def _expand(
    name: str,
    roots: Sequence[Traversable],
    constants: Mapping[str, int],
    stack: tuple[str, ...],
    seen: set[str],
) -> str:
    text = _find(name, roots, stack[-1] if stack else None).read_text(encoding="utf-8")
    out: list[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        loader_line = _LOADER_LINE.fullmatch(line)
        if loader_line is None:
            out.append(_replace_constants(line, constants, f"{name}.lua:{number}"))
            continue
        include = _INCLUDE.fullmatch(loader_line[1])
        if include is not None:
            if include[1] in (*stack, name):
                raise LuaSourceError(f"circular include: {' -> '.join((*stack, name, include[1]))}")
            if include[1] not in seen:
                seen.add(include[1])
                out.append(_expand(include[1], roots, constants, (*stack, name), seen))
            continue
        directive = _DIRECTIVE.match(loader_line[1])
        if directive is not None:
            raise LuaSourceError(f"{name}.lua:{number}: unknown directive @{directive[1]} (known: @include)")
        # any other --- line is a comment for readers of the file: not part of the script
    return "".join(out)


def _replace_constants(line: str, constants: Mapping[str, int], where: str) -> str:
    def value(match: re.Match[str]) -> str:
        if match[1] not in constants:
            raise LuaSourceError(f"{where}: @{match[1]}@ is not a constant ({', '.join(sorted(constants))})")
        return str(constants[match[1]])

    return _CONSTANT.sub(value, line)


@functools.cache
def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


@dataclass(frozen=True)
class Script:
    """One script: its name (which the runner keys loads by), its text (:func:`load`), its
    ``#!lua`` flags and whether it changes data."""

    name: str
    body: str
    flags: str  # the #!lua flags= value; "" for a write script
    #: Changes no data (it may refresh TTLs): no ``WAIT`` for replicas follows it.
    read_only: bool = False

    @property
    def flagged(self) -> str:
        """The text for servers that take flags (Redis >= 7, Valkey): a ``#!lua`` line, then the body."""
        shebang = f"#!lua flags={self.flags}" if self.flags else "#!lua"
        return f"{shebang}\n{self.body}"

    @property
    def plain(self) -> str:
        """The text for servers that cannot compile a ``#!`` line (Redis 6.2): the body as it is."""
        return self.body

    @functools.cached_property
    def _shas(self) -> tuple[str, str]:
        # Computed once: every call sends a SHA, and hashing the source each time cost µs.
        return _sha(self.plain), _sha(self.flagged)

    def sha(self, flagged: bool) -> str:
        return self._shas[flagged]


# The store's scripts; what each takes (KEYS, ARGV) and returns is at the top of its file.
#: Writes a session's context: a save (replace) or an update (merge), or a journal's replay of one.
WRITE_CONTEXT = Script("write_context", load("write_context"), flags="")
#: Merges a user's facts, or replays a journal's merge.
WRITE_FACTS = Script("write_facts", load("write_facts"), flags="")
#: Appends messages to a session's history, once per operation id: the retry of an append
#: (an attempt after one that may have reached the server), which looks its id up in the log.
APPEND = Script("append", load("append"), flags="")
#: An append's first attempt (its id is new: no lookup); APPEND is its retry.
APPEND_FRESH = Script("append_fresh", load("append_fresh"), flags="")
#: A journal's replay of an append, dropped when older than the session's last delete.
REPLAY_APPEND = Script("replay_append", load("replay_append"), flags="")
#: Deletes a session's or a user's keys and leaves a tombstone (allow-oom: deleting frees memory).
DELETE = Script("delete", load("delete"), flags="allow-oom")
#: Reads a session (fields, base, history), refreshing its TTLs.
READ_SESSION = Script("read_session", load("read_session"), flags="allow-oom", read_only=True)
#: Reads one hash (a user's facts), refreshing its TTL.
READ_HASH = Script("read_hash", load("read_hash"), flags="allow-oom", read_only=True)


def _cannot_compile_shebang(exc: rexc.ResponseError) -> bool:
    text = str(exc).lower()
    return "compiling" in text or "unexpected symbol" in text or "unknown lua shebang" in text


@dataclass
class ScriptRunner:
    """Knows whether the server takes flagged scripts, gives each script's SHA, and loads scripts
    after NOSCRIPT (a restart or SCRIPT FLUSH); :mod:`agentmem.pipeline` sends them."""

    #: None until the first SCRIPT LOAD tells whether the server understands flags.
    flagged: bool | None = None
    loads: int = field(default=0)
    #: Per server (its pool: a cluster has one per node) and script name, the value of
    #: ``loads`` right after the script was last loaded there.
    loaded_at: dict[tuple[int, str], int] = field(default_factory=dict)
    _loading: dict[tuple[int, str], asyncio.Future[None]] = field(default_factory=dict, repr=False)

    @staticmethod
    def _where(client: Redis, script: Script) -> tuple[int, str]:
        return (id(client.connection_pool), script.name)

    def loaded_since(self, client: Redis, script: Script, loads: int) -> bool:
        """Whether ``script`` was loaded on ``client``'s server after ``loads`` was read (by a
        concurrent reload); a load on another cluster node does not count."""
        return self.loaded_at.get(self._where(client, script), -1) > loads

    def sha(self, script: Script) -> str:
        return script.sha(self.flagged is not False)

    async def load(self, client: Redis, scripts: Sequence[Script]) -> None:
        """Load ``scripts``; one already being loaded (by a concurrent batch that met the
        same NOSCRIPT) is waited for instead of loaded twice."""
        for script in scripts:
            where = self._where(client, script)
            pending = self._loading.get(where)
            if pending is not None:
                await asyncio.shield(pending)
                continue
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._loading[where] = done
            try:
                await self._load_one(client, script)
            finally:
                del self._loading[where]
                done.set_result(None)  # waiters resend either way; a failure is theirs to meet

    async def _load_one(self, client: Redis, script: Script) -> None:
        if self.flagged is not False:
            try:
                await client.script_load(script.flagged)
                self.flagged = True
                self.loads += 1
                self.loaded_at[self._where(client, script)] = self.loads
                return
            except rexc.ResponseError as exc:
                if not _cannot_compile_shebang(exc):
                    raise
                self.flagged = False
        await client.script_load(script.plain)
        self.loads += 1
        self.loaded_at[self._where(client, script)] = self.loads
