--- ARGV: refresh_ttl_ms (0: none), ns, checkpoint id ("" for the namespace's latest).
--- Returns nil, or {checkpoint id, record, metadata, {channel, blob, ...}, {write field, value, ...}},
--- or {"corrupt", what} when the stored channel versions do not parse.

--- @include "lib/saver"

local bad = int_text(ARGV[1], 0, MAX_EXACT, 'refresh_ttl_ms')
if bad then return bad end
local ns = ARGV[2]
local m
if ARGV[3] == '' then
  m = redis.call('ZREVRANGEBYLEX', KEYS[1], '(' .. ns .. '\1', '[' .. ns .. '\0', 'LIMIT', 0, 1)[1]
  if not m then return nil end
else
  m = ns .. '\0' .. ARGV[3]
end
local stored = redis.call('HMGET', KEYS[2], m, m .. '\0m', m .. '\0v')
if not stored[1] then return nil end
local blobs = {}
if stored[3] then
  local ok, versions = pcall(cjson.decode, stored[3])
  if not ok or type(versions) ~= 'table' then return {'corrupt', 'its channel versions'} end
  for channel, version in pairs(versions) do
    local value = redis.call('HGET', KEYS[3], ns .. '\0' .. channel .. '\0' .. tostring(version))
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
