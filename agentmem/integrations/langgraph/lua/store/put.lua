--- KEYS: index, item. ARGV: member, value JSON, now (ISO text), ttl_ms (0: never expires).

--- @include "lib/int_text"


local bad = int_text(ARGV[4], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
redis.call('HSET', KEYS[2], 'v', ARGV[2], 'u', ARGV[3], 't', ARGV[4])
redis.call('HSETNX', KEYS[2], 'c', ARGV[3])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
if ARGV[4] ~= '0' then
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
else
  redis.call('PERSIST', KEYS[2])
end
return 1
