--- KEYS: a run's thread set. ARGV: ttl_ms, thread id.

--- @include "lib/saver"

local bad = int_text(ARGV[1], 0, MAX_EXACT, 'ttl_ms')
if bad then return bad end
redis.call('SADD', KEYS[1], ARGV[2])
refresh(ARGV[1])
return 1
