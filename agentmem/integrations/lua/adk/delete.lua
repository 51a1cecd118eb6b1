--- ARGV: session_id. Returns 1 if the session was there. allow-oom: deleting frees memory.

local removed = redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
redis.call('ZREM', KEYS[4], ARGV[1])
return removed > 0 and 1 or 0
