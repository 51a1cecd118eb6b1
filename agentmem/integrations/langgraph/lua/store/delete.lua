--- KEYS: index, item, vector 1..K. ARGV: member. Returns 1 if the item existed, 0 if not, or
--- -old when the item has old > K vectors (nothing deleted).

local old = tonumber(redis.call('HGET', KEYS[2], 'n') or '0')
if old > #KEYS - 2 then return -old end
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
return redis.call('DEL', KEYS[2])
