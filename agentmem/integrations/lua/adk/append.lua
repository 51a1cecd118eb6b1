--- ARGV: ttl_ms, profile_ttl_ms, session_id, event_id, timestamp, event, session_count,
--- user_count, then the state deltas as in adk/create.lua (from ARGV[9]).
--- Returns 1 appended, 0 an event with this id is already there (a retry, or the same
--- event appended twice): nothing changed, -1 no such session: nothing written.

--- @include "lib/check_args"

--- @include "lib/adk"

local bad = int_arg(1, 1, MAX_EXACT, 'ttl_ms') or int_arg(2, 0, MAX_EXACT, 'profile_ttl_ms')
  or int_arg(7, 0, MAX_EXACT, 'session_count') or int_arg(8, 0, MAX_EXACT, 'user_count')
if bad then return bad end
local ok, ns, nu, first_app, na = deltas(7)
if ARGV[4] == '' or not tonumber(ARGV[5]) or not ok then
  return redis.error_reply('ERR agentmem: adk_append needs an event id, a time and field/value pairs')
end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('SISMEMBER', KEYS[3], ARGV[4]) == 1 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[6])
redis.call('SADD', KEYS[3], ARGV[4])
write_deltas(7, ns, nu, first_app, na)
redis.call('ZADD', KEYS[4], ARGV[5], ARGV[3])
expire(nu > 0 or na > 0)
return 1
