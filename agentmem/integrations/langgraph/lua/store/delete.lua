--- KEYS: index, item. ARGV: member. Returns 1 if the item existed.

redis.call('ZREM', KEYS[1], ARGV[1])
return redis.call('DEL', KEYS[2])
