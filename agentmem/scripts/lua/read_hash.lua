--- KEYS: hash. ARGV: refresh_ttl_ms (0: no refresh).

--- @include "lib/check_args"

local bad = int_arg(1, 0, MAX_EXACT, 'refresh_ttl_ms')
if bad then return bad end
local fields = redis.call('HGETALL', KEYS[1])
if tonumber(ARGV[1]) > 0 and #fields > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return fields
