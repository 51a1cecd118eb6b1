--- The head of both write scripts (write_context.lua, write_facts.lua). ARGV: ttl_ms (0: leave TTLs), version (the 8 bytes that
--- prefix every value it stores), mode, payload:
---   replace | replace-if-newer (contexts only): one value, the whole context as one orjson object;
---   merge | merge-if-newer: field, value, ... (each value orjson).
--- The ``-if-newer`` modes, used when a local journal replays a write made while Redis was
--- unreachable, never undo a newer write: a replay older than the last delete (the
--- tombstone, KEYS[#KEYS], see delete.lua) or the last replace is dropped whole and the script
--- returns 0 (1: written); a merge replay skips each field whose stored version is newer;
--- a replace replay keeps the merged fields newer than itself.
--- @include "lib/check_args"

--- @include "lib/versions"

--- @include "lib/migrate"

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
  --- chunks of 200: why in lib/migrate.lua
  for i = 1, #args, 200 do
    redis.call('HSET', hash, unpack(args, i, math.min(i + 199, #args)))
  end
end
