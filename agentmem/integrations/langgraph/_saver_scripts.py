"""The Lua scripts of :class:`AgentMemorySaver`: each operation on a thread is one
script run over the thread's keys (one hash tag, one slot), so it is atomic.

KEYS of every thread script (see ``ThreadKeys``): index, checkpoints, blobs, writes,
write_index. A checkpoint is the member ``M = ns .. "\\0" .. checkpoint_id`` of the
index; in the checkpoints hash ``M`` holds its record, ``M.."\\0m"`` its metadata,
``M.."\\0v"`` its channel versions as JSON (so scripts can find its blobs) and
``M.."\\0r"`` its run id when it has one. A write ``W = M.."\\0"..task_id.."\\0"..idx``
is a field of the writes hash and a member of the write index.

Write scripts have no ``allow-oom`` flag: past ``maxmemory`` the server refuses them
whole. Their first write is an HSET (on Redis 6.2 the OOM check applies to a script's
first write only).
"""

from __future__ import annotations

from agentmem.scripts import LUA_INT_TEXT, Script

__all__ = [
    "ADD_RUN",
    "COPY_INTO",
    "DELETE_RUNS",
    "DELETE_THREAD",
    "LIST",
    "PRUNE",
    "PUT",
    "PUT_WRITES",
    "READ",
    "READ_THREAD",
]

_COMMON = (
    LUA_INT_TEXT
    + """
local function chunked(command, key, items)
  for i = 1, #items, 200 do
    redis.call(command, key, unpack(items, i, math.min(i + 199, #items)))
  end
end
local function refresh(ttl)
  if tonumber(ttl) > 0 then
    for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
local function ns_of(member)
  return string.sub(member, 1, string.find(member, '\\0', 1, true) - 1)
end
-- The fields of the writes hash that belong to checkpoint member m.
local function writes_of(m)
  return redis.call('ZRANGEBYLEX', KEYS[5], '[' .. m .. '\\0', '(' .. m .. '\\1')
end
-- Remove checkpoints (index members) and their writes.
local function drop(members)
  if #members == 0 then return end
  local fields = {}
  local wfields = {}
  for _, m in ipairs(members) do
    fields[#fields + 1] = m
    fields[#fields + 1] = m .. '\\0m'
    fields[#fields + 1] = m .. '\\0v'
    fields[#fields + 1] = m .. '\\0r'
    for _, w in ipairs(writes_of(m)) do wfields[#wfields + 1] = w end
  end
  chunked('ZREM', KEYS[1], members)
  chunked('HDEL', KEYS[2], fields)
  if #wfields > 0 then
    chunked('HDEL', KEYS[4], wfields)
    chunked('ZREM', KEYS[5], wfields)
  end
end
-- Delete the blobs of namespaces in `touched` that no remaining checkpoint refers to.
local function collect_blobs(touched)
  local used = {}
  for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    local ns = ns_of(m)
    if touched[ns] then
      local versions = redis.call('HGET', KEYS[2], m .. '\\0v')
      if versions then
        for channel, version in pairs(cjson.decode(versions)) do
          used[ns .. '\\0' .. channel .. '\\0' .. version] = true
        end
      end
    end
  end
  local stale = {}
  for _, field in ipairs(redis.call('HKEYS', KEYS[3])) do
    if touched[ns_of(field)] and not used[field] then stale[#stale + 1] = field end
  end
  if #stale > 0 then chunked('HDEL', KEYS[3], stale) end
end
-- Remove the checkpoints in doomed, then the blobs no checkpoint left in a touched
-- namespace uses; how many checkpoints went.
local function drop_and_collect(doomed, touched)
  drop(doomed)
  if #doomed > 0 then collect_blobs(touched) end
  return #doomed
end
"""
)

# ARGV: ttl_ms, member, record, metadata, versions_json, run_id ("" for none),
#       blob field, blob value, ...
PUT = Script(
    "langgraph_put",
    _COMMON
    + """
local bad = int_text(ARGV[1], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
if #ARGV < 6 or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR agentmem: langgraph_put needs a record and blob field/value pairs')
end
local m = ARGV[2]
redis.call('HSET', KEYS[2], m, ARGV[3], m .. '\\0m', ARGV[4], m .. '\\0v', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], m .. '\\0r', ARGV[6]) end
local blobs = {}
for i = 7, #ARGV do blobs[#blobs + 1] = ARGV[i] end
if #blobs > 0 then chunked('HSET', KEYS[3], blobs) end
redis.call('ZADD', KEYS[1], 0, m)
refresh(ARGV[1])
return 1
""",
    flags="",
)

# ARGV: ttl_ms, then triples: field, value, mode ("set": replace, "keep": only if absent).
PUT_WRITES = Script(
    "langgraph_put_writes",
    _COMMON
    + """
local bad = int_text(ARGV[1], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
if #ARGV < 4 or (#ARGV - 1) % 3 ~= 0 then
  return redis.error_reply('ERR agentmem: langgraph_put_writes needs field/value/mode triples')
end
local written = 0
for i = 2, #ARGV, 3 do
  if ARGV[i + 2] == 'set' then
    redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 1])
    written = written + 1
  else
    written = written + redis.call('HSETNX', KEYS[4], ARGV[i], ARGV[i + 1])
  end
  redis.call('ZADD', KEYS[5], 0, ARGV[i])
end
refresh(ARGV[1])
return written
""",
    flags="",
)

# ARGV: refresh_ttl_ms (0: none), ns, checkpoint id ("" for the namespace's latest).
# Returns nil, or {checkpoint id, record, metadata, {channel, blob, ...}, {write field, value, ...}},
# or {"corrupt", what} when the stored channel versions do not parse.
READ = Script(
    "langgraph_read",
    _COMMON
    + """
local bad = int_text(ARGV[1], 0, MAX_EXACT, 'refresh_ttl_ms')
if bad then return bad end
local ns = ARGV[2]
local m
if ARGV[3] == '' then
  m = redis.call('ZREVRANGEBYLEX', KEYS[1], '(' .. ns .. '\\1', '[' .. ns .. '\\0', 'LIMIT', 0, 1)[1]
  if not m then return nil end
else
  m = ns .. '\\0' .. ARGV[3]
end
local stored = redis.call('HMGET', KEYS[2], m, m .. '\\0m', m .. '\\0v')
if not stored[1] then return nil end
local blobs = {}
if stored[3] then
  local ok, versions = pcall(cjson.decode, stored[3])
  if not ok or type(versions) ~= 'table' then return {'corrupt', 'its channel versions'} end
  for channel, version in pairs(versions) do
    local value = redis.call('HGET', KEYS[3], ns .. '\\0' .. channel .. '\\0' .. tostring(version))
    if value then
      blobs[#blobs + 1] = channel
      blobs[#blobs + 1] = value
    end
  end
end
local writes = {}
local fields = writes_of(m)
if #fields > 0 then
  local values = redis.call('HMGET', KEYS[4], unpack(fields))
  for i, field in ipairs(fields) do
    if values[i] then
      writes[#writes + 1] = field
      writes[#writes + 1] = values[i]
    end
  end
end
refresh(ARGV[1])
return {string.sub(m, #ns + 2), stored[1], stored[2] or false, blobs, writes}
""",
    flags="allow-oom",
    read_only=True,
)

# KEYS: index, checkpoints. ARGV: ns ("" with all_ns "1": every namespace), all_ns,
# before (exclusive checkpoint id upper bound within one namespace; "" none), limit (0: all).
# Returns {member, metadata, ...} newest first within a namespace.
LIST = Script(
    "langgraph_list",
    _COMMON
    + """
local bad = int_text(ARGV[4], 0, MAX_EXACT, 'limit')
if bad then return bad end
local members
if ARGV[2] == '1' then
  members = redis.call('ZREVRANGE', KEYS[1], 0, -1)
else
  local ns = ARGV[1]
  local top = '(' .. ns .. '\\1'
  if ARGV[3] ~= '' then top = '(' .. ns .. '\\0' .. ARGV[3] end
  if ARGV[4] ~= '0' then
    members = redis.call('ZREVRANGEBYLEX', KEYS[1], top, '[' .. ns .. '\\0', 'LIMIT', 0, ARGV[4])
  else
    members = redis.call('ZREVRANGEBYLEX', KEYS[1], top, '[' .. ns .. '\\0')
  end
end
local out = {}
for _, m in ipairs(members) do
  out[#out + 1] = m
  out[#out + 1] = redis.call('HGET', KEYS[2], m .. '\\0m') or false
end
return out
""",
    flags="allow-oom",
    read_only=True,
)

# No ARGV. Returns how many keys existed.
DELETE_THREAD = Script(
    "langgraph_delete_thread",
    """
return redis.call('DEL', unpack(KEYS))
""",
    flags="allow-oom",  # a delete frees memory: it must work when memory is full
)

# ARGV: ttl_ms, run id, ... Deletes every checkpoint of these runs (and its writes, and the
# blobs no remaining checkpoint uses). Returns how many checkpoints were deleted.
DELETE_RUNS = Script(
    "langgraph_delete_runs",
    _COMMON
    + """
local runs = {}
for i = 1, #ARGV do runs[ARGV[i]] = true end
local doomed = {}
local touched = {}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local run = redis.call('HGET', KEYS[2], m .. '\\0r')
  if run and runs[run] then
    doomed[#doomed + 1] = m
    touched[ns_of(m)] = true
  end
end
return drop_and_collect(doomed, touched)
""",
    flags="allow-oom",
)

# ARGV: strategy ("keep_latest" | "delete"). Returns how many checkpoints were deleted.
PRUNE = Script(
    "langgraph_prune",
    _COMMON
    + """
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
if ARGV[1] == 'delete' then
  redis.call('DEL', unpack(KEYS))
  return #members
end
if ARGV[1] ~= 'keep_latest' then
  return redis.error_reply('ERR agentmem: unknown prune strategy ' .. tostring(ARGV[1]))
end
-- Members sort by namespace, then checkpoint id: the last of each namespace is its latest.
local doomed = {}
local touched = {}
for i, m in ipairs(members) do
  local nxt = members[i + 1]
  if nxt and ns_of(nxt) == ns_of(m) then
    doomed[#doomed + 1] = m
    touched[ns_of(m)] = true
  end
end
return drop_and_collect(doomed, touched)
""",
    flags="allow-oom",
)

# No ARGV. Returns {checkpoints hash, blobs hash, writes hash} as flat field/value lists.
READ_THREAD = Script(
    "langgraph_read_thread",
    """
return {redis.call('HGETALL', KEYS[2]), redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[4])}
""",
    flags="allow-oom",
    read_only=True,
)

# ARGV: ttl_ms, n_checkpoint_items, n_blob_items, then the three hashes' field/value items
# one after the other (the writes hash last). Merges them into the thread's keys.
COPY_INTO = Script(
    "langgraph_copy_into",
    _COMMON
    + """
local bad = int_text(ARGV[1], 0, MAX_EXACT, 'ttl_ms') or int_text(ARGV[2], 0, MAX_EXACT, 'n_checkpoints')
  or int_text(ARGV[3], 0, MAX_EXACT, 'n_blobs')
if bad then return bad end
local n_cp, n_blob = tonumber(ARGV[2]), tonumber(ARGV[3])
local cp, blob, w, members, wmembers = {}, {}, {}, {}, {}
for i = 4, 3 + n_cp do cp[#cp + 1] = ARGV[i] end
for i = 4 + n_cp, 3 + n_cp + n_blob do blob[#blob + 1] = ARGV[i] end
for i = 4 + n_cp + n_blob, #ARGV do w[#w + 1] = ARGV[i] end
if #cp == 0 then return 0 end
chunked('HSET', KEYS[2], cp)
if #blob > 0 then chunked('HSET', KEYS[3], blob) end
if #w > 0 then chunked('HSET', KEYS[4], w) end
for i = 1, #cp, 2 do
  local field = cp[i]
  local first = string.find(field, '\\0', 1, true)
  if first and not string.find(field, '\\0', first + 1, true) then members[#members + 1] = field end
end
for i = 1, #w, 2 do wmembers[#wmembers + 1] = 0; wmembers[#wmembers + 1] = w[i] end
local scored = {}
for _, m in ipairs(members) do scored[#scored + 1] = 0; scored[#scored + 1] = m end
chunked('ZADD', KEYS[1], scored)
if #wmembers > 0 then chunked('ZADD', KEYS[5], wmembers) end
refresh(ARGV[1])
return #members
""",
    flags="",
)

# KEYS: a run's thread set. ARGV: ttl_ms, thread id.
ADD_RUN = Script(
    "langgraph_add_run",
    _COMMON
    + """
local bad = int_text(ARGV[1], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
redis.call('SADD', KEYS[1], ARGV[2])
refresh(ARGV[1])
return 1
""",
    flags="",
)
