--- KEYS: index, item, vector 1..K. ARGV: member, value JSON, now (ISO text), ttl_ms (0: never
--- expires), n (vectors to write, <= K), the vectors' filter tags, vector 1..n (FLOAT32 bytes).
--- Returns 1, or -old when the item has old > K vectors (nothing written).

--- @include "lib/int_text"


local bad = int_text(ARGV[4], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
local n = tonumber(ARGV[5])
local declared = #KEYS - 2
local old = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if old > declared then return -old end
redis.call('HSET', KEYS[2], 'v', ARGV[2], 'u', ARGV[3], 't', ARGV[4], 'n', ARGV[5])
redis.call('HSETNX', KEYS[2], 'c', ARGV[3])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
for i = 1, declared do
  if i <= n then
    redis.call('HSET', KEYS[i + 2], 'vec', ARGV[6 + i], 'f', ARGV[6], 'm', ARGV[1], 't', ARGV[4])
  else
    redis.call('DEL', KEYS[i + 2])
  end
end
for i = 2, n + 2 do
  if ARGV[4] ~= '0' then
    redis.call('PEXPIRE', KEYS[i], ARGV[4])
  else
    redis.call('PERSIST', KEYS[i])
  end
end
return 1
