"""The Lua scripts behind every store operation, and how they are sent.

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
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from redis import exceptions as rexc
from redis.asyncio import Redis

__all__ = [
    "APPEND",
    "APPEND_LOG_IDS",
    "DELETE",
    "LUA_INT_TEXT",
    "MAX_EXACT",
    "OPERATION_ID_BYTES",
    "READ_HASH",
    "READ_SESSION",
    "REPLAY_APPEND",
    "WRITE_CONTEXT",
    "WRITE_FACTS",
    "Script",
    "ScriptRunner",
]

# Lua's unpack() is bounded by the C stack, so every script sends long argument lists
# in chunks of 200 (even, so field/value pairs stay together).


@functools.cache
def _sha(source: str) -> str:
    return hashlib.sha1(source.encode()).hexdigest()


@dataclass(frozen=True)
class Script:
    name: str
    body: str
    flags: str  # the #!lua flags= value; "" for a write script
    #: Changes no data (it may refresh TTLs): no ``WAIT`` for replicas follows it.
    read_only: bool = False

    @property
    def flagged(self) -> str:
        shebang = f"#!lua flags={self.flags}" if self.flags else "#!lua"
        return f"{shebang}\n{self.body}"

    @property
    def plain(self) -> str:
        return self.body

    @functools.cached_property
    def _shas(self) -> tuple[str, str]:
        # Computed once: every call sends a SHA, and hashing the source each time cost µs.
        return _sha(self.plain), _sha(self.flagged)

    def sha(self, flagged: bool) -> str:
        return self._shas[flagged]


#: Largest integer a script takes for a TTL in ms or a count: Lua numbers are doubles,
#: exact up to 2**53, and a TTL this long still cannot overflow the server's clock.
MAX_EXACT = 2**53 - 1

# Every script checks its numeric arguments before its first write and answers with an
# error reply, so a bad argument can never leave a write half done. ``int_arg`` returns
# nil for a decimal integer in [low, high], else the error reply. Numbers go on to
# commands as the caller's strings: Lua would print a large double as "1e+17".
#: Lua: ``int_text(text, low, high, name)`` returns an error reply unless ``text`` is an
#: integer in [low, high] (nil when it is); shared with the adapters' scripts.
LUA_INT_TEXT = """
local MAX_EXACT = MAX_EXACT_VALUE
local function int_text(text, low, high, name)
  local value = text and string.match(text, '^%d+$') and tonumber(text)
  if not value or value < low or value > high then
    return redis.error_reply('ERR agentmem: ' .. name .. ' must be an integer in [' .. low .. ', '
      .. string.format('%.0f', high) .. '], got ' .. tostring(text))
  end
  return nil
end
""".replace("MAX_EXACT_VALUE", str(MAX_EXACT))

# ``int_arg(i, ...)``: the same check of ARGV[i].
_CHECK_ARGS = (
    LUA_INT_TEXT
    + """
local function int_arg(i, low, high, name)
  return int_text(ARGV[i], low, high, name)
end
"""
)


# Versions. Every write carries its writer's clock in microseconds (an integer below
# 2**53). A stored value carries the version of the write that stored it as an 8-byte
# big-endian prefix; its first byte is 0, which no orjson text starts with, so a value
# without one is told apart (an older layout's, see ``migrate``).
_VERSIONS = r"""
local function packed(v)
  local bytes = {}
  for i = 8, 1, -1 do
    bytes[i] = v % 256
    v = (v - bytes[i]) / 256
  end
  return string.char(unpack(bytes))
end
local function version_of(value)
  if not value or #value < 8 or string.byte(value, 1) ~= 0 then return nil end
  local v = 0
  for _, byte in ipairs({string.byte(value, 1, 8)}) do v = v * 256 + byte end
  return v
end
"""

# Layouts before 0.3 kept versions beside the values, in the hash itself: field "\255"
# (the last replace's version; "0" or "1" when none), "\255\1" (the base object), "\254"
# .. f (field f's version; "\254\255" a replace's in 0.1). Every such hash has "\255". A
# write meeting one first rewrites it in this layout (the base to its own key, each field
# prefixed with its version), keeping its TTL; reads decode both (codec.decode_fields).
# The first write is a SET or HSET that grows memory (the OOM rule below).
_MIGRATE = r"""
local function migrate(hash, base_key)
  if redis.call('HEXISTS', hash, '\255') == 0 then return end
  local flat = redis.call('HGETALL', hash)
  local stored = {}
  for i = 1, #flat, 2 do stored[flat[i]] = flat[i + 1] end
  local replaced = math.max(tonumber(stored['\255']) or 0, tonumber(stored['\254\255']) or 0)
  local base = stored['\255\1']
  if base and base_key then
    local ttl = redis.call('PTTL', hash)
    redis.call('SET', base_key, packed(replaced) .. base)
    if ttl > 0 then redis.call('PEXPIRE', base_key, ttl) end
  end
  local set, drop = {}, {}
  for name, value in pairs(stored) do
    local lead = string.byte(name, 1)
    if lead == 254 or lead == 255 then
      drop[#drop + 1] = name
    else
      set[#set + 1] = name
      set[#set + 1] = packed(tonumber(stored['\254' .. name]) or 0) .. value
    end
  end
  for i = 1, #set, 200 do redis.call('HSET', hash, unpack(set, i, math.min(i + 199, #set))) end
  for i = 1, #drop, 200 do redis.call('HDEL', hash, unpack(drop, i, math.min(i + 199, #drop))) end
end
"""

# The head of both write scripts. ARGV: ttl_ms (0: leave TTLs), version (the 8 bytes that
# prefix every value it stores), mode, payload:
#   replace | replace-if-newer (contexts only): one value, the whole context as one orjson object;
#   merge | merge-if-newer: field, value, ... (each value orjson).
# The ``-if-newer`` modes, used when a local journal replays a write made while Redis was
# unreachable, never undo a newer write: a replay older than the last delete (the
# tombstone, KEYS[#KEYS], see DELETE) or the last replace is dropped whole and the script
# returns 0 (1: written); a merge replay skips each field whose stored version is newer;
# a replace replay keeps the merged fields newer than itself.
_WRITE_HEAD = (
    _CHECK_ARGS
    + _VERSIONS
    + _MIGRATE
    + r"""
local bad = int_arg(1, 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
local prefix = ARGV[2]
if #prefix ~= 8 or string.byte(prefix, 1) ~= 0 or string.byte(prefix, 2) > 31 then
  return redis.error_reply('ERR agentmem: the version must be 8 bytes, big-endian, below 2^53')
end
local mode = ARGV[3]
local replace = mode == 'replace' or mode == 'replace-if-newer'
local conditional = mode == 'merge-if-newer' or mode == 'replace-if-newer'
if not (replace or conditional or mode == 'merge')
    or (replace and #ARGV ~= 4) or (not replace and (#ARGV < 5 or #ARGV % 2 == 0)) then
  return redis.error_reply('ERR agentmem: a write needs a known mode and its payload '
    .. '(replace: one base value; merge: field/value pairs)')
end
local v = conditional and version_of(prefix)
if conditional then
  local deleted = redis.call('GET', KEYS[#KEYS])
  if deleted and tonumber(deleted) > v then return 0 end
end
local function merge(hash)
  local args = {}
  for i = 4, #ARGV, 2 do
    if not (conditional and (version_of(redis.call('HGET', hash, ARGV[i])) or -1) > v) then
      args[#args + 1] = ARGV[i]
      args[#args + 1] = prefix .. ARGV[i + 1]
    end
  end
  for i = 1, #args, 200 do
    redis.call('HSET', hash, unpack(args, i, math.min(i + 199, #args)))
  end
end
"""
)

# KEYS: the session's merged-fields hash, base, history, tombstone (SessionKeys.core).
# ARGV: see _WRITE_HEAD.
#
# The layout (see README "Storage layout"):
#   base   a string: the last save_context's version and whole context (one orjson object);
#   hash   the fields update_context merged since then, each prefixed with its version,
#          overriding the base's field of that name on read.
# A save costs the server one SET (with the TTL), one DEL (of the hash, if any) and two
# PEXPIREs; a read one GETEX and one HGETALL (READ_SESSION). Only merged fields carry
# versions of their own, which a journal replay needs.
# The first write is a SET or HSET on purpose: on Redis 6.2 the OOM check applies only to
# a script's first write, so past maxmemory it refuses the script before anything changed.
WRITE_CONTEXT = Script(
    "write_context",
    _WRITE_HEAD
    + r"""
local hash, base_key = KEYS[1], KEYS[2]
if mode == 'replace' then  -- the hot path: a save, as few calls as it takes
  local ttl = tonumber(ARGV[1]) > 0
  if ttl then
    redis.call('SET', base_key, prefix .. ARGV[4], 'PX', ARGV[1])
  else
    redis.call('SET', base_key, prefix .. ARGV[4], 'KEEPTTL')
  end
  redis.call('DEL', hash)
  if ttl then
    redis.call('PEXPIRE', KEYS[3], ARGV[1])
    redis.call('PEXPIRE', KEYS[#KEYS], ARGV[1])
  end
  return 1
end
migrate(hash, base_key)
if conditional and (version_of(redis.call('GETRANGE', base_key, 0, 7)) or -1) > v then
  return 0
end
if not replace then
  merge(hash)
else
  redis.call('SET', base_key, prefix .. ARGV[4], 'KEEPTTL')
  -- merged fields newer than this replay survive it; older ones go with the old base
  local flat = redis.call('HGETALL', hash)
  local drop = {}
  for i = 1, #flat, 2 do
    if not ((version_of(flat[i + 1]) or -1) > v) then drop[#drop + 1] = flat[i] end
  end
  for i = 1, #drop, 200 do
    redis.call('HDEL', hash, unpack(drop, i, math.min(i + 199, #drop)))
  end
end
if tonumber(ARGV[1]) > 0 then
  for _, i in ipairs({1, 2, 3, #KEYS}) do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
""",
    flags="",
)

# KEYS: the user's facts hash, its tombstone. ARGV: see _WRITE_HEAD (merge modes only).
# Each fact is a field of the hash, prefixed with its version.
WRITE_FACTS = Script(
    "write_facts",
    _WRITE_HEAD
    + r"""
if replace then return redis.error_reply('ERR agentmem: facts are only merged') end
migrate(KEYS[1], nil)
merge(KEYS[1])
if tonumber(ARGV[1]) > 0 then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
""",
    flags="",
)

#: The append log always keeps at least this many of a session's newest operation ids,
#: however old, while it exists (a floor under the time window below, for server clocks
#: that step).
APPEND_LOG_IDS = 64
#: Bytes of an append operation id.
OPERATION_ID_BYTES = 8

# KEYS: SessionKeys.appending (context, base, history, log, tombstone).
# ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
# The log is a string of 12-byte records, oldest first: an operation id (8 bytes) and the
# server time it was applied (seconds, 4 bytes big-endian). A retry of an append the server
# already applied (its reply lost to a reset or timeout) finds its id and pushes nothing
# twice. An id stays while a retry of its operation can still arrive (window_ms, from the
# store's retry and timeout options), and the newest APPEND_LOG_IDS stay whatever their
# age; ids leave by age, not by count, so any number of appends in flight is covered. The
# log key itself expires window_ms after the last append: a session at rest keeps no log.
_APPEND_BODY = """
local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 1, MAX_EXACT, 'max_history')
  or int_arg(4, 1, MAX_EXACT, 'window_ms')
if bad then return bad end
local id = ARGV[3]
if #id ~= OPERATION_ID_BYTES then
  return redis.error_reply('ERR agentmem: an operation id is OPERATION_ID_BYTES bytes')
end
local log = redis.call('GET', KEYS[4]) or ''
if #log % 12 ~= 0 then
  return redis.error_reply('ERR agentmem: the append log is corrupt (' .. #log .. ' bytes)')
end
local at = 1
while true do
  local found = string.find(log, id, at, true)
  if not found then break end
  if found % 12 == 1 then return redis.call('LLEN', KEYS[3]) end
  at = found + 1
end
for i = 5, #ARGV, 200 do
  redis.call('RPUSH', KEYS[3], unpack(ARGV, i, math.min(i + 199, #ARGV)))
end
redis.call('LTRIM', KEYS[3], '-' .. ARGV[2], -1)
local now = tonumber(redis.call('TIME')[1])
local oldest = now - math.ceil(tonumber(ARGV[4]) / 1000)
local records = #log / 12
local drop = 0
while drop < records - (APPEND_LOG_IDS - 1) do
  local a, b, c, d = string.byte(log, drop * 12 + 9, drop * 12 + 12)
  if ((a * 256 + b) * 256 + c) * 256 + d >= oldest then break end
  drop = drop + 1
end
local record = id .. string.char(math.floor(now / 16777216) % 256, math.floor(now / 65536) % 256,
  math.floor(now / 256) % 256, now % 256)
if drop > 0 then
  redis.call('SET', KEYS[4], string.sub(log, drop * 12 + 1) .. record)
else
  redis.call('APPEND', KEYS[4], record)
end
redis.call('PEXPIRE', KEYS[4], ARGV[4])
for _, i in ipairs({1, 2, 3, #KEYS}) do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return redis.call('LLEN', KEYS[3])
""".replace("APPEND_LOG_IDS", str(APPEND_LOG_IDS)).replace("OPERATION_ID_BYTES", str(OPERATION_ID_BYTES))

APPEND = Script("append", _CHECK_ARGS + _APPEND_BODY, flags="")

# A journal's replay of an append: APPEND with the write's version as ARGV[4], taken out
# before APPEND's body runs. A replay older than the session's last delete (its
# tombstone, KEYS[#KEYS]) pushes nothing and returns -1.
REPLAY_APPEND = Script(
    "replay_append",
    _CHECK_ARGS
    + """
local bad_version = int_arg(4, 0, MAX_EXACT, 'version')
if bad_version then return bad_version end
local version = table.remove(ARGV, 4)
local deleted = redis.call('GET', KEYS[#KEYS])
if deleted and tonumber(deleted) > tonumber(version) then return -1 end
"""
    + _APPEND_BODY,
    flags="",
)

# KEYS: the keys to delete, then the tombstone (last). ARGV: version, tombstone_ttl_ms.
# Returns how many keys were deleted. The tombstone keeps the newest delete's version,
# so a journal replay older than it is dropped (WRITE_CONTEXT, WRITE_FACTS, REPLAY_APPEND).
# allow-oom: deleting is how memory is freed, so it must work past maxmemory (the
# tombstone is a few bytes); on Redis 6.2 the UNLINK is the first write, which the OOM
# check lets through, and the SET after it.
DELETE = Script(
    "delete",
    _CHECK_ARGS
    + """
local bad = int_arg(1, 0, MAX_EXACT, 'version') or int_arg(2, 1, MAX_EXACT, 'tombstone_ttl_ms')
if bad then return bad end
local removed = redis.call('UNLINK', unpack(KEYS, 1, #KEYS - 1))
local tomb = KEYS[#KEYS]
local stored = redis.call('GET', tomb)
if not stored or tonumber(stored) < tonumber(ARGV[1]) then
  redis.call('SET', tomb, ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', tomb, ARGV[2])
end
return removed
""",
    flags="allow-oom",
)

# Reads return what is stored (version prefixes, an older layout's markers): the client
# strips and skips them, which costs it less than a Lua filter costs the server.

# KEYS: SessionKeys.core. ARGV: refresh_ttl_ms (0: no refresh), want_context (1/0),
# history_count (0: none). Returns {merged fields (flat), base or nil, history items}.
READ_SESSION = Script(
    "read_session",
    _CHECK_ARGS
    + """
local bad = int_arg(1, 0, MAX_EXACT, 'refresh_ttl_ms') or int_arg(2, 0, 1, 'want_context')
  or int_arg(3, 0, MAX_EXACT, 'history_count')
if bad then return bad end
local fields, base, hist = {}, false, {}
local refresh = tonumber(ARGV[1]) > 0
if ARGV[2] == '1' then
  fields = redis.call('HGETALL', KEYS[1])
  -- a key just read as missing needs no refresh (one call fewer for most loads)
  if refresh and #fields > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
  if refresh then
    base = redis.call('GETEX', KEYS[2], 'PX', ARGV[1])
  else
    base = redis.call('GET', KEYS[2])
  end
elseif refresh then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
end
if tonumber(ARGV[3]) > 0 then hist = redis.call('LRANGE', KEYS[3], '-' .. ARGV[3], -1) end
if refresh then
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[#KEYS], ARGV[1])
end
return {fields, base, hist}
""",
    flags="allow-oom",
    read_only=True,
)

# KEYS: hash. ARGV: refresh_ttl_ms (0: no refresh).
READ_HASH = Script(
    "read_hash",
    _CHECK_ARGS
    + """
local bad = int_arg(1, 0, MAX_EXACT, 'refresh_ttl_ms')
if bad then return bad end
local fields = redis.call('HGETALL', KEYS[1])
if tonumber(ARGV[1]) > 0 and #fields > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return fields
""",
    flags="allow-oom",
    read_only=True,
)


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
