--- ARGV: ttl_ms, then triples: field, value, mode ("set": replace, "keep": only if absent).

--- @include "lib/saver"

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
