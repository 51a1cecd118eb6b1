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
    "READ_HASH",
    "READ_SESSION",
    "REPLAY_APPEND",
    "WRITE_HASH",
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


# KEYS: target hash, then keys whose TTL follows it; the last is the target's tombstone.
# ARGV: ttl_ms (0: leave TTL), version, mode, then the payload:
#   replace | replace-if-newer: one value, the whole context as one orjson object (the base);
#   merge | merge-if-newer: field, value, ... (each value orjson).
#
# The layout (one hash; 0xFE and 0xFF never occur in UTF-8, so no user key collides):
#   "\255"         the version of the last replace (its writer's clock in microseconds),
#                  "0" when only merges wrote the hash; its presence marks that it exists;
#   "\255\1"       the base: the last replace's context, one orjson object;
#   field          a merged field's value, overriding the base's field of that name;
#   "\254" .. f    the version of merged field f.
# A replace costs the server one HSET of two fields (no per-field bookkeeping) and a
# read one HGETALL; merged fields keep the per-field versions a journal replay needs.
#
# Writers stamp every write with its version. The ``-if-newer`` modes, used when a local
# journal replays a write made while Redis was unreachable, never undo a newer write: a
# replay older than the last replace (the "\255" version) or the last delete (the
# tombstone key, see DELETE) is dropped whole and the script returns 0 (1: written); a
# merge replay skips each field whose own version is newer; a replace replay keeps the
# merged fields newer than itself.
#
# The first write is an HSET on purpose: on Redis 6.2 the OOM check applies only to a
# script's first write, so past maxmemory it refuses the script before anything changed.
WRITE_HASH = Script(
    "write_hash",
    _CHECK_ARGS
    + """
local bad = int_arg(1, 0, MAX_EXACT, 'ttl_ms') or int_arg(2, 0, MAX_EXACT, 'version')
if bad then return bad end
local mode = ARGV[3]
local replace = mode == 'replace' or mode == 'replace-if-newer'
local conditional = mode == 'merge-if-newer' or mode == 'replace-if-newer'
if not (replace or conditional or mode == 'merge')
    or (replace and #ARGV ~= 4) or (not replace and (#ARGV < 5 or #ARGV % 2 == 0)) then
  return redis.error_reply('ERR agentmem: write_hash needs a known mode and its payload '
    .. '(replace: one base value; merge: field/value pairs)')
end
local key = KEYS[1]
local version = ARGV[2]
local v = tonumber(version)
local META = '\\255'
local BASE = '\\255\\1'
local V = '\\254'
if conditional then
  local deleted = redis.call('GET', KEYS[#KEYS])
  local replaced = redis.call('HGET', key, META)
  if (deleted and tonumber(deleted) > v) or (replaced and tonumber(replaced) > v) then
    return 0
  end
end
local drop = {}
if replace then
  if conditional then
    -- merged fields newer than this replay survive it; older ones go with the old base
    local flat = redis.call('HGETALL', key)
    local stored = {}
    for i = 1, #flat, 2 do stored[flat[i]] = flat[i + 1] end
    for name, _ in pairs(stored) do
      local byte = string.byte(name, 1)
      if byte == 254 then
        if stored[string.sub(name, 2)] == nil then drop[#drop + 1] = name end
      elseif byte ~= 255 then
        local field_version = stored[V .. name]
        if not (field_version and tonumber(field_version) > v) then
          drop[#drop + 1] = name
          drop[#drop + 1] = V .. name
        end
      end
    end
  end
  redis.call('HSET', key, META, version, BASE, ARGV[4])
  if not conditional and redis.call('HLEN', key) > 2 then
    for _, name in ipairs(redis.call('HKEYS', key)) do
      if name ~= META and name ~= BASE then drop[#drop + 1] = name end
    end
  end
else
  local args = {}
  for i = 4, #ARGV, 2 do
    local name = ARGV[i]
    local newer = false
    if conditional then
      local stored = redis.call('HGET', key, V .. name)
      newer = stored ~= false and tonumber(stored) > v
    end
    if not newer then
      args[#args + 1] = name
      args[#args + 1] = ARGV[i + 1]
      args[#args + 1] = V .. name
      args[#args + 1] = version
    end
  end
  for i = 1, #args, 200 do
    redis.call('HSET', key, unpack(args, i, math.min(i + 199, #args)))
  end
  redis.call('HSETNX', key, META, '0')
end
for i = 1, #drop, 200 do
  redis.call('HDEL', key, unpack(drop, i, math.min(i + 199, #drop)))
end
if tonumber(ARGV[1]) > 0 then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return 1
""",
    flags="",
)

#: The append log always keeps at least this many of a session's newest operation ids,
#: however old (a floor under the time window below, for server clocks that step).
APPEND_LOG_IDS = 64

# KEYS: context, history, appends, tombstone. ARGV: ttl_ms, max_history, op_id, window_ms, message, ...
# The appends sorted set maps each recent operation id to the server time (microseconds)
# it was applied, so a retry of an append the server already applied (reply lost to a
# reset or timeout) pushes nothing twice.
_APPEND_BODY = """
local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 1, MAX_EXACT, 'max_history')
  or int_arg(4, 1, MAX_EXACT, 'window_ms')
if bad then return bad end
if ARGV[3] == '' then return redis.error_reply('ERR agentmem: empty operation id') end
if redis.call('ZSCORE', KEYS[3], ARGV[3]) then
  return redis.call('LLEN', KEYS[2])
end
for i = 5, #ARGV, 200 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 199, #ARGV)))
end
redis.call('LTRIM', KEYS[2], '-' .. ARGV[2], -1)
-- De-duplication window: an id is kept while a retry of its operation can still arrive
-- (window_ms, from the store's retry and timeout options), and the newest APPEND_LOG_IDS
-- are kept whatever their age. Any number of appends in flight is covered, because ids
-- leave by age, not by count.
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local cutoff = string.format('(%.0f', now_us - tonumber(ARGV[4]) * 1000)
local expired = redis.call('ZCOUNT', KEYS[3], '-inf', cutoff)
local drop = math.min(expired, redis.call('ZCARD', KEYS[3]) - (APPEND_LOG_IDS - 1))
if drop > 0 then redis.call('ZREMRANGEBYRANK', KEYS[3], 0, drop - 1) end
redis.call('ZADD', KEYS[3], string.format('%.0f', now_us), ARGV[3])
for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
return redis.call('LLEN', KEYS[2])
""".replace("APPEND_LOG_IDS", str(APPEND_LOG_IDS))

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
# so a journal replay older than it is dropped (WRITE_HASH, REPLAY_APPEND).
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

# Reads return the hash as stored (markers and versions too): the client skips them,
# which costs it less than a Lua filter costs the server.

# KEYS: context, history, appends, tombstone. ARGV: refresh_ttl_ms (0: no refresh), want_context
# (1/0), history_count (0: none). Returns {context fields, history items}.
READ_SESSION = Script(
    "read_session",
    _CHECK_ARGS
    + """
local bad = int_arg(1, 0, MAX_EXACT, 'refresh_ttl_ms') or int_arg(2, 0, 1, 'want_context')
  or int_arg(3, 0, MAX_EXACT, 'history_count')
if bad then return bad end
local ctx = {}
local hist = {}
if ARGV[2] == '1' then ctx = redis.call('HGETALL', KEYS[1]) end
if tonumber(ARGV[3]) > 0 then hist = redis.call('LRANGE', KEYS[2], '-' .. ARGV[3], -1) end
if tonumber(ARGV[1]) > 0 then
  for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return {ctx, hist}
""",
    flags="allow-oom",
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
