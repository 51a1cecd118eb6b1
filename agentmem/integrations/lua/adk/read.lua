--- ARGV: refresh_ttl_ms (0: no refresh), session_id, event_count (0: none; the newest so many).
--- Returns {0} when there is no such session, else {1, state, events, user state, last update}.

--- @include "lib/check_args"

local bad = int_arg(1, 0, MAX_EXACT, 'refresh_ttl_ms') or int_arg(3, 0, MAX_EXACT, 'event_count')
if bad then return bad end
local state = redis.call('HGETALL', KEYS[1])
if #state == 0 then return {0} end
local events = {}
if ARGV[3] ~= '0' then events = redis.call('LRANGE', KEYS[2], '-' .. ARGV[3], -1) end
local updated = redis.call('ZSCORE', KEYS[4], ARGV[2]) or '0'
if ARGV[1] ~= '0' then
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[1]) end
end
return {1, state, events, redis.call('HGETALL', KEYS[5]), updated}
