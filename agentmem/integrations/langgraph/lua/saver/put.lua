--- ARGV: ttl_ms, member, record, metadata, versions_json, run_id ("" for none),
---       blob field, blob value, ...

--- @include "lib/saver"

local bad = int_text(ARGV[1], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
if #ARGV < 6 or #ARGV % 2 ~= 0 then
  return redis.error_reply('ERR agentmem: langgraph_put needs a record and blob field/value pairs')
end
local m = ARGV[2]
redis.call('HSET', KEYS[2], m, ARGV[3], m .. '\0m', ARGV[4], m .. '\0v', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[2], m .. '\0r', ARGV[6]) end
local blobs = {}
for i = 7, #ARGV do blobs[#blobs + 1] = ARGV[i] end
if #blobs > 0 then chunked('HSET', KEYS[3], blobs) end
redis.call('ZADD', KEYS[1], 0, m)
refresh(ARGV[1])
return 1
