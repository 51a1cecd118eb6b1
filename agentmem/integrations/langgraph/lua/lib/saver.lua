--- Helpers shared by the saver's scripts (saver/*.lua): chunked redis.call, TTL refresh, and
--- dropping checkpoints with their writes and the blobs no checkpoint uses any more.
--- @include "lib/int_text"

local function chunked(command, key, items)
  --- chunks of 200: why in agentmem/scripts/lua/lib/migrate.lua
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
  return string.sub(member, 1, string.find(member, '\0', 1, true) - 1)
end
-- The fields of the writes hash that belong to checkpoint member m.
local function writes_of(m)
  return redis.call('ZRANGEBYLEX', KEYS[5], '[' .. m .. '\0', '(' .. m .. '\1')
end
-- Remove checkpoints (index members) and their writes.
local function drop(members)
  if #members == 0 then return end
  local fields = {}
  local wfields = {}
  for _, m in ipairs(members) do
    fields[#fields + 1] = m
    fields[#fields + 1] = m .. '\0m'
    fields[#fields + 1] = m .. '\0v'
    fields[#fields + 1] = m .. '\0r'
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
      local versions = redis.call('HGET', KEYS[2], m .. '\0v')
      if versions then
        for channel, version in pairs(cjson.decode(versions)) do
          used[ns .. '\0' .. channel .. '\0' .. version] = true
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
